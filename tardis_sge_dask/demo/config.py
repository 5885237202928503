"""The demo's copy of a configuration: its scheduler, its scratch directory, its record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..configfile import Tagged, dump, load, tardis_section

RECORD = "tardis_sge_dask.demand.record.DemandRecord"


def _replace_strings(value: Any, old: str, new: str) -> Any:
    if isinstance(value, Tagged):
        return Tagged(value.tag, _replace_strings(value.value, old, new))
    if isinstance(value, dict):
        return {key: _replace_strings(item, old, new) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace_strings(item, old, new) for item in value]
    if isinstance(value, str):
        return value.replace(old, new)
    return value


def demo_config(
    source: Path, workdir: Path, scheduler: str, demand_file: Path
) -> tuple[Path, list[Path]]:
    """A copy of ``source`` on the demo's scheduler, registry and drone directory.

    The controller's demand is recorded in ``demand_file`` by a DemandRecord put in front
    of the pool factory. Returns the copy and the state directories of its local sites.
    """
    document = load(source)
    tardis = tardis_section(document)
    if tardis is None or not isinstance(tardis.get("BatchSystem"), dict):
        raise ValueError(f"{source}: no tardis.BatchSystem section")
    batch_system = tardis["BatchSystem"]
    if batch_system.get("adapter") != "Dask":
        raise ValueError(f"{source}: the demo needs BatchSystem adapter: Dask (direct mode)")
    old = str(batch_system["scheduler_address"])
    document = _replace_strings(document, old, scheduler)
    tardis = tardis_section(document)
    assert tardis is not None  # replacing strings keeps the document's shape
    tardis.setdefault("Plugins", {})["SqliteRegistry"] = {"db_file": str(workdir / "drones.db")}
    pipeline = document.get("pipeline")
    if not isinstance(pipeline, list) or len(pipeline) < 2:
        raise ValueError(f"{source}: the pipeline needs a controller and the pool factory")
    pipeline.insert(len(pipeline) - 1, {"__type__": RECORD, "path": str(demand_file)})
    state_directories = []
    for site in tardis.get("Sites") or []:
        if site.get("adapter") != "Local":
            raise ValueError(
                f"{source}: site {site.get('name')} uses adapter {site.get('adapter')};"
                " the demo runs drones only on this machine (adapter: Local)"
            )
        directory = workdir / "drones" / str(site["name"])
        tardis[site["name"]]["StateDirectory"] = str(directory)
        state_directories.append(directory)
    path = workdir / "cobald.yaml"
    path.write_text(dump(document))
    return path, state_directories
