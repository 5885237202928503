"""``tardis-sge-dask demo``: the whole loop on one machine, with only real parts.

1. a Dask scheduler starts in this process, on a free port of 127.0.0.1;
2. the real COBalD/TARDIS daemon (``python -m cobald.daemon``) starts on a copy of the
   configuration (``configs/local.yaml`` by default) pointed at that scheduler, with its
   registry, drone files and demand record in a scratch directory;
3. a sample computation is submitted; the daemon sees the scheduler's wish for workers,
   starts drones (the drone pilot as local processes), the drones' workers compute;
4. when the result is in, the work goes away, the daemon retires the idle drones;
5. the summary: drones started, tasks computed, time to first worker, drones left.

It exits 0 only if the result is right and no drone, worker or daemon is left behind.
The pieces: :mod:`.config` (the configuration's copy), :mod:`.daemon` (the daemon's
lifecycle), :mod:`.observe` (what is watched, and through which interface) and
:mod:`.display` (what is printed); this module runs them in order.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, TextIO

from ..sites.processes import kill_tree
from .config import demo_config
from .daemon import Daemon
from .display import Display, Summary
from .observe import Observer

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent.parent / "configs" / "local.yaml"


def square_slowly(x: int, seconds: float) -> int:
    """The sample task: long enough that the scheduler asks for workers."""
    time.sleep(seconds)
    return x * x


class Demo:
    def __init__(
        self,
        config: Path = DEFAULT_CONFIG,
        tasks: int = 40,
        task_seconds: float = 0.25,
        timeout: float = 150,
        workdir: Path | None = None,
        stream: TextIO = sys.stdout,
        tty: bool | None = None,
    ):
        self.config = Path(config)
        self.tasks = tasks
        self.task_seconds = task_seconds
        self.timeout = timeout
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="tardis-sge-dask-demo-"))
        self.display = Display(stream, tty)
        self.summary = Summary(tasks=tasks)
        self.started = time.monotonic()
        self.daemon = Daemon(self.workdir)
        self.observer = Observer(
            self.workdir / "demand.json", self.workdir / "drones.db", self.started
        )

    async def run(self) -> Summary:
        import logging

        from distributed import Scheduler

        # the scheduler shares this terminal: its INFO lines would drown the progress
        logging.getLogger("distributed").setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        self.display.say(f"tardis-sge-dask demo: configuration {self.config}")
        self.display.say(f"  scratch directory {self.workdir} (daemon log: daemon.log)")
        try:
            async with Scheduler(host="127.0.0.1", port=0, dashboard=False) as scheduler:
                self.display.say(f"  Dask scheduler at {scheduler.address}")
                config, self.observer.state_directories = demo_config(
                    self.config, self.workdir, scheduler.address, self.observer.demand_file
                )
                self.daemon.start(config)
                self.display.say(f"  COBalD/TARDIS daemon started (pid {self.daemon.pid})")
                try:
                    await self.compute(scheduler)
                    await self.wait_for_drones_to_go(scheduler)
                finally:
                    self.stop_daemon()
                    self.clean_up(scheduler)
        except Exception as err:  # the summary tells what went wrong
            self.summary.problems.append(f"{type(err).__name__}: {err}")
            self.stop_daemon()
            self.clean_up(None)
        self.summary.drones_started = self.observer.drones_started()
        self.summary.duration = time.monotonic() - self.started
        return self.summary

    def _check_daemon(self, deadline: float, what: str) -> None:
        if self.daemon.died():
            raise RuntimeError(f"the daemon exited early:\n{self.daemon.tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {self.timeout:.0f} s:\n{self.daemon.tail()}")

    async def compute(self, scheduler: Any) -> None:
        from distributed import Client

        deadline = self.started + self.timeout
        async with Client(scheduler.address, asynchronous=True) as client:
            submitted = time.monotonic()
            self.display.say(
                f"  computing {self.tasks} tasks of {self.task_seconds:g} s each; drones start"
                " on demand..."
            )
            futures = client.map(
                square_slowly, range(self.tasks), seconds=self.task_seconds, pure=False
            )
            total = client.submit(sum, futures)
            seen = self.observer.seen
            while not total.done():
                self.observer.observe(scheduler, futures)
                if seen.workers and self.summary.time_to_first_worker is None:
                    self.summary.time_to_first_worker = time.monotonic() - submitted
                self.display.show(seen)
                self._check_daemon(deadline, "no result")
                await asyncio.sleep(0.5)
            result = await total
            self.observer.observe(scheduler, futures)
            self.display.show(seen)
            self.summary.tasks_computed = sum(
                1 for future in futures if future.status == "finished"
            )
            expected = sum(x * x for x in range(self.tasks))
            self.summary.result_right = result == expected
            self.display.say(f"  result {result} (expected {expected})")
        self.display.say("  work done; the daemon now retires the idle drones...")

    async def wait_for_drones_to_go(self, scheduler: Any) -> None:
        deadline = self.started + self.timeout
        seen = self.observer.seen
        while True:
            rows = self.observer.observe(scheduler, None)
            self.display.show(seen)
            if not rows and not seen.workers and not self.observer.live_drone_processes():
                self.display.say("  every drone is down")
                return
            self._check_daemon(deadline, f"drones still up ({dict(seen.drones)})")
            await asyncio.sleep(0.5)

    def stop_daemon(self) -> None:
        if self.daemon.process is None:
            return
        self.summary.problems += self.daemon.stop()
        self.summary.daemon_stopped = True

    def clean_up(self, scheduler: Any) -> None:
        """Whatever is still running now is a leftover: count it, then end it."""
        leftovers = self.observer.live_drone_processes()
        self.summary.drones_left = max(self.summary.drones_left, len(leftovers))
        for _, pid in leftovers:
            kill_tree(pid)
        if scheduler is not None:
            self.summary.workers_left = max(self.summary.workers_left, len(scheduler.workers))


def run_demo(**kwargs: Any) -> int:
    demo = Demo(**kwargs)
    try:
        summary = asyncio.run(demo.run())
    except KeyboardInterrupt:
        demo.stop_daemon()
        demo.clean_up(None)
        demo.display.say("interrupted; daemon stopped and drones ended")
        return 130
    demo.display.say(summary.format())
    return 0 if summary.ok else 1
