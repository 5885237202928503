"""What the demo watches, each through an interface of its own, never the daemon's log:

* the demand: the controller's, from the pipeline's DemandRecord file;
* the drones: TARDIS's registry (the SqliteRegistry file);
* the workers: the demo's own Dask scheduler;
* the drone processes: the Local adapter's pid records, checked against /proc.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..demand.record import read_record
from ..sites.processes import parse_drone_id, process_start
from ..status import DroneRow, StatusError, read_registry


@dataclass
class Observation:
    elapsed: float = 0.0
    demand: float = 0.0
    peak_demand: float = 0.0
    drones: Counter = field(default_factory=Counter)
    workers: int = 0
    done: int = 0
    total: int = 0


class Observer:
    def __init__(self, demand_file: Path, registry: Path, started: float):
        self.demand_file = demand_file
        self.registry = registry
        self.started = started
        self.state_directories: list[Path] = []
        self.seen = Observation()

    def observe(self, scheduler: Any, futures: list | None) -> list[DroneRow]:
        """Refresh :attr:`seen`; returns the drones in the registry."""
        seen = self.seen
        seen.elapsed = time.monotonic() - self.started
        if futures is not None:
            seen.total = len(futures)
            seen.done = sum(1 for future in futures if future.done())
        seen.workers = len(scheduler.workers)
        record = read_record(self.demand_file)
        if record is not None:
            seen.demand = float(record["demand"])
        seen.peak_demand = max(seen.peak_demand, seen.demand)
        try:
            rows = read_registry(self.registry)
        except StatusError:
            rows = []
        seen.drones = Counter(row.state for row in rows)
        return rows

    def live_drone_processes(self) -> list[tuple[str, int]]:
        return live_drone_processes(self.state_directories)

    def drones_started(self) -> int:
        return sum(len(list(directory.glob("*.log"))) for directory in self.state_directories)


def live_drone_processes(state_directories: list[Path]) -> list[tuple[str, int]]:
    """(drone uuid, pid) of every local drone whose process still runs."""
    alive = []
    for directory in state_directories:
        for record in directory.glob("*.json"):
            try:
                data = json.loads(record.read_text())
                parsed = parse_drone_id(data["remote_resource_uuid"])
            except (OSError, ValueError, KeyError):
                continue
            if parsed is None:
                continue
            current = process_start(parsed[0])
            if current is not None and current[0] == parsed[1] and current[1] != "Z":
                alive.append((record.stem, parsed[0]))
    return alive
