"""``tardis.BatchSystem`` of this package's overlay adapters."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .base import Section
from .types import Address, Executor, NonNegative, Positive, Text


class DaskBatchSystem(Section):
    adapter: Text = Field(..., description="Dask")
    scheduler_address: Address = Field(..., description="tcp://host:8786 or tls://...")
    max_age: NonNegative = Field(0.25, description="minutes one view of the scheduler serves")
    timeout: Positive = Field(10, description="seconds for one scheduler call")
    security: dict[str, Any] | None = Field(
        None,
        description="tls_ca_file, tls_client_cert, tls_client_key, require_encryption",
        doc_default="none",
    )


class HTCondorOverlayBatchSystem(Section):
    adapter: Text = Field(..., description="HTCondorOverlay")
    max_age: NonNegative = Field(..., description="minutes one condor_status answer serves")
    ratios: dict[str, Text] = Field(
        ..., description="ClassAd expressions over a drone's partitionable slot"
    )
    options: dict[str, Any] | None = Field(
        None, description="condor_status/condor_drain options", doc_default="none"
    )
    executor: Executor = Field(
        None, description="where condor_status/condor_drain run", doc_default="the local shell"
    )
    missing_grace: NonNegative = Field(
        600, description="seconds a startd may be missing before its drone counts as gone"
    )
