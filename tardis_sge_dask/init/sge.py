"""Probe a Grid Engine site with read-only ``qconf`` calls and propose its machine types.

One machine type per queue the user may submit batch jobs to. Its drone fits the smallest
host of the queue (cores from the execution host's ``num_proc``, memory a share of its
``mem_total``), requests the memory attribute the complex table makes consumable, lands in
a parallel environment with ``allocation_rule $pe_slots`` (all cores on one host), and asks
for a walltime within the queue's ``h_rt``/``s_rt``. Each proposal is finally checked with
``qsub -w v``: Grid Engine's own verification against an empty cluster, which also covers
access rules this module does not read (resource quotas, forced complexes).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from ..schema.pilot import DEFAULT_LIFETIME_MARGIN
from .model import (
    DEFAULT_WALLTIME,
    DISK_PER_CORE,
    MAX_DRONE_CORES,
    MEMORY_SHARE,
    Excluded,
    MachineTypeProposal,
    SiteSurvey,
    Sourced,
)
from .runner import ProbeError, Run

#: memory attributes a drone's memory may be requested in, most usual first
MEMORY_ATTRIBUTES = ("h_vmem", "m_mem_free", "mem_free", "virtual_free", "h_rss", "mem_req")
GPU_ATTRIBUTES = ("gpu", "gpus", "cuda", "ngpus")
_NONE = ("NONE", "", None)
_UNITS = {
    "k": 1e3,
    "K": 1024,
    "m": 1e6,
    "M": 1024**2,
    "g": 1e9,
    "G": 1024**3,
    "t": 1e12,
    "T": 1024**4,
}


# ------------------------------------------------------------------ parsers
def parse_conf(text: str) -> dict[str, str]:
    """``qconf -sq/-se/-sp/-su`` output: ``name value`` lines, ``\\`` continues a line."""
    # a continued list goes on after its comma (``a=1, \``) or its blank (``n1 n2 \``)
    joined = re.sub(r",\s*\\\s*\n\s*", ",", text)
    joined = re.sub(r"\s*\\\s*\n\s*", " ", joined)
    conf: dict[str, str] = {}
    for line in joined.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.strip().partition(" ")
        conf[key] = value.strip()
    return conf


def parse_names(text: str) -> list[str]:
    """``qconf -sql``, ``-spl``, ``-sel``: one name per line."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def parse_host_values(value: str) -> tuple[str, dict[str, str]]:
    """``1,[node1=4],[@grp=2]`` -> (``1``, {node1: 4, @grp: 2}): a queue's per-host values."""
    overrides = dict(re.findall(r"\[([^=\]]+)=([^\]]*)\]", value))
    default = re.sub(r",?\[[^\]]*\]", "", value).strip().strip(",")
    return default, overrides


def parse_assignments(value: str) -> dict[str, str]:
    """``arch=lx-amd64,num_proc=2`` -> a dict (``NONE`` -> empty)."""
    if value in _NONE:
        return {}
    pairs = (item.partition("=") for item in value.split(",") if item.strip())
    return {name.strip(): text.strip() for name, _, text in pairs}


def parse_list(value: str | None) -> list[str]:
    """``a b,c`` or ``NONE`` -> names."""
    if value in _NONE:
        return []
    return [name for name in re.split(r"[\s,]+", value or "") if name and name != "NONE"]


def parse_time(value: str) -> int | None:
    """Seconds of a Grid Engine time (``INFINITY`` -> None): ``H:M:S`` or seconds."""
    text = value.strip()
    if text.upper() == "INFINITY" or not text:
        return None
    if ":" in text:
        parts = [int(part or 0) for part in text.split(":")]
        seconds = 0
        for part in parts:
            seconds = seconds * 60 + part
        return seconds
    return int(float(text))


def parse_memory_mb(value: str) -> float | None:
    """MB (2^20 bytes) of a Grid Engine memory value; ``INFINITY`` -> None.

    Grid Engine's lower-case units are powers of 1000, upper-case ones of 1024.
    """
    text = value.strip()
    if text.upper() == "INFINITY" or not text:
        return None
    unit = _UNITS.get(text[-1], 1)
    number = float(text[:-1] if text[-1] in _UNITS else text)
    return number * unit / 1024**2


@dataclass(frozen=True)
class Complex:
    name: str
    shortcut: str
    type: str
    requestable: str
    consumable: str
    default: str


