"""Removing many jobs of a site with one command, each caller told about its own job.

At demand 0 every drone of a site asks for its job's removal at about the same moment.
One ``qdel ID`` per drone, 8 at a time, took 127 s for 1,000 queued drones on the real
Grid Engine (Debian's client runs its ``arch`` script on every call, about 0.1 s): ten
minutes at 10,000. Requests for one site arriving within :data:`WINDOW` seconds, or until
:data:`BULK_SIZE` ids, go out as one ``qdel id1 id2 ...`` instead, holding one of the
site's drone-command slots; the dialect reads the one answer into an outcome per id.

Each caller gets the outcome of its own id, or the exception of its own id (an id the
answer says nothing clear about) or of the whole command (timeout, lost connection,
unreadable answer). An id never takes another id's outcome.

TARDIS 0.9.0 has :class:`tardis.utilities.asyncbulkcall.AsyncBulkCall`, not used here for
two defects: with ``concurrent=N`` its semaphore is never released (the done callback is
``lambda _: self._concurrent.release``, which does not call it), so after N bulks no
removal would ever run again; and it answers a bulk with ``future.set_result`` in a loop,
which raises ``InvalidStateError`` at a caller whose wait was cancelled, so the callers
after it in that bulk are never answered and their drones hang.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager

#: seconds a first removal request waits for others to share its command: short against
#: a drone's heartbeat (TARDIS asks each drone once per heartbeat, their phases spread
#: over it), so a demand-0 burst goes out in a few commands per heartbeat
WINDOW = 0.5

#: most ids in one command. Measured here (2 December 2026, 2 cores under load 5): one
#: ``qdel`` of 1, 50, 300, 500 and 600 queued ids took 0.12, 0.11, 0.12, 0.13 and 0.13 s
#: (SGE 8.1.9: the client's start-up dominates, not the ids); one ``scancel`` of 50, 300
#: and 600 ids 0.07, 0.22 and 0.49 s, ``scancel -v`` of 1 and 500 ids 0.01 and 0.43 s
#: (SLURM 22.05: one RPC per job, about 0.8 ms each). 500 ids keep a bulk two orders of
#: magnitude below the 60 s ``command_timeout``, so a controller 100 times slower still
#: answers in time, and 10,000 drones need 20 commands; larger bulks would save little
#: and retry more drones when one fails
BULK_SIZE = 500


class Removal(enum.Enum):
    """What the batch system said about one job of a removal command."""

    #: it accepted the removal (the job goes, or its pilot gets the warning first)
    REMOVED = "removal requested"
    #: it has no such job (any more): nothing to remove
    GONE = "already gone"


#: job id -> its outcome, or the exception its caller gets
Outcomes = dict[str, "Removal | BaseException"]


class RemovalCoalescer:
    """One site's removal requests, sent in bulks; awaited per job id.

    :param command: removes the given ids with one command; returns an outcome (or an
        exception) for every id, raises if the command failed as a whole
    :param slot: holds one of the site's drone-command slots while a bulk runs
    :param size: most ids per command; a full bulk is sent at once
    :param window: seconds the first request of a bulk waits for more
    """

    def __init__(
        self,
        command: Callable[[list[str]], Awaitable[Outcomes]],
        slot: Callable[[], AbstractAsyncContextManager[None]],
        size: int = BULK_SIZE,
        window: float = WINDOW,
    ):
        if size < 1 or window < 0:
            raise ValueError(f"a bulk needs size >= 1 and window >= 0, not {size}, {window}")
        self._command = command
        self._slot = slot
        self.size = size
        self.window = window
        #: bulk commands sent (tests and benchmarks count them)
        self.commands = 0
        #: ids collected for the next bulk -> the futures of everyone asking about each
        self._pending: dict[str, list[asyncio.Future[Removal]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        #: bulks being sent: strong references, or the loop may collect a running task
        self._sending: set[asyncio.Task[None]] = set()

    async def __call__(self, job_id: str) -> Removal:
        """Remove one job along with the others asked for meanwhile; its outcome."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # a new event loop (tests, the sweep's asyncio.run): the old one's waiters and
            # timer died with it
            self._pending, self._timer, self._loop = {}, None, loop
        future: asyncio.Future[Removal] = loop.create_future()
        # an id asked for twice is sent once; both askers get its outcome
        self._pending.setdefault(job_id, []).append(future)
        if len(self._pending) >= self.size:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.window, self._flush)
        # a cancelled caller cancels only its own future; _answer skips it
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        bulk = {
            job_id: waiting
            for job_id, futures in self._pending.items()
            # ids whose every caller gave up before the command are left out
            if (waiting := [future for future in futures if not future.done()])
        }
        self._pending = {}
        if not bulk:
            return
        task = asyncio.get_running_loop().create_task(self._send(bulk))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, bulk: dict[str, list[asyncio.Future[Removal]]]) -> None:
        try:
            async with self._slot():
                self.commands += 1
                outcomes = await self._command(list(bulk))
        except asyncio.CancelledError:
            for futures in bulk.values():
                for future in futures:
                    future.cancel()
            raise
        except Exception as err:  # the command failed as a whole: every id of it
            outcomes = dict.fromkeys(bulk, err)
        for job_id, futures in bulk.items():
            outcome = outcomes.get(job_id)
            if outcome is None:
                outcome = LookupError(f"the removal command returned no outcome for job {job_id}")
            for future in futures:
                if future.done():  # its caller was cancelled meanwhile
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)


def lines_naming(job_id: str, text: str) -> str:
    """The lines of a command's output that name a job id as a word (for error messages)."""
    return "\n".join(
        line
        for line in text.splitlines()
        if job_id in line.replace('"', " ").replace(":", " ").replace(",", " ").split()
    )


def chunks(job_ids: Sequence[str], size: int = BULK_SIZE) -> list[list[str]]:
    """Ids in bulks of at most ``size`` (for callers that have many ids at once)."""
    return [list(job_ids[start : start + size]) for start in range(0, len(job_ids), size)]
