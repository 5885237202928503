"""Demand from the overlay HTCondor pool: Dask-worker jobs waiting in the schedd(s).

``condor_q`` runs through a TARDIS executor (``!TardisShellExecutor`` on the schedd host,
``!TardisSSHExecutor`` elsewhere) and its ads are parsed with ``classad2``. Three output
formats are understood: ``-long`` (default), ``-json`` and ``-af:t``.

dask-jobqueue writes ``RequestCpus = MY.DaskWorkerCores``: evaluated outside the schedd such
an expression may be Undefined, so the shape falls back to the literal
``DaskWorkerCores`` / ``DaskWorkerMemory`` (bytes) attributes. With ``-af`` condor_q has
already evaluated the expressions.

Output that is not shaped like condor_q's answer is a source failure, never an empty
queue: read as zero demand it would scale the pool down (the controller keeps the last
good demand instead).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shlex
from collections import Counter
from collections.abc import Iterable, Sequence
from numbers import Real
from typing import Any

import classad2
from cobald.daemon.plugins import yaml_tag
from tardis.exceptions.executorexceptions import CommandExecutionFailure

from .packing import JobShape
from .sources import DemandSnapshot, DemandSource, DemandSourceError

logger = logging.getLogger("cobald.runtime.tardis_sge_dask.demand.htcondor")


def _load_bindings_keeping_the_environment() -> None:
    """Import what ``classad2.parseAds`` imports on first use, without its side effect.

    ``htcondor2`` sets ``CONDOR_CONFIG=/dev/null`` in ``os.environ`` when it finds no
    configuration file at the standard paths. In the daemon that is the whole process:
    every ``condor_status`` TARDIS's HTCondor adapter runs afterwards would read no
    configuration and answer "can't find collector".
    """
    before = os.environ.get("CONDOR_CONFIG")
    import htcondor2  # noqa: F401

    if before is None:
        os.environ.pop("CONDOR_CONFIG", None)
    else:
        os.environ["CONDOR_CONFIG"] = before


_load_bindings_keeping_the_environment()

IDLE, RUNNING, HELD = 1, 2, 5

#: Which jobs are Dask workers: dask-jobqueue's carry DaskWorkerCores, OverlayCluster (our
#: jobqueue.yaml) adds IsDaskWorker, htcdaskgateway's HTCGatewayCluster sets isDaskJob
#: (attribute names are case-insensitive). The drone's default START
#: (pilot.startd_config.DASK_WORKER_START) accepts exactly these.
DEFAULT_CONSTRAINT = (
    "(IsDaskWorker =?= true || DaskWorkerCores =!= undefined || IsDaskJob =?= true)"
)

ATTRIBUTES = (
    "ClusterId",
    "ProcId",
    "JobStatus",
    "RequestCpus",
    "RequestMemory",
    "RequestGpus",
    "DaskWorkerCores",
    "DaskWorkerMemory",
    # the site the job insists on (OverlayCluster(site=...)); HoldReason, free text, stays last
    "TardisSite",
    "HoldReason",
)


def _number(value: Any) -> float | None:
    # classad2.Value (Undefined, Error) is an int enum: it must not pass for a number
    if isinstance(value, (bool, classad2.Value)) or not isinstance(value, Real):
        return None
    return float(value)


def _evaluate(ad: classad2.ClassAd, attribute: str) -> float | None:
    if attribute not in ad:
        return None
    try:
        return _number(ad.eval(attribute))
    except Exception:  # classad2 raises on unparsable expressions
        return None


def job_shape(ad: classad2.ClassAd) -> JobShape:
    """Cores, memory (GB) and GPUs a job asks for, robust to unevaluated ``MY.`` refs."""
    cores = _evaluate(ad, "RequestCpus")
    if cores is None:
        cores = _evaluate(ad, "DaskWorkerCores") or 1.0
    memory_mb = _evaluate(ad, "RequestMemory")
    if memory_mb is None:
        memory_bytes = _evaluate(ad, "DaskWorkerMemory")
        memory_mb = memory_bytes / 2**20 if memory_bytes is not None else 0.0
    gpus = _evaluate(ad, "RequestGpus") or 0.0
    return JobShape(
        cores=cores, memory_gb=round(memory_mb / 1024, 3), gpus=int(gpus), site=job_site(ad)
    )


def job_site(ad: classad2.ClassAd) -> str:
    """The site a job insists on: its ``TardisSite`` string ("": any site).

    Only this plain attribute counts, never a guess from ``Requirements``: OverlayCluster
    writes both, and a job whose TardisSite is no string (or no name) asks for any site.
    """
    if "TardisSite" not in ad:
        return ""
    try:
        value = ad.eval("TardisSite")
    except Exception:  # classad2 raises on unparsable expressions
        return ""
    return value.strip() if isinstance(value, str) and value.strip().isprintable() else ""


class NotCondorQOutput(ValueError):
    """Output that does not look like condor_q's answer to the demand query."""