def parse_complexes(text: str) -> dict[str, Complex]:
    """``qconf -sc``: the complex table (consumable YES, JOB or NO)."""
    table = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 7 or line.startswith("#"):
            continue
        name, shortcut, kind, _relop, requestable, consumable, default = fields[:7]
        table[name] = Complex(name, shortcut, kind, requestable, consumable, default)
    return table


def choose_memory_attribute(complexes: dict[str, Complex]) -> Sourced:
    """The consumable memory attribute drones request per slot (``MemoryResource``)."""
    for name in MEMORY_ATTRIBUTES:
        entry = complexes.get(name)
        if entry and entry.type == "MEMORY" and entry.consumable == "YES":
            if entry.requestable in ("YES", "FORCED"):
                return Sourced(name, f"qconf -sc: {name} is requestable and consumable per slot")
    for name in MEMORY_ATTRIBUTES:
        entry = complexes.get(name)
        if entry and entry.type == "MEMORY" and entry.consumable == "JOB":
            return Sourced(
                None,
                f"qconf -sc: {name} is consumable per job (JOB), but drones request"
                " memory per slot",
                f"request {name} per job with ExtraOptions ['-l', '{name}=...']?",
            )
    return Sourced(
        None,
        "qconf -sc: no consumable memory attribute, so memory is not scheduled",
        "should drones request memory (h_vmem is also a hard limit on the job)?",
    )


def choose_gpu_attribute(complexes: dict[str, Complex]) -> Complex | None:
    for name, entry in complexes.items():
        if name.lower() in GPU_ATTRIBUTES and entry.consumable in ("YES", "JOB"):
            if entry.type in ("INT", "DOUBLE", "RSMAP") and entry.requestable in ("YES", "FORCED"):
                return entry
    return None


#: the stack limit drones ask for with h_vmem: Linux's usual default
STACK_LIMIT = "8M"


def choose_stack_limit(complexes: dict[str, Complex], memory: str | None) -> Sourced | None:
    """``-l h_stack=8M`` where drones request h_vmem.

    Grid Engine sets a job's stack limit to its h_vmem when the job asks for no h_stack.
    Every new thread reserves the stack limit in address space, which h_vmem also bounds:
    the second thread of a process already fails (measured: OpenBLAS, imported by the dask
    worker, cannot start its threads and the worker never joins).
    """
    entry = complexes.get("h_stack")
    if memory != "h_vmem" or entry is None or entry.requestable not in ("YES", "FORCED"):
        return None
    return Sourced(
        ["-l", f"h_stack={STACK_LIMIT}"],
        "drones request h_vmem, and without h_stack Grid Engine makes the stack limit as"
        " large: every thread would reserve that much address space within h_vmem",
    )


# ------------------------------------------------------------------- probe
@dataclass
class Host:
    name: str
    cores: int | None
    memory_mb: float | None
    capacities: dict[str, str]

    @property
    def memory_per_core(self) -> float | None:
        return self.memory_mb / self.cores if self.memory_mb and self.cores else None


