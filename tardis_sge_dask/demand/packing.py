"""Pack waiting worker jobs onto drones of the configured machine types.

Pure arithmetic, no I/O: the controller hands in job shapes, gets back how many drones of
each machine type would hold them and which jobs fit no machine type at all.

Heuristic: first-fit decreasing. Jobs are taken largest first (GPUs, cores, memory); a job
goes into the first already-opened drone with room, otherwise a new drone of the smallest
machine type that can hold it is opened (jobs without GPUs avoid GPU machine types when
another type fits). Identical shapes are handled as one group, so thousands of equal
dask-jobqueue workers cost a handful of operations.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_EPS = 1e-9
_REMEMBERED_FULL = 64


@dataclass(frozen=True, order=True)
class JobShape:
    """What one waiting worker job asks for."""

    cores: float = 1.0
    memory_gb: float = 0.0
    gpus: int = 0
    #: the site the job insists on ("": any site)
    site: str = ""

    def __str__(self) -> str:
        gpus = f", {self.gpus} GPU" if self.gpus else ""
        site = f" at {self.site}" if self.site else ""
        return f"{self.cores:g} cores/{self.memory_gb:g} GB{gpus}{site}"


@dataclass(frozen=True)
class MachineShape:
    """One drone of a machine type: the resources it offers."""

    name: str
    cores: float
    memory_gb: float = math.inf
    gpus: int = 0

    def holds(self, job: JobShape) -> int:
        """How many jobs of this shape fit into an empty drone."""
        return _fits(self.cores, self.memory_gb, self.gpus, job)

    @classmethod
    def from_meta_data(cls, name: str, meta: Mapping[str, Any]) -> MachineShape:
        """Build from a TARDIS ``MachineMetaData`` mapping (Cores, Memory in GB, GPUs)."""
        lowered = {str(key).lower(): value for key, value in meta.items()}
        memory = lowered.get("memory")
        return cls(
            name=name,
            cores=float(lowered.get("cores", 1)),
            memory_gb=float(memory) if memory is not None else math.inf,
            gpus=int(lowered.get("gpus", lowered.get("gpu", 0)) or 0),
        )


def _fits(cores: float, memory: float, gpus: int, job: JobShape) -> int:
    limits = []
    for free, need in ((cores, job.cores), (memory, job.memory_gb), (gpus, job.gpus)):
        if need > _EPS:
            limits.append(math.floor((free + _EPS) / need))
    return max(0, min(limits)) if limits else 0


@dataclass
class _OpenDrone:
    machine: MachineShape
    cores: float
    memory_gb: float
    gpus: int

    def room_for(self, job: JobShape) -> int:
        return _fits(self.cores, self.memory_gb, self.gpus, job)

    def take(self, job: JobShape, count: int) -> None:
        self.cores -= job.cores * count
        self.memory_gb -= job.memory_gb * count
        self.gpus -= job.gpus * count


@dataclass
class Packing:
    """Result of packing: drones per machine type and the jobs no machine type can hold."""

    drones: dict[str, int] = field(default_factory=dict)
    unfit: Counter[JobShape] = field(default_factory=Counter)

    def cores(self, machine_types: Sequence[MachineShape]) -> float:
        by_name = {machine.name: machine for machine in machine_types}
        return sum(by_name[name].cores * count for name, count in self.drones.items())

    @property
    def total_drones(self) -> int:
        return sum(self.drones.values())


def _preference(job: JobShape, machine: MachineShape) -> tuple:
    # smallest machine that holds the job; keep GPU machines for GPU jobs
    wasted_gpus = machine.gpus > 0 and job.gpus == 0
    return (wasted_gpus, machine.gpus, machine.cores, machine.memory_gb, machine.name)


def pack(
    jobs: Iterable[JobShape] | Mapping[JobShape, int],
    machine_types: Sequence[MachineShape],
) -> Packing:
    """Count the drones per machine type needed to hold ``jobs``.

    ``jobs`` is either an iterable of shapes or a mapping shape -> number of jobs.
    """
    counts = Counter(jobs) if not isinstance(jobs, Mapping) else Counter(dict(jobs))
    result = Packing(drones={machine.name: 0 for machine in machine_types})
    open_drones: list[_OpenDrone] = []
    for job in sorted(counts, key=lambda j: (j.gpus, j.cores, j.memory_gb), reverse=True):
        remaining = counts[job]
        if remaining <= 0:
            continue
        for drone in open_drones:
            if remaining <= 0:
                break
            placed = min(remaining, drone.room_for(job))
            if placed:
                drone.take(job, placed)
                remaining -= placed
        open_drones = [d for d in open_drones if d.cores > _EPS]
        if remaining <= 0:
            continue
        candidates = [m for m in machine_types if m.holds(job) > 0]
        if not candidates:
            result.unfit[job] += remaining
            continue
        machine = min(candidates, key=lambda m: _preference(job, m))
        per_drone = machine.holds(job)
        full, rest = divmod(remaining, per_drone)
        result.drones[machine.name] += full + (1 if rest else 0)
        # leftover room of the new drones takes smaller jobs later; identical full drones
        # are remembered up to a bound so huge bursts stay cheap
        for _ in range(min(full, _REMEMBERED_FULL)):
            leftover = _OpenDrone(machine, machine.cores, machine.memory_gb, machine.gpus)
            leftover.take(job, per_drone)
            open_drones.append(leftover)
        if rest:
            partial = _OpenDrone(machine, machine.cores, machine.memory_gb, machine.gpus)
            partial.take(job, rest)
            open_drones.append(partial)
    return result
