"""Demand from the overlay HTCondor pool: Dask-worker jobs waiting in the schedd(s).

``condor_q`` runs through a TARDIS executor (``!TardisShellExecutor`` on the schedd host,
``!TardisSSHExecutor`` elsewhere) and its ads are parsed with ``classad2``. Three output
formats are understood: ``-long`` (default), ``-json`` and ``-af:t``.

dask-jobqueue writes ``RequestCpus = MY.DaskWorkerCores``: evaluated outside the schedd such
an expression may be Undefined, so the shape falls back to the literal
``DaskWorkerCores`` / ``DaskWorkerMemory`` (bytes) attributes. With ``-af`` condor_q has
already evaluated the expressions.
"""

from __future__ import annotations

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
    except Exception:  # noqa: BLE001 - classad2 raises on unparsable expressions
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
    return JobShape(cores=cores, memory_gb=round(memory_mb / 1024, 3), gpus=int(gpus))


def parse_ads(text: str, output_format: str = "long") -> list[classad2.ClassAd]:
    """Parse ``condor_q -long`` / ``-json`` / ``-af:t`` output into ClassAds."""
    if not text.strip():
        return []
    if output_format == "long":
        ads = list(classad2.parseAds(text, classad2.ParserType.Old))
        if not ads:
            # classad2 skips what it cannot read; output without a single ad is an error
            raise ValueError(f"no job ad in condor_q output: {text[:80]!r}")
        return ads
    if output_format == "json":
        return [_json_ad(item) for item in json.loads(text)]
    if output_format == "af":
        return [_af_row(line) for line in text.splitlines() if line.strip()]
    raise ValueError(f"unknown condor_q output format {output_format!r}")


_EXPR = re.compile(r"^/Expr\((.*)\)/$", re.DOTALL)


def _json_ad(item: dict[str, Any]) -> classad2.ClassAd:
    # condor_q -json writes expressions as "\/Expr(...)\/"; classad2's JSON parser reads
    # one object, not condor_q's array, so each object is rewritten as an old-style ad
    lines = []
    for name, value in item.items():
        match = _EXPR.match(value) if isinstance(value, str) else None
        if match:
            text = match.group(1)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif value is None:
            text = "undefined"
        elif isinstance(value, str):
            text = classad2.quote(value)
        else:
            text = json.dumps(value)
        lines.append(f"{name} = {text}")
    return classad2.parseOne("\n".join(lines), classad2.ParserType.Old)


def _af_row(line: str) -> classad2.ClassAd:
    ad = classad2.ClassAd()
    for name, raw in zip(ATTRIBUTES, line.split("\t"), strict=False):
        raw = raw.strip()
        if raw in ("", "undefined"):
            continue
        try:
            ad[name] = classad2.ExprTree(raw).eval()
        except Exception:  # noqa: BLE001 - free text such as a HoldReason
            ad[name] = raw
    return ad


def summarise(ads: Iterable[classad2.ClassAd]) -> DemandSnapshot:
    """Count waiting shapes, running and held jobs; held ones are logged, not counted."""
    snapshot = DemandSnapshot(waiting=Counter())
    for ad in ads:
        status = _evaluate(ad, "JobStatus")
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
        self.schedds = list(schedds or [None])
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
                ads = parse_ads(result.stdout, self.output_format)
            except CommandExecutionFailure as err:
                raise DemandSourceError(
                    f"{command!r} failed (exit {err.exit_code}): {(err.stderr or '').strip()}"
                ) from err
            except (SyntaxError, ValueError, classad2.ClassAdException) as err:
                raise DemandSourceError(f"unparsable condor_q output: {err}") from err
            part = summarise(ads)
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