class SGEProbe:
    def __init__(self, run: Run):
        self.run = run
        self._hosts: dict[str, Host] = {}
        self._acls: dict[str, list[str] | None] = {}
        self._pes: dict[str, dict[str, str]] = {}

    def text(self, *argv: str) -> str | None:
        output = self.run(*argv)
        return output.stdout if output.ok else None

    # -- users and access lists
    def acl(self, name: str) -> list[str] | None:
        if name not in self._acls:
            text = self.text("qconf", "-su", name)
            self._acls[name] = None if text is None else parse_list(parse_conf(text).get("entries"))
        return self._acls[name]

    def may_use(self, allowed: str | None, denied: str | None) -> tuple[bool, str]:
        """Whether the user is let in by ``user_lists``/``xuser_lists``, and why."""
        names = {self.user, *(f"@{group}" for group in self.groups)}
        for acl in parse_list(denied):
            entries = self.acl(acl)
            if entries is not None and names & set(entries):
                return False, f"xuser_lists {acl} holds {', '.join(sorted(names & set(entries)))}"
        lists = parse_list(allowed)
        if not lists:
            return True, "user_lists NONE"
        for acl in lists:
            entries = self.acl(acl)
            if entries is not None and names & set(entries):
                return True, f"user_lists {acl} holds {', '.join(sorted(names & set(entries)))}"
        return False, f"user_lists {' '.join(lists)} do not hold {self.user} or its groups"

    # -- hosts
    def hosts_of(self, hostlist: str) -> list[str]:
        hosts: list[str] = []
        for entry in parse_list(hostlist):
            if entry.startswith("@"):
                text = self.text("qconf", "-shgrp_resolved", entry) or ""
                hosts += text.split()
            else:
                hosts.append(entry)
        return sorted(set(hosts))

    def host(self, name: str) -> Host:
        if name not in self._hosts:
            conf = parse_conf(self.text("qconf", "-se", name) or "")
            load = parse_assignments(conf.get("load_values", "NONE"))
            cores = load.get("num_proc") or conf.get("processors")
            memory = load.get("mem_total")
            self._hosts[name] = Host(
                name,
                int(float(cores)) if cores and cores.replace(".", "").isdigit() else None,
                parse_memory_mb(memory) if memory else None,
                parse_assignments(conf.get("complex_values", "NONE")),
            )
        return self._hosts[name]

    def pe(self, name: str) -> dict[str, str] | None:
        if name not in self._pes:
            text = self.text("qconf", "-sp", name)
            self._pes[name] = {} if text is None else parse_conf(text)
        return self._pes[name] or None

    # -- the site
    def survey(self) -> SiteSurvey:
        self.user = (self.text("id", "-un") or "").strip() or "?"
        self.groups = (self.text("id", "-Gn") or "").split()
        survey = SiteSurvey("sge", "SGE", self.user)
        queues = self.text("qconf", "-sql")
        if queues is None:
            raise ProbeError("qconf -sql failed: is this a Grid Engine submit host?")
        complexes = parse_complexes(self.text("qconf", "-sc") or "")
        self.memory = choose_memory_attribute(complexes)
        self.gpu = choose_gpu_attribute(complexes)
        self.stack = choose_stack_limit(complexes, self.memory.value)
        survey.notes.append(f"qconf -sql: {' '.join(parse_names(queues)) or 'no queues'}")
        survey.notes.append(f"MemoryResource: {self.memory.source}")
        counted: dict[str, int] = {}
        for queue in parse_names(queues):
            proposal = self.queue(queue, survey)
            if proposal is not None:
                survey.machine_types.append(proposal)
                for host in self.hosts_of(self.queue_conf[queue].get("hostlist", "")):
                    counted[host] = self.host(host).cores or 0
        if counted:
            survey.site_cores = Sourced(
                sum(counted.values()),
                f"qconf -se: num_proc of {', '.join(sorted(counted))}",
            )
        return survey

    queue_conf: dict[str, dict[str, str]]

    def queue(self, queue: str, survey: SiteSurvey) -> MachineTypeProposal | None:
        if not hasattr(self, "queue_conf"):
            self.queue_conf = {}
        conf = parse_conf(self.text("qconf", "-sq", queue) or "")
        self.queue_conf[queue] = conf

        def leave_out(reason: str) -> MachineTypeProposal | None:
            survey.excluded.append(Excluded(queue, reason))
            return None  # the queue proposes no machine type

        if not conf:
            return leave_out("qconf -sq gave nothing")
        if "BATCH" not in conf.get("qtype", "BATCH").split():
            return leave_out(f"qtype {conf.get('qtype')}: no batch jobs")
        allowed, why = self.may_use(
            parse_host_values(conf.get("user_lists", "NONE"))[0],
            parse_host_values(conf.get("xuser_lists", "NONE"))[0],
        )
        if not allowed:
            return leave_out(f"{self.user} may not use it ({why})")
        hosts = self.hosts_of(conf.get("hostlist", "NONE"))
        if not hosts:
            return leave_out("hostlist NONE: no execution host")
        slots = self.least(conf.get("slots", "0"), hosts, lambda text: int(text))
        if not slots:
            return leave_out("slots 0")
        known = [self.host(name) for name in hosts]
        host_cores = min((host.cores for host in known if host.cores), default=None)
        # the host with the least memory per core bounds a drone's memory on every host
        sized = [host for host in known if host.memory_per_core is not None]
        poorest = min(sized, key=lambda host: host.memory_per_core or 0, default=None)
        # the PE that keeps every core of a drone on one host
        pe_name, pe_source, pe_question = self.choose_pe(conf, hosts)
        cap = min(MAX_DRONE_CORES, slots, host_cores or slots)
        if pe_name is None:
            cores = Sourced(1, pe_source, pe_question)
        else:
            pe_slots = int((self.pe(pe_name) or {}).get("slots", "0") or 0)
            cap = min(cap, pe_slots) if pe_slots else cap
            cores = Sourced(
                cap,
                f"min({MAX_DRONE_CORES} (init's largest drone), slots {slots} of {queue},"
                f" num_proc {host_cores} of the smallest host (qconf -se))",
            )
        meta = {"Cores": cores}
        meta["Memory"] = self.memory_of(queue, conf, hosts, cores.value, poorest)
        meta["Disk"] = Sourced(
            DISK_PER_CORE * cores.value,
            f"{DISK_PER_CORE} GB per core: Grid Engine does not report node scratch",
            "how much scratch (tmpdir "
            f"{conf.get('tmpdir', '?')}) may a drone use? The pilot refuses to start"
            " with less free",
        )
        config = {"Queue": Sourced(queue, "qconf -sql")}
        if pe_name is not None:
            config["ParallelEnvironment"] = Sourced(pe_name, pe_source, pe_question)
        config["MemoryResource"] = self.memory
        if self.stack is not None:
            config["ExtraOptions"] = self.stack
        walltime = self.walltime_of(queue, conf, hosts)
        if walltime.value <= DEFAULT_LIFETIME_MARGIN + 60:
            return leave_out(
                f"h_rt/s_rt {walltime.value} s leave no time after the pilot's margin"
                f" ({DEFAULT_LIFETIME_MARGIN} s)"
            )
        config["Walltime"] = walltime
        projects = parse_list(parse_host_values(conf.get("projects", "NONE"))[0])
        if projects:
            config["Project"] = Sourced(
                projects[0],
                f"qconf -sq {queue}: projects {' '.join(projects)}",
                "which project may the drones' account submit under?",
            )
        proposal = MachineTypeProposal(machine_type_name(queue), meta, config)
        gpu = self.gpu
        if gpu and all(gpu.name in host.capacities for host in known):
            count = min(_count(host.capacities[gpu.name]) for host in known)
            if gpu.consumable == "JOB" or proposal.cores == 1:
                proposal.gpus = Sourced(
                    1,
                    f"qconf -sc: {gpu.name} is consumable per job; qconf -se: {count} on each"
                    " host; one per drone",
                    "more GPUs per drone?",
                )
                extra = config.get("ExtraOptions")
                config["ExtraOptions"] = Sourced(
                    [*(extra.value if extra else []), "-l", f"{gpu.name}=1"],
                    f"qconf -sc: the GPU consumable is {gpu.name}"
                    + (f"; {extra.source}" if extra else ""),
                )
            else:
                proposal.notes.append(
                    f"QUESTION: the hosts have {count} GPUs ({gpu.name}), consumable per slot:"
                    f" -l {gpu.name}=1 would ask for one per core; how many should a drone get?"
                )
        proposal.notes.append(
            f"{queue}: hosts {' '.join(hosts)}; {why}; pe_list {conf.get('pe_list', 'NONE')}"
        )
        reason = self.verify(proposal)
        if reason:
            return leave_out(reason)
        proposal.notes.append("qsub -w v: found suitable queue(s) for one drone")
        return proposal

    def least(self, value: str, hosts: list[str], convert: Callable[[str], int]) -> int:
        default, overrides = parse_host_values(value)
        values = []
        for host in hosts:
            text = overrides.get(host, default)
            try:
                values.append(convert(text))
            except ValueError:
                continue
        return min(values, default=0)

    def choose_pe(self, conf: dict[str, str], hosts: list[str]) -> tuple[str | None, str, str]:
        names = parse_list(parse_host_values(conf.get("pe_list", "NONE"))[0])
        rules = {}
        for name in names:
            pe = self.pe(name)
            if pe is None:
                continue
            allowed, _ = self.may_use(pe.get("user_lists"), pe.get("xuser_lists"))
            if allowed:
                rules[name] = pe.get("allocation_rule", "")
        for name, rule in rules.items():
            if rule == "$pe_slots":
                return name, f"qconf -sp {name}: allocation_rule $pe_slots (one host)", ""
        listed = ", ".join(f"{name} ({rule})" for name, rule in rules.items()) or "none"
        return (
            None,
            f"qconf -sq: pe_list offers no $pe_slots PE the user may use (found: {listed});"
            " one-core drones",
            "ask for a parallel environment with allocation_rule $pe_slots for bigger drones",
        )

    def memory_of(
        self,
        queue: str,
        conf: dict[str, str],
        hosts: list[str],
        cores: int,
        poorest: Host | None,
    ) -> Sourced:
        limits = []
        source = []
        if poorest is not None and poorest.memory_mb and poorest.cores:
            limits.append(poorest.memory_mb * cores / poorest.cores * MEMORY_SHARE)
            source.append(
                f"{MEMORY_SHARE:.0%} of {cores}/{poorest.cores} of mem_total"
                f" {poorest.memory_mb / 1024:.1f} GB of {poorest.name} (qconf -se), the host"
                " with the least memory per core"
            )
        resource = self.memory.value
        if resource:
            per_slot = []
            for host in hosts:
                default, overrides = parse_host_values(conf.get(resource, "INFINITY"))
                limit = parse_memory_mb(overrides.get(host, default))
                if limit is not None:
                    per_slot.append(limit)
                capacity = parse_memory_mb(self.host(host).capacities.get(resource) or "")
                if capacity is not None:
                    limits.append(capacity * MEMORY_SHARE)
                    source.append(
                        f"{MEMORY_SHARE:.0%} of {resource} {capacity / 1024:.1f} GB on {host}"
                        " (qconf -se complex_values)"
                    )
            if per_slot:
                limits.append(min(per_slot) * cores)
                source.append(f"{resource} {min(per_slot):.0f} MB per slot (qconf -sq {queue})")
        if not limits:
            return Sourced(
                2 * cores,
                "2 GB per core: no host reports mem_total",
                "how much memory may a drone use?",
            )
        gigabytes = max(1, math.floor(min(limits) / 1024))
        return Sourced(gigabytes, "; ".join(source) or "qconf -se")

    def walltime_of(self, queue: str, conf: dict[str, str], hosts: list[str]) -> Sourced:
        limits = {}
        for key in ("h_rt", "s_rt"):
            default, overrides = parse_host_values(conf.get(key, "INFINITY"))
            values = [parse_time(overrides.get(host, default)) for host in hosts]
            finite = [value for value in values if value is not None]
            if finite:
                limits[key] = min(finite)
        if not limits:
            return Sourced(
                DEFAULT_WALLTIME,
                f"qconf -sq {queue}: h_rt and s_rt INFINITY; init's default of"
                f" {DEFAULT_WALLTIME // 3600} h",
                "how long may one drone hold its slots?",
            )
        key = min(limits, key=lambda name: limits[name])
        return Sourced(
            limits[key],
            f"qconf -sq {queue}: {key} {limits[key]} s, the queue's limit (the pilot retires"
            " its workers PILOT_LIFETIME_MARGIN before)",
        )

    def verify(self, proposal: MachineTypeProposal) -> str | None:
        """Grid Engine's own answer to "could one drone of this shape ever run here"."""
        config = proposal.config
        argv = ["qsub", "-w", "v", "-b", "y", "-q", config["Queue"].value]
        if "ParallelEnvironment" in config:
            argv += ["-pe", config["ParallelEnvironment"].value, str(proposal.cores)]
        if config["MemoryResource"].value:
            slots = proposal.cores if "ParallelEnvironment" in config else 1
            argv += [
                "-l",
                f"{config['MemoryResource'].value}={int(proposal.memory * 1024 / slots)}M",
            ]
        argv += ["-l", f"h_rt={config['Walltime'].value}"]
        if "Project" in config:
            argv += ["-P", config["Project"].value]
        if "ExtraOptions" in config:
            argv += config["ExtraOptions"].value
        argv.append("/bin/true")
        output = self.run(*argv)
        if output.ok:
            return None
        said = " ".join((output.stdout + " " + output.stderr).split())
        return f"qsub -w v refuses a drone of this shape: {said}"


def _count(text: str) -> int:
    """``2`` or an RSMAP's ``2(0 1)`` -> 2."""
    match = re.match(r"\d+", text)
    return int(match.group()) if match else 0


def machine_type_name(queue: str) -> str:
    """``idefix.q`` -> ``idefix``: a machine type name (no dots, commas or spaces)."""
    base = queue[:-2] if queue.endswith(".q") else queue
    return re.sub(r"[^A-Za-z0-9_-]", "_", base) or "queue"


def probe(run: Run) -> SiteSurvey:
    return SGEProbe(run).survey()
