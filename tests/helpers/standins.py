"""Stand-ins for batch-system commands, and values that would break an unquoted shell."""

from __future__ import annotations

import asyncio
import stat
import subprocess
import time
from pathlib import Path

from tardis.exceptions.tardisexceptions import TardisResourceStatusUpdateFailed
from tardis.interfaces.siteadapter import ResourceStatus

#: each is formatted with ``canary=<path>``: if a shell ever evaluates it, the file appears
HOSTILE = [
    "all.q; touch {canary}",
    "$(touch {canary})",
    "`touch {canary}`",
    "all.q -t 1-1000 -v LD_PRELOAD=/tmp/x.so",  # line breaks are refused, see test_batch_systems
    'it\'s "quoted"',
]


def recording_command(bindir: Path, name: str, record: Path, stdout: str = "42") -> Path:
    """A program ``name`` in ``bindir`` that records its argv, stdin and environment."""
    bindir.mkdir(exist_ok=True)
    program = bindir / name
    program.write_text(
        "#!/usr/bin/env python3\nimport json, os, sys\n"
        "seen = {'argv': sys.argv[1:], 'stdin': sys.stdin.read(), 'env': dict(os.environ)}\n"
        f"json.dump(seen, open({str(record)!r}, 'w'))\n"
        f"print({stdout!r})\n"
    )
    program.chmod(program.stat().st_mode | stat.S_IEXEC)
    return program


def exported(job_script: str, body_marker: str, variable: str) -> str:
    """The value bash sees for ``variable`` after the job script's export header."""
    header = job_script.split(body_marker)[0]
    return subprocess.run(
        ["bash", "-c", f'{header}printf %s "${variable}"'], capture_output=True, text=True
    ).stdout


async def status_until(adapter, attributes, wanted: ResourceStatus, timeout: float = 90) -> None:
    """Ask the adapter, as a drone would each heartbeat, until the job reaches ``wanted``."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        try:
            seen = (await adapter.resource_status(attributes)).resource_status
        except TardisResourceStatusUpdateFailed:
            seen = "retry"  # e.g. accounting record not written yet
        if seen is wanted:
            return
        await asyncio.sleep(1)
    raise AssertionError(f"job {attributes.remote_resource_uuid}: {seen}, wanted {wanted}")


async def wait_for(condition, within: float, what: str, poll: float = 0.5) -> None:
    """Await ``condition()`` becoming true; fail naming ``what`` after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        await asyncio.sleep(poll)
