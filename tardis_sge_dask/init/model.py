"""What a probe learns about a site, each value with the command output it came from.

The probes (:mod:`.sge`, :mod:`.slurm`) fill a :class:`SiteSurvey`; the writer
(:mod:`.writer`) turns it into the configuration file. Every proposed value is a
:class:`Sourced` so the file can say where it came from, and every value a probe could not
determine carries the question an admin must answer instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: the largest drone init proposes: a slice of a node fits into the gaps regular jobs leave
MAX_DRONE_CORES = 8
#: share of a node's memory per core a drone takes; the rest stays with the site's own jobs
#: and the operating system, and two drones on one host still fit a consumable's capacity
MEMORY_SHARE = 0.5
#: drone walltime where the queue has no limit
DEFAULT_WALLTIME = 24 * 3600
#: share of the site's cores all drones together may hold, at least one drone of each type
SITE_SHARE = 0.25
#: GB of node scratch per drone core when the nodes do not say (the pilot checks free space)
DISK_PER_CORE = 2


@dataclass
class Sourced:
    """A value and the command output (or rule) it came from."""

    value: Any
    source: str
    #: what an admin should confirm or answer; None when the probe is sure
    question: str | None = None


@dataclass
class MachineTypeProposal:
    """One machine type: a queue or partition the user may submit to."""

    name: str
    #: Cores, Memory (GB), Disk (GB)
    meta: dict[str, Sourced]
    #: the adapter's machine-type keys (Queue, ParallelEnvironment, Partition, ...)
    config: dict[str, Sourced]
    gpus: Sourced = field(default_factory=lambda: Sourced(0, "no GPUs found"))
    #: lines shown above the machine type (what the queue is, what was checked)
    notes: list[str] = field(default_factory=list)

    @property
    def cores(self) -> int:
        return int(self.meta["Cores"].value)

    @property
    def memory(self) -> float:
        return float(self.meta["Memory"].value)


@dataclass
class Excluded:
    """A queue or partition left out, and why."""

    name: str
    reason: str


@dataclass
class SiteSurvey:
    batch_system: str  #: "sge" or "slurm"
    adapter: str  #: the ``adapter:`` name in ``tardis.Sites``
    user: str
    machine_types: list[MachineTypeProposal] = field(default_factory=list)
    excluded: list[Excluded] = field(default_factory=list)
    #: cores of all hosts the usable queues reach, and where that number came from
    site_cores: Sourced | None = None
    #: lines for the head of the file (versions, what could not be read)
    notes: list[str] = field(default_factory=list)

    def quota(self) -> Sourced:
        """Cores all drones may hold: a share of the site, at least one drone of each type."""
        one_each = sum(proposal.cores for proposal in self.machine_types)
        if self.site_cores is None or not self.site_cores.value:
            return Sourced(
                one_each,
                "one drone of each machine type",
                "how many cores may drones hold together?",
            )
        share = int(self.site_cores.value * SITE_SHARE)
        if share >= one_each:
            return Sourced(
                share,
                f"{SITE_SHARE:.0%} of the {self.site_cores.value} cores of the site"
                f" ({self.site_cores.source})",
                "how large a share of the site may be lent?",
            )
        return Sourced(
            one_each,
            f"one drone of each machine type ({SITE_SHARE:.0%} of the site's"
            f" {self.site_cores.value} cores would not hold them)",
            "how large a share of the site may be lent?",
        )
