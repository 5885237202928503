"""This host's processes as /proc shows them: what a local drone is, and how it ends.

The Local adapter identifies a drone by ``PID-STARTTICKS`` (a pid may be reused, the
start time in ``/proc/PID/stat`` makes it unique) and kills a drone's whole tree;
``tardis-sge-dask demo`` finds the drones left behind the same way.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any


def process_start(pid: int) -> tuple[int, str] | None:
    """(start time in clock ticks since boot, state letter) of a process, None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name is in parentheses and may contain spaces: split after the last ')'
    fields = text[text.rfind(")") + 2 :].split()
    return int(fields[19]), fields[0]


def _process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, session id) of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()
        table[int(entry)] = (int(fields[1]), int(fields[3]))
    return table


def process_tree(pid: int) -> set[int]:
    """The process, its descendants and everything in their sessions.

    The pilot starts its payload in a session of its own (so a batch system's signal to
    the job's process group does not kill it), hence the sessions are followed too.
    """
    table = _process_table()
    if pid not in table:
        return set()
    members = {pid}
    changed = True
    while changed:
        # only sessions led by a member: never the caller's own session
        sessions = {
            table[member][1] for member in members if table.get(member, (0, 0))[1] in members
        }
        grown = {
            other
            for other, (parent, session) in table.items()
            if parent in members or (session in sessions and session != 0)
        }
        changed = not grown <= members
        members |= grown
    members.discard(os.getpid())
    return members


def kill_tree(pid: int) -> int:
    """SIGKILL the tree of ``pid``; how many processes were signalled."""
    members = process_tree(pid)
    for member in members:
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(members)


def parse_drone_id(remote_resource_uuid: Any) -> tuple[int, int] | None:
    pid, _, ticks = str(remote_resource_uuid).partition("-")
    if not pid.isdigit() or not ticks.isdigit():
        return None
    return int(pid), int(ticks)
