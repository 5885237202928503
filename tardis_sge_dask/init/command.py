"""``tardis-sge-dask init``: detect the batch system, probe it, write the file once."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import sge, slurm
from .runner import Runner
from .writer import write

PROBES = {"sge": sge.probe, "slurm": slurm.probe}


class InitError(RuntimeError):
    """init cannot write a configuration; the message says why."""


def ssh_target(text: str, port: int | None, keys: list[str], known_hosts: str | None) -> dict:
    """``user@host`` and the options -> the ``!TardisSSHExecutor`` keys (also in the file)."""
    username, at, host = text.rpartition("@")
    if not at or not username or not host:
        raise InitError(f"--ssh {text!r}: expected user@host")
    target: dict[str, Any] = {"host": host, "username": username}
    if port:
        target["port"] = port
    if keys:
        target["client_keys"] = [str(Path(key).resolve()) for key in keys]
    if known_hosts:
        target["known_hosts"] = str(Path(known_hosts).resolve())
    return target


def make_executor(target: dict | None) -> Any:
    if target is None:
        from tardis.utilities.executors.shellexecutor import ShellExecutor

        return ShellExecutor()
    from tardis.utilities.executors.sshexecutor import SSHExecutor

    return SSHExecutor(on_disconnect_retry=0, **target)


def detect(run: Runner) -> str:
    """The batch system whose client answers: Grid Engine first (qconf), then SLURM."""
    if run("qconf", "-sql").ok:
        return "sge"
    if run("scontrol", "show", "partition", "-o").ok:
        return "slurm"
    raise InitError(
        "neither qconf -sql nor scontrol show partition answered: give --batch-system, or"
        " run init where the batch system's client commands work (or --ssh user@host)"
    )


def run_init(
    output: Path,
    *,
    batch_system: str | None,
    overlay: str,
    site: str | None,
    ssh: dict | None,
    record: Path | None = None,
    timeout: float = 60,
    runner: Runner | None = None,
) -> tuple[str, Any]:
    """Probe, write ``output`` (never over an existing file); returns (text, survey)."""
    if output.exists():
        raise InitError(f"{output} exists; init never overwrites a configuration")
    if not output.parent.is_dir():
        raise InitError(f"{output.parent} is not a directory")
    from ..pilot import pilot_path

    runner = runner or Runner(make_executor(ssh), timeout=timeout)
    try:
        kind = batch_system or detect(runner)
        survey = PROBES[kind](runner)
    finally:
        runner.close()
        if record is not None:
            label = f"recorded by tardis-sge-dask init on {os.uname().nodename}" + (
                f" over SSH as {ssh['username']}@{ssh['host']}" if ssh else ""
            )
            answers = [asdict(answer) for answer in runner.answers]
            record.write_text(json.dumps({"label": label, "answers": answers}, indent=1))
    name = site or {"sge": "gridengine", "slurm": "slurm"}[kind]
    where = f"{ssh['username']}@{ssh['host']}" if ssh else f"local, {os.uname().nodename}"
    text = write(
        survey,
        overlay=overlay,
        site=name,
        executor=ssh,
        where=where,
        registry=output.resolve().parent / f"{output.stem}-drones.db",
        startup_command=str(pilot_path()),
    )
    # exclusive creation: a file that appeared meanwhile is not overwritten either
    with open(output, "x") as handle:
        handle.write(text)
    return text, survey
