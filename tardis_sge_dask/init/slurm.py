"""Probe a SLURM site with read-only ``scontrol``/``sacctmgr`` calls.

One machine type per partition the user may submit to (``State=UP``, ``AllowAccounts``,
``AllowGroups``, ``AllowQos``, ``Deny*``, ``RootOnly``). Its drone fits the smallest node
of the partition (``CPUTot``, ``RealMemory``, the partition's ``MaxCPUsPerNode`` and
``MaxMemPer*``), asks for a time within ``MaxTime``, and requests one GPU where every node
of the partition has ``gres/gpu``. Each proposal is checked with ``sbatch --test-only``,
SLURM's own answer without submitting anything.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..schema.base import keys
from ..schema.pilot import DEFAULT_LIFETIME_MARGIN
from ..schema.sites import SlurmMachineType
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

_UNLIMITED = ("UNLIMITED", "INFINITE", "NONE", "N/A", "(null)", "")


# ------------------------------------------------------------------ parsers
def parse_records(text: str) -> list[dict[str, str]]:
    """``scontrol show ... -o``: one record a line, ``Key=Value`` words.

    A value may hold spaces (``Reason=Not responding [slurm@...]``); a word without ``=``
    belongs to the value before it.
    """
    records = []
    for line in text.splitlines():
        record: dict[str, str] = {}
        last = None
        for word in line.split(" "):
            match = re.match(r"([A-Za-z][A-Za-z0-9_:/.]*)=(.*)", word)
            if match:
                last = match.group(1)
                record[last] = match.group(2)
            elif last is not None and word:
                record[last] += f" {word}"
        if record:
            records.append(record)
    return records


def parse_minutes_limit(value: str) -> int | None:
    """Seconds of a SLURM time limit (``UNLIMITED`` -> None): ``[D-]HH:MM:SS`` or minutes."""
    text = value.strip()
    if text.upper() in _UNLIMITED:
        return None
    days = 0
    if "-" in text:
        day_text, _, text = text.partition("-")
        days = int(day_text)
    parts = [int(part) for part in text.split(":")]
    if len(parts) == 1:
        seconds = parts[0] * 60  # plain minutes
    elif len(parts) == 2:
        seconds = parts[0] * 60 + parts[1]
    else:
        seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
    return days * 86400 + seconds


def parse_number(value: str | None) -> int | None:
    if value is None or value.strip().upper() in _UNLIMITED:
        return None
    match = re.match(r"\d+", value.strip())
    return int(match.group()) if match else None


def parse_gpus(gres: str | None) -> int:
    """GPUs of a node's ``Gres=gpu:2,gpu:tesla:2(S:0-1),mps:100``."""
    total = 0
    for item in (gres or "").split(","):
        item = re.sub(r"\(.*?\)", "", item.strip())
        parts = item.split(":")
        if parts[0] == "gpu" and len(parts) >= 2 and parts[-1].isdigit():
            total += int(parts[-1])
    return total


def parse_names(value: str | None) -> list[str]:
    if value is None or value.strip().upper() in ("ALL", "(NULL)", ""):
        return []
    return [name for name in value.split(",") if name]


@dataclass
class Node:
    name: str
    cpus: int
    memory_mb: int
    gpus: int
    state: str
    partitions: frozenset[str]