#: the key attributes every ad of the demand query has (the query asks for them)
_KEYS = ("ClusterId", "ProcId", "JobStatus")
_ATTRIBUTE_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(\S.*)\Z")


def parse_ads(text: str, output_format: str = "long") -> list[classad2.ClassAd]:
    """Parse ``condor_q -long`` / ``-json`` / ``-af:t`` output into ClassAds.

    Demand read from garbage would scale the pool down, so anything that is not shaped
    like condor_q's answer raises :class:`NotCondorQOutput` (a :class:`ValueError`):
    every line must be read, every ad must be a job ad. Empty output is an empty queue.
    """
    if not text.strip():
        return []
    if output_format == "long":
        ads = [_long_ad(block) for block in re.split(r"\n\s*\n", text.strip())]
    elif output_format == "json":
        ads = _json_ads(text)
    elif output_format == "af":
        ads = [_af_row(line) for line in text.splitlines() if line.strip()]
    else:
        raise ValueError(f"unknown condor_q output format {output_format!r}")
    for ad in ads:
        _check_job_ad(ad)
    return ads


def _check_job_ad(ad: classad2.ClassAd) -> None:
    for key in _KEYS:
        value = ad.get(key)
        # classad2.Value (Undefined, Error) is an int enum: it must not pass for a number
        if not isinstance(value, int) or isinstance(value, bool | classad2.Value) or value < 0:
            raise NotCondorQOutput(f"an ad without a job's {key}: {_excerpt(ad)}")


def _excerpt(ad: classad2.ClassAd) -> str:
    return repr(str(ad)[:120])


def _long_ad(block: str) -> classad2.ClassAd:
    # classad2's old-style parser takes any "a = b" as an ad and silently drops the lines
    # it cannot read, so each line is checked to be an attribute it kept
    names = []
    for line in block.splitlines():
        match = _ATTRIBUTE_LINE.match(line.strip())
        if not match:
            raise NotCondorQOutput(f"not an attribute line of condor_q -long: {line[:120]!r}")
        names.append(match.group(1))
    ad = classad2.parseOne(block, classad2.ParserType.Old)
    if len(ad) != len(names) or any(name not in ad for name in names):
        raise NotCondorQOutput(f"condor_q -long printed unreadable attributes: {block[:120]!r}")
    return ad


def _json_ads(text: str) -> list[classad2.ClassAd]:
    try:
        items = json.loads(text)
    except RecursionError as err:
        raise NotCondorQOutput("condor_q -json printed JSON nested too deeply") from err
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise NotCondorQOutput(f"condor_q -json printed {text[:120]!r}, not a list of ads")
    return [_json_ad(item) for item in items]


_EXPR = re.compile(r"^/Expr\((.*)\)/$", re.DOTALL)


def _json_ad(item: dict[str, Any]) -> classad2.ClassAd:
    # condor_q -json writes expressions as "\/Expr(...)\/"; classad2's JSON parser reads
    # one object, not condor_q's array, so each object is rewritten as an old-style ad
    lines = []
    for name, value in item.items():
        match = _EXPR.match(value) if isinstance(value, str) else None
        if not _ATTRIBUTE_LINE.match(f"{name} = x"):
            raise NotCondorQOutput(f"condor_q -json printed the attribute name {name[:80]!r}")
        if match:
            text = match.group(1)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif value is None:
            text = "undefined"
        elif isinstance(value, str):
            text = classad2.quote(value)
        elif isinstance(value, int | float):
            text = json.dumps(value)
        else:
            # the demand query asks for scalars only
            raise NotCondorQOutput(f"condor_q -json printed {name} = {str(value)[:80]}")
        if "\n" in text:
            raise NotCondorQOutput(f"condor_q -json printed a line break in {name}")
        lines.append(f"{name} = {text}")
    return _long_ad("\n".join(lines))


