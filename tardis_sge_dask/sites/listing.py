"""One cached listing of a site's jobs, shared by every drone of the site.

A drone's heartbeat asks for its job's state; at 10,000 drones that is 10,000 questions a
minute, and one listing of the user's jobs answers them all. The listing is therefore one
answer per site with a maximum age (``listing_max_age``):

* a question within the maximum age of the last answer reads that answer, no command;
* questions arriving while a listing command runs share that one call;
* a failed or unreadable listing raises for every drone waiting on it (each one's status
  update is retried), and the next question runs the command again. There is never a
  substitute answer: an empty listing would declare every drone's job gone;
* the answer is parsed in a worker thread, so a listing of many megabytes does not stall
  the event loop every drone and the controller share;
* a question may ask for an answer taken after a given moment (``newer_than``): a job
  submitted after the cached listing was taken is missing from it without being gone.

It also bounds the commands each drone runs for itself: submission, removal, and the
look-ups confirming a job missing from the listing is gone (``qstat -j``, the accounting).
Demand 0 -> 1,000 asks for 1,000 ``qsub`` at once, demand 0 asks for as many ``qdel``, an
empty but valid listing for a ``qstat -j`` and a ``qacct`` per drone. Measured on the real
Grid Engine with 1,000 drones and no bound: 256 ``qsub`` ran past the 60 s command
timeout (each a job whose id was lost) and forking them stalled the event loop for 31 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .batchsite import JobInfo

#: the clock of answers' ages (tests replace it; the event loop keeps its own)
clock = time.monotonic

#: per-drone commands (submit, remove, confirm a missing job) a site runs at once
DRONE_COMMANDS_AT_ONCE = 8


class SiteJobListing:
    """The site's job listing: one command per ``max_age`` seconds, however many drones ask.

    :param fetch: runs the listing command, returns its stdout (raises on failure)
    :param parse: stdout -> job id -> job (raises on output it cannot read); runs in a
        worker thread, so it must not touch the event loop
    :param max_age: seconds an answer serves later questions; questions asked while the
        command runs always share it (0: only those)
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[str]],
        parse: Callable[[str], dict[str, JobInfo]],
        max_age: float,
    ):
        self._fetch = fetch
        self._parse = parse
        self.max_age = max_age
        #: listing commands run (benchmarks and tests count them)
        self.calls = 0
        self._answer: dict[str, JobInfo] | None = None
        #: clock() at which the command behind the answer was started
        self._taken_at = float("-inf")
        self._running: asyncio.Task[dict[str, JobInfo]] | None = None
        self._running_since = float("-inf")
        self._drone_commands: asyncio.Semaphore | None = None

    @property
    def taken_at(self) -> float:
        """When (:data:`clock`) the command of the current answer was started."""
        return self._taken_at

    @staticmethod
    def now() -> float:
        """The moment, on the clock of :attr:`taken_at` (for ``newer_than``)."""
        return clock()

    async def __call__(self, newer_than: float | None = None) -> dict[str, JobInfo]:
        """job id -> job, from an answer no older than ``max_age`` (and than ``newer_than``)."""
        while True:
            now = clock()
            oldest = now - self.max_age
            if newer_than is not None:
                oldest = max(oldest, newer_than)
            if self._answer is not None and self._taken_at >= oldest:
                return self._answer
            task = self._running
            if task is not None and newer_than is not None and self._running_since < newer_than:
                # started before the job this question is about was submitted: the next
                # command serves it (and every question asked meanwhile)
                await asyncio.shield(task)
                continue
            if task is None:
                task = self._start()
            # shield: one drone's cancelled heartbeat must not cancel everyone's listing
            return await asyncio.shield(task)

    def _start(self) -> asyncio.Task[dict[str, JobInfo]]:
        self._running_since = clock()
        task = asyncio.get_running_loop().create_task(self._list(self._running_since))
        self._running = task
        task.add_done_callback(self._finished)
        return task

    async def _list(self, started: float) -> dict[str, JobInfo]:
        self.calls += 1
        stdout = await self._fetch()
        jobs = await asyncio.to_thread(self._parse, stdout)
        self._answer = jobs
        self._taken_at = started
        return jobs

    def _finished(self, task: asyncio.Task[dict[str, JobInfo]]) -> None:
        if self._running is task:
            self._running = None
        if not task.cancelled():
            # read here so a failure nobody waits for any more is not logged as unretrieved
            task.exception()

    @contextlib.asynccontextmanager
    async def drone_command(self) -> AsyncIterator[None]:
        """Hold one of the site's few slots for a command one drone runs for itself.

        The wait for a slot is not part of the command's timeout: only the command is.
        """
        if self._drone_commands is None:
            # created on first use: a semaphore belongs to the loop it is first used in
            self._drone_commands = asyncio.Semaphore(DRONE_COMMANDS_AT_ONCE)
        async with self._drone_commands:
            yield