# ------------------------------------------------------------------- probe
class SlurmProbe:
    def __init__(self, run: Run):
        self.run = run

    def text(self, *argv: str) -> str | None:
        output = self.run(*argv)
        return output.stdout if output.ok else None

    def survey(self) -> SiteSurvey:
        self.user = (self.text("id", "-un") or "").strip() or "?"
        self.groups = set((self.text("id", "-Gn") or "").split())
        survey = SiteSurvey("slurm", "SlurmBatch", self.user)
        partitions = self.text("scontrol", "show", "partition", "-o")
        if partitions is None:
            raise ProbeError("scontrol show partition failed: is this a SLURM login node?")
        nodes = {
            record["NodeName"]: Node(
                record["NodeName"],
                parse_number(record.get("CPUTot")) or 1,
                parse_number(record.get("RealMemory")) or 0,
                parse_gpus(record.get("Gres")),
                record.get("State", "?"),
                frozenset(parse_names(record.get("Partitions"))),
            )
            for record in parse_records(self.text("scontrol", "show", "node", "-o") or "")
            if "NodeName" in record
        }
        self.accounts, self.qos, self.default_account = self.associations(survey)
        records = parse_records(partitions)
        survey.notes.append(
            "scontrol show partition: "
            + " ".join(record.get("PartitionName", "?") for record in records)
        )
        counted: dict[str, int] = {}
        for record in records:
            proposal = self.partition(record, nodes, survey)
            if proposal is not None:
                survey.machine_types.append(proposal)
                for name in self.nodes_of(record, nodes):
                    counted[name] = nodes[name].cpus
        if counted:
            survey.site_cores = Sourced(
                sum(counted.values()),
                f"scontrol show node: CPUTot of {', '.join(sorted(counted))}",
            )
        return survey

    def associations(self, survey: SiteSurvey) -> tuple[set[str] | None, set[str], str | None]:
        """The accounts and QOS the user has (None: accounting cannot be read)."""
        text = self.text(
            "sacctmgr",
            "-nP",
            "show",
            "assoc",
            f"user={self.user}",
            "format=account,partition,qos",
        )
        default = self.text("sacctmgr", "-nP", "show", "user", self.user, "format=defaultaccount")
        if text is None:
            survey.notes.append(
                "sacctmgr show assoc failed: accounts and QOS unknown (no slurmdbd?)"
            )
            return None, set(), None
        accounts: set[str] = set()
        qos: set[str] = set()
        for line in text.splitlines():
            account, _partition, qos_list = (line.split("|") + ["", ""])[:3]
            if account:
                accounts.add(account)
            qos.update(name for name in qos_list.split(",") if name)
        survey.notes.append(
            f"sacctmgr show assoc: {self.user} has account(s)"
            f" {', '.join(sorted(accounts)) or 'none'}; QOS {', '.join(sorted(qos)) or 'none'}"
        )
        return accounts, qos, (default or "").strip() or None

    @staticmethod
    def nodes_of(record: dict[str, str], nodes: dict[str, Node]) -> list[str]:
        """The partition's nodes: each node lists its partitions (``scontrol show node``)."""
        name = record.get("PartitionName", "")
        members = [node.name for node in nodes.values() if name in node.partitions]
        if not members and record.get("Nodes") not in _UNLIMITED:
            listed = _expand(record.get("Nodes", ""))
            members = [node for node in nodes if node in listed]
        return sorted(members)

    def partition(
        self, record: dict[str, str], nodes: dict[str, Node], survey: SiteSurvey
    ) -> MachineTypeProposal | None:
        name = record.get("PartitionName", "?")

        def leave_out(reason: str) -> MachineTypeProposal | None:
            survey.excluded.append(Excluded(name, reason))
            return None  # the partition proposes no machine type

        if record.get("State", "UP") != "UP":
            return leave_out(f"State={record.get('State')}")
        if record.get("RootOnly") == "YES" and self.user != "root":
            return leave_out("RootOnly=YES")
        allowed_groups = parse_names(record.get("AllowGroups"))
        if allowed_groups and self.user != "root" and not self.groups & set(allowed_groups):
            return leave_out(f"AllowGroups={record['AllowGroups']}: {self.user} is in none")
        account = self.account_for(record)
        if isinstance(account, Excluded):
            return leave_out(account.reason)
        qos = self.qos_for(record)
        if isinstance(qos, Excluded):
            return leave_out(qos.reason)
        members = [nodes[node] for node in self.nodes_of(record, nodes)]
        if not members:
            return leave_out("no nodes")
        cpus = min(node.cpus for node in members)
        max_cpus = parse_number(record.get("MaxCPUsPerNode"))
        cores = min(MAX_DRONE_CORES, cpus, max_cpus or cpus)
        cores_source = (
            f"min({MAX_DRONE_CORES} (init's largest drone), CPUTot {cpus} of the smallest node"
            + (f", MaxCPUsPerNode {max_cpus}" if max_cpus else "")
            + ")"
        )
        meta = {"Cores": Sourced(cores, f"scontrol show node/partition: {cores_source}")}
        meta["Memory"] = self.memory_of(record, members, cores)
        meta["Disk"] = Sourced(
            DISK_PER_CORE * cores,
            f"{DISK_PER_CORE} GB per core: TmpDisk is not set on the nodes",
            "how much node scratch may a drone use? The pilot refuses to start with less free",
        )
        config: dict[str, Sourced] = {"Partition": Sourced(name, "scontrol show partition -o")}
        if account is not None:
            config["Account"] = account
        if qos is not None:
            config["QOS"] = qos
        walltime = self.walltime_of(record)
        warning = keys(SlurmMachineType)["WarningTime"].default
        if walltime.value <= max(DEFAULT_LIFETIME_MARGIN, warning) + 60:
            return leave_out(
                f"MaxTime {record.get('MaxTime')} leaves no time after the pilot's margin"
            )
        config["Walltime"] = walltime
        proposal = MachineTypeProposal(name.replace(".", "_"), meta, config)
        gpus = min(node.gpus for node in members)
        if gpus:
            proposal.gpus = Sourced(
                1,
                f"scontrol show node: gres/gpu {gpus} on every node; one per drone",
                "more GPUs per drone?",
            )
            config["ExtraOptions"] = Sourced(["--gres=gpu:1"], "scontrol show node: Gres=gpu")
        proposal.notes.append(
            f"partition {name}: nodes {' '.join(node.name for node in members)},"
            f" MaxTime={record.get('MaxTime')}, AllowAccounts={record.get('AllowAccounts')},"
            f" AllowGroups={record.get('AllowGroups')}, AllowQos={record.get('AllowQos')}"
        )
        reason = self.verify(proposal)
        if reason:
            return leave_out(reason)
        proposal.notes.append("sbatch --test-only: one drone of this shape can start")
        return proposal

    def account_for(self, record: dict[str, str]) -> Sourced | Excluded | None:
        allowed = parse_names(record.get("AllowAccounts"))
        denied = set(parse_names(record.get("DenyAccounts")))
        if self.accounts is None:
            if allowed:
                return Sourced(
                    allowed[0],
                    f"AllowAccounts={record['AllowAccounts']} (sacctmgr not readable)",
                    "may the drones' account use it?",
                )
            return None
        if not self.accounts:
            # no association: sbatch submits without an account where accounting does not
            # enforce associations, and sbatch --test-only says whether it does
            if allowed:
                return Excluded(
                    record.get("PartitionName", "?"),
                    f"AllowAccounts={record['AllowAccounts']}: {self.user} has no account"
                    " (sacctmgr show assoc)",
                )
            return None
        usable = sorted(
            (self.accounts - denied) & set(allowed) if allowed else self.accounts - denied
        )
        if not usable:
            why = (
                f"AllowAccounts={record.get('AllowAccounts')}"
                if allowed
                else (f"DenyAccounts={record.get('DenyAccounts')}")
            )
            return Excluded(
                record.get("PartitionName", "?"),
                f"{why}: none of {self.user}'s accounts"
                f" ({', '.join(sorted(self.accounts)) or 'none'})",
            )
        if self.default_account in usable and not allowed and not denied:
            return None  # sbatch uses the default account
        choice = self.default_account if self.default_account in usable else usable[0]
        return Sourced(
            choice,
            f"sacctmgr show assoc: {self.user}'s account allowed by AllowAccounts"
            f"={record.get('AllowAccounts')}",
        )

    def qos_for(self, record: dict[str, str]) -> Sourced | Excluded | None:
        allowed = parse_names(record.get("AllowQos"))
        if not allowed or self.accounts is None:
            return None
        usable = sorted(self.qos & set(allowed))
        if not usable:
            return Excluded(
                record.get("PartitionName", "?"),
                f"AllowQos={record['AllowQos']}: {self.user} has none of them",
            )
        return Sourced(
            usable[0], f"sacctmgr show assoc: QOS allowed by AllowQos={record['AllowQos']}"
        )

    def memory_of(self, record: dict[str, str], members: list[Node], cores: int) -> Sourced:
        smallest = min(members, key=lambda node: node.memory_mb / node.cpus)
        limits = [smallest.memory_mb * cores / smallest.cpus * MEMORY_SHARE]
        source = [
            f"{MEMORY_SHARE:.0%} of RealMemory per CPU of {smallest.name}"
            f" ({smallest.memory_mb} MB / {smallest.cpus})"
        ]
        per_node = parse_number(record.get("MaxMemPerNode"))
        if per_node:
            limits.append(per_node)
            source.append(f"MaxMemPerNode {per_node}")
        per_cpu = parse_number(record.get("MaxMemPerCPU"))
        if per_cpu:
            limits.append(per_cpu * cores)
            source.append(f"MaxMemPerCPU {per_cpu}")
        return Sourced(
            max(1, math.floor(min(limits) / 1024)),
            "scontrol show node/partition: " + "; ".join(source),
        )

    def walltime_of(self, record: dict[str, str]) -> Sourced:
        limit = parse_minutes_limit(record.get("MaxTime", "UNLIMITED"))
        if limit is None:
            return Sourced(
                DEFAULT_WALLTIME,
                f"MaxTime={record.get('MaxTime')}; init's default of {DEFAULT_WALLTIME // 3600} h",
                "how long may one drone hold its node share?",
            )
        return Sourced(limit, f"scontrol show partition: MaxTime={record.get('MaxTime')}")

    def verify(self, proposal: MachineTypeProposal) -> str | None:
        config = proposal.config
        minutes = math.ceil(config["Walltime"].value / 60)
        argv = [
            "sbatch",
            "--test-only",
            "--nodes=1",
            "--ntasks=1",
            f"--cpus-per-task={proposal.cores}",
            f"--partition={config['Partition'].value}",
            f"--mem={int(proposal.memory * 1024)}",
            f"--time={minutes}",
        ]
        if "Account" in config:
            argv.append(f"--account={config['Account'].value}")
        if "QOS" in config:
            argv.append(f"--qos={config['QOS'].value}")
        if "ExtraOptions" in config:
            argv += config["ExtraOptions"].value
        argv += ["--wrap", "true"]
        output = self.run(*argv)
        if output.ok:
            return None
        said = " ".join((output.stdout + " " + output.stderr).split())
        return f"sbatch --test-only refuses a drone of this shape: {said}"


def _expand(listed: str) -> set[str]:
    """``node[01-03,07],gpu1`` -> the node names."""
    names: set[str] = set()
    for match in re.finditer(r"([^,\[]+)(?:\[([^\]]*)\])?", listed):
        prefix, ranges = match.group(1), match.group(2)
        if ranges is None:
            names.add(prefix)
            continue
        for part in ranges.split(","):
            low, _, high = part.partition("-")
            for number in range(int(low), int(high or low) + 1):
                names.add(f"{prefix}{number:0{len(low)}d}")
    return names


def probe(run: Run) -> SiteSurvey:
    return SlurmProbe(run).survey()
