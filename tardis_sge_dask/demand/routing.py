"""Which site the waiting jobs go to, and how many drones of each machine type they need.

Pure arithmetic over a :class:`~.plan.Census`, no I/O. Sites are taken in the order of
preference (the order of ``tardis.Sites``):

* a job that names a site (``JobShape.site``) is packed only onto that site's machine
  types; if the site has no room it waits there;
* a job that names none goes to the first site with room, and spills to the next one when
  the site's room is used up, or when the site's drones have been queued longer than
  ``spill_after`` (the site is busy: its own queued drones still take jobs, no new ones
  are asked for there).

A site's room is its quota minus the cores of the drones that cannot take a waiting job:
busy drones and released ones still leaving. Idle, queued and joining drones take waiting
jobs, so they are part of the drones the jobs need, not extra.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from .packing import JobShape, MachineShape, Packing, pack
from .plan import Census, SlotCensus, SlotKey

_EPS = 1e-9


@dataclass
class Routing:
    """Drones needed per site and machine type, and what could not be placed."""

    needed: dict[SlotKey, int] = field(default_factory=dict)
    #: jobs no machine type of any allowed site holds
    unfit: Counter[JobShape] = field(default_factory=Counter)
    #: jobs that fit but wait: their site (or every site) is full
    waiting: Counter[JobShape] = field(default_factory=Counter)
    #: one line per decision, with its reason
    decisions: list[str] = field(default_factory=list)


def _jobs(counter: Counter[JobShape]) -> list[tuple[JobShape, int]]:
    return sorted(
        ((job, n) for job, n in counter.items() if n > 0),
        key=lambda item: (item[0].gpus, item[0].cores, item[0].memory_gb),
        reverse=True,
    )


def _prefix(jobs: list[tuple[JobShape, int]], k: int) -> Counter[JobShape]:
    taken: Counter[JobShape] = Counter()
    for job, n in jobs:
        if k <= 0:
            break
        taken[job] += min(n, k)
        k -= min(n, k)
    return taken


def _count(counter: Counter[JobShape]) -> int:
    return sum(counter.values())


def _most_that_fit(
    base: Counter[JobShape],
    jobs: list[tuple[JobShape, int]],
    machines: list[MachineShape],
    limit: float,
) -> tuple[int, Packing]:
    """The largest k such that ``base`` plus the first k of ``jobs`` pack into ``limit``."""
    total = sum(n for _, n in jobs)
    low, high = 0, total
    best = pack(base, machines)
    if best.cores(machines) > limit + _EPS:
        return 0, best
    while low < high:
        middle = (low + high + 1) // 2
        trial = pack(base + _prefix(jobs, middle), machines)
        if trial.cores(machines) <= limit + _EPS:
            low, best = middle, trial
        else:
            high = middle - 1
    return low, best


def _describe(counter: Counter[JobShape]) -> str:
    return ", ".join(f"{n}x {job}" for job, n in sorted(counter.items()))


def route(
    waiting: Mapping[JobShape, int],
    census: Census,
    spill_after: float | None = None,
) -> Routing:
    """Place the waiting jobs on the census's sites, in the order of preference."""
    result = Routing()
    sites = [site.name for site in census.sites]
    machines_at = {site: [slot.shape for slot in census.slots_of(site)] for site in sites}
    for slot in census.slots:
        result.needed[slot.key] = 0
    pinned: dict[str, Counter[JobShape]] = {site: Counter() for site in sites}
    free: Counter[JobShape] = Counter()
    for job, n in waiting.items():
        if n <= 0:
            continue
        if not job.site:
            free[job] += n
        elif job.site in pinned:
            pinned[job.site][job] += n
        else:
            result.unfit[job] += n
            result.decisions.append(f"{n}x {job}: no site {job.site!r} in this daemon")
    for index, site in enumerate(sites):
        slots = census.slots_of(site)
        machines = machines_at[site]
        fits_here = {job for job in {*pinned[site], *free} if any(m.holds(job) for m in machines)}
        for job in [job for job in pinned[site] if job not in fits_here]:
            result.unfit[job] += pinned[site].pop(job)
        here_pinned = _jobs(pinned[site])
        here_free = _jobs(Counter({job: n for job, n in free.items() if job in fits_here}))
        room = census.quota(site) - _unavailable_cores(slots)
        k_pinned, packing = _most_that_fit(Counter(), here_pinned, machines, room)
        kept_pinned = _prefix(here_pinned, k_pinned)
        left_pinned = pinned[site] - kept_pinned
        if left_pinned:
            result.waiting += left_pinned
            result.decisions.append(
                f"{_count(left_pinned)} job(s) for {site} wait: its quota of "
                f"{census.quota(site):g} cores is full ({_describe(left_pinned)})"
            )
        limit, reason = room, f"quota of {census.quota(site):g} cores full"
        stuck = (
            spill_after is not None
            and max((slot.oldest_starting for slot in slots), default=0.0) > spill_after
        )
        if stuck:
            absorbing = sum((s.idle + s.starting + s.joining) * s.shape.cores for s in slots)
            limit = max(packing.cores(machines), min(room, absorbing))
            reason = f"drones queued longer than spill_after ({spill_after:g} s)"
        k_free, packing = _most_that_fit(kept_pinned, here_free, machines, limit)
        kept_free = _prefix(here_free, k_free)
        free -= kept_free
        for name, count in packing.drones.items():
            result.needed[(site, name)] += count
        if kept_pinned or kept_free:
            result.decisions.append(
                f"{site}: {_count(kept_free) + _count(kept_pinned)} job(s) "
                f"({_count(kept_pinned)} asking for it) need "
                + ", ".join(f"{n} {name}" for name, n in sorted(packing.drones.items()) if n)
            )
        spilled = Counter({job: n for job, n in free.items() if job in fits_here})
        if spilled:
            following = sites[index + 1] if index + 1 < len(sites) else None
            where = f"spill to {following}" if following else "wait: no site left"
            result.decisions.append(f"{_count(spilled)} job(s) {where}: {site} {reason}")
    for job, n in free.items():
        if not any(m.holds(job) for machines in machines_at.values() for m in machines):
            result.unfit[job] += n
        else:
            result.waiting[job] += n
    return result


def _unavailable_cores(slots: list[SlotCensus]) -> float:
    return sum((slot.busy + slot.leaving) * slot.shape.cores for slot in slots)
