"""User side: ``OverlayCluster`` (dask-jobqueue ``HTCondorCluster`` for the overlay pool)."""

from .cluster import OverlayCluster

__all__ = ["OverlayCluster"]