def _af_row(line: str) -> classad2.ClassAd:
    # -af:t prints one tab-separated column per attribute asked for; HoldReason, the
    # last one, is free text
    columns = line.split("\t", len(ATTRIBUTES) - 1)
    if len(columns) != len(ATTRIBUTES) or "\t" in columns[-1]:
        raise NotCondorQOutput(
            f"condor_q -af:t printed {line[:120]!r}, not {len(ATTRIBUTES)} columns"
        )
    ad = classad2.ClassAd()
    for name, raw in zip(ATTRIBUTES, columns, strict=True):
        raw = raw.strip()
        if raw in ("", "undefined"):
            continue
        if name == "TardisSite":
            # -af prints a string without its quotes: a site name, not an expression
            ad[name] = raw
            continue
        try:
            ad[name] = classad2.ExprTree(raw).eval()
        except Exception:  # free text such as a HoldReason
            ad[name] = raw
    return ad


def summarise(ads: Iterable[classad2.ClassAd]) -> DemandSnapshot:
    """Count waiting shapes, running and held jobs; held ones are logged, not counted."""
    snapshot = DemandSnapshot(waiting=Counter())
    for ad in ads:
        status = _evaluate(ad, "JobStatus")
        if status not in (IDLE, RUNNING, HELD):
            # the query selects only these: anything else is not its answer
            raise NotCondorQOutput(f"an ad with JobStatus {status!r}: {_excerpt(ad)}")
        if status == IDLE:
            snapshot.waiting[job_shape(ad)] += 1
        elif status == RUNNING:
            snapshot.running += 1
            snapshot.running_shapes[job_shape(ad)] += 1
        elif status == HELD:
            snapshot.held += 1
            logger.warning(
                "Dask worker job %s.%s is held (%s); not counted as demand",
                ad.get("ClusterId"),
                ad.get("ProcId"),
                ad.get("HoldReason", "no reason given"),
            )
    return snapshot


def read_demand(text: str, output_format: str = "long") -> DemandSnapshot:
    """The snapshot of one condor_q answer (runs in a worker thread)."""
    return summarise(parse_ads(text, output_format))


@yaml_tag(eager=True)
class CondorQueueDemand(DemandSource):
    """Waiting Dask-worker jobs in one or several HTCondor schedds.

    :param executor: TARDIS executor running ``condor_q`` (default: local shell)
    :param constraint: which jobs are Dask workers (the job status filter is added)
    :param schedds: schedd names (``condor_q -name``); empty = the local schedd
    :param pool: collector to ask for the schedds (``condor_q -pool``)
    :param output_format: ``long`` (default), ``json`` or ``af``
    """

    def __init__(
        self,
        executor: Any = None,
        constraint: str = DEFAULT_CONSTRAINT,
        schedds: Sequence[str] | None = None,
        pool: str | None = None,
        output_format: str = "long",
    ):
        if executor is None:
            from tardis.utilities.executors.shellexecutor import ShellExecutor

            executor = ShellExecutor()
        if output_format not in ("long", "json", "af"):
            raise ValueError(f"output_format must be long, json or af, not {output_format!r}")
        self.executor = executor
        self.constraint = constraint
        self.schedds: list[str | None] = [*schedds] if schedds else [None]
        self.pool = pool
        self.output_format = output_format

    def command(self, schedd: str | None) -> str:
        status = f"(JobStatus == {IDLE} || JobStatus == {RUNNING} || JobStatus == {HELD})"
        argv = ["condor_q", "-allusers"]
        if self.pool:
            argv += ["-pool", self.pool]
        if schedd:
            argv += ["-name", schedd]
        argv += ["-constraint", f"({self.constraint}) && {status}"]
        if self.output_format == "af":
            argv += ["-af:t", *ATTRIBUTES]
        else:
            argv += [f"-{self.output_format}", "-attributes", ",".join(ATTRIBUTES)]
        return shlex.join(argv)

    async def poll(self) -> DemandSnapshot:
        total = DemandSnapshot(waiting=Counter())
        details = []
        for schedd in self.schedds:
            command = self.command(schedd)
            try:
                result = await self.executor.run_command(command)
                # thousands of queued ads take seconds to read: not on the event loop
                # every drone's heartbeat shares
                part = await asyncio.to_thread(read_demand, result.stdout, self.output_format)
            except CommandExecutionFailure as err:
                raise DemandSourceError(
                    f"{command!r} failed (exit {err.exit_code}): {(err.stderr or '').strip()}"
                ) from err
            except (
                SyntaxError,
                ValueError,
                TypeError,
                RecursionError,
                classad2.ClassAdException,
            ) as err:
                raise DemandSourceError(f"unparsable condor_q output: {err}") from err
            total.waiting.update(part.waiting)
            total.running += part.running
            total.running_shapes.update(part.running_shapes)
            total.held += part.held
            details.append(
                f"{schedd or 'local'}: {part.waiting_jobs} idle/{part.running} running"
                f"/{part.held} held"
            )
        total.detail = "; ".join(details)
        return total
