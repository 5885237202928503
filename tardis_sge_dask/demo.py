"""``tardis-sge-dask demo``: the whole loop on one machine, with only real parts.

1. a Dask scheduler starts in this process, on a free port of 127.0.0.1;
2. the real COBalD/TARDIS daemon (``python -m cobald.daemon``) starts on a copy of the
   configuration (``configs/local.yaml`` by default) pointed at that scheduler, with its
   registry and drone files in a scratch directory;
3. a sample computation is submitted; the daemon sees the scheduler's wish for workers,
   starts drones (the drone pilot as local processes), the drones' workers compute;
4. when the result is in, the work goes away, the daemon retires the idle drones;
5. the summary: drones started, tasks computed, time to first worker, drones left.

It exits 0 only if the result is right and no drone, worker or daemon is left behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .configfile import Tagged, dump, load, tardis_section
from .sites.local import kill_tree, parse_drone_id, process_start
from .status import StatusError, read_registry

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "local.yaml"
_DEMAND = re.compile(r"controller: demand (\d+(?:\.\d+)?) cores")


def square_slowly(x: int, seconds: float) -> int:
    """The sample task: long enough that the scheduler asks for workers."""
    time.sleep(seconds)
    return x * x


# ------------------------------------------------------------------ configuration
def _replace_strings(value: Any, old: str, new: str) -> Any:
    if isinstance(value, Tagged):
        return Tagged(value.tag, _replace_strings(value.value, old, new))
    if isinstance(value, dict):
        return {key: _replace_strings(item, old, new) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace_strings(item, old, new) for item in value]
    if isinstance(value, str):
        return value.replace(old, new)
    return value


def demo_config(source: Path, workdir: Path, scheduler: str) -> tuple[Path, list[Path]]:
    """A copy of ``source`` on the demo's scheduler, registry and drone directory.

    Returns the copy and the state directories of its local sites.
    """
    document = load(source)
    tardis = tardis_section(document)
    if tardis is None or not isinstance(tardis.get("BatchSystem"), dict):
        raise ValueError(f"{source}: no tardis.BatchSystem section")
    batch_system = tardis["BatchSystem"]
    if batch_system.get("adapter") != "Dask":
        raise ValueError(f"{source}: the demo needs BatchSystem adapter: Dask (direct mode)")
    old = str(batch_system["scheduler_address"])
    document = _replace_strings(document, old, scheduler)
    tardis = tardis_section(document)
    tardis.setdefault("Plugins", {})["SqliteRegistry"] = {"db_file": str(workdir / "drones.db")}
    state_directories = []
    for site in tardis.get("Sites") or []:
        if site.get("adapter") != "Local":
            raise ValueError(
                f"{source}: site {site.get('name')} uses adapter {site.get('adapter')};"
                " the demo runs drones only on this machine (adapter: Local)"
            )
        directory = workdir / "drones" / str(site["name"])
        tardis[site["name"]]["StateDirectory"] = str(directory)
        state_directories.append(directory)
    path = workdir / "cobald.yaml"
    path.write_text(dump(document))
    return path, state_directories


# ------------------------------------------------------------------ observing
@dataclass
class Observation:
    elapsed: float = 0.0
    demand: float = 0.0
    peak_demand: float = 0.0
    drones: Counter = field(default_factory=Counter)
    workers: int = 0
    done: int = 0
    total: int = 0


class Display:
    """A progress bar on a terminal, plain lines (only on change) otherwise."""

    def __init__(self, stream: TextIO, tty: bool | None = None):
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self._last = ""
        self._last_time = 0.0

    def show(self, seen: Observation) -> None:
        drones = ", ".join(f"{state} {count}" for state, count in sorted(seen.drones.items()))
        text = (
            f"demand {seen.demand:g} cores (peak {seen.peak_demand:g})"
            f" | drones: {drones or 'none'} | workers {seen.workers}"
        )
        if self.tty:
            width = 24
            filled = int(width * seen.done / seen.total) if seen.total else 0
            bar = "#" * filled + "." * (width - filled)
            line = f"\r[{bar}] {seen.done}/{seen.total} tasks | {text} ({seen.elapsed:.0f}s)"
            self.stream.write(line.ljust(110)[:150])
            self.stream.flush()
            return
        plain = f"tasks {seen.done}/{seen.total} | {text}"
        if plain != self._last:
            self.stream.write(f"[{seen.elapsed:5.1f}s] {plain}\n")
            self.stream.flush()
            self._last = plain

    def say(self, message: str) -> None:
        if self.tty:
            self.stream.write("\r" + " " * 120 + "\r")
        self.stream.write(message + "\n")
        self.stream.flush()


def last_demand(log: Path, previous: float) -> float:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return previous
    found = _DEMAND.findall(text)
    return float(found[-1]) if found else previous


def live_drone_processes(state_directories: list[Path]) -> list[tuple[str, int]]:
    """(drone uuid, pid) of every local drone whose process still runs."""
    alive = []
    for directory in state_directories:
        for record in directory.glob("*.json"):
            try:
                data = json.loads(record.read_text())
                parsed = parse_drone_id(data["remote_resource_uuid"])
            except (OSError, ValueError, KeyError):
                continue
            if parsed is None:
                continue
            current = process_start(parsed[0])
            if current is not None and current[0] == parsed[1] and current[1] != "Z":
                alive.append((record.stem, parsed[0]))
    return alive


def drones_started(state_directories: list[Path]) -> int:
    return sum(len(list(directory.glob("*.log"))) for directory in state_directories)


# ------------------------------------------------------------------ the demo
@dataclass
class Summary:
    drones_started: int = 0
    tasks: int = 0
    tasks_computed: int = 0
    result_right: bool = False
    time_to_first_worker: float | None = None
    drones_left: int = 0
    workers_left: int = 0
    daemon_stopped: bool = False
    duration: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.result_right
            and self.drones_left == 0
            and self.workers_left == 0
            and self.daemon_stopped
            and not self.problems
        )

    def format(self) -> str:
        first = (
            f"{self.time_to_first_worker:.1f} s"
            if self.time_to_first_worker is not None
            else "never"
        )
        lines = [
            "",
            "summary",
            f"  drones started:        {self.drones_started}",
            f"  tasks computed:        {self.tasks_computed}/{self.tasks}"
            f" (result {'right' if self.result_right else 'WRONG'})",
            f"  time to first worker:  {first}",
            f"  drones left:           {self.drones_left}",
            f"  workers left:          {self.workers_left}",
            f"  daemon stopped:        {'yes' if self.daemon_stopped else 'NO'}",
            f"  duration:              {self.duration:.1f} s",
        ]
        lines += [f"  problem: {problem}" for problem in self.problems]
        lines.append("demo " + ("succeeded" if self.ok else "FAILED"))
        return "\n".join(lines)


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
        self.daemon: subprocess.Popen | None = None
        self.state_directories: list[Path] = []
        self.started = time.monotonic()
        self.seen = Observation()

    @property
    def daemon_log(self) -> Path:
        return self.workdir / "daemon.log"

    def start_daemon(self, config: Path) -> None:
        log = open(self.daemon_log, "ab")
        try:
            self.daemon = subprocess.Popen(
                [sys.executable, "-m", "cobald.daemon", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                # a Ctrl-C on the terminal is for the demo, which stops the daemon in order
                start_new_session=True,
            )
        finally:
            log.close()

    def observe(self, scheduler: Any, futures: list | None, seen: Observation) -> list:
        """Refresh ``seen``; returns the drones in the registry."""
        seen.elapsed = time.monotonic() - self.started
        if futures is not None:
            seen.total = len(futures)
            seen.done = sum(1 for future in futures if future.done())
        seen.workers = len(scheduler.workers)
        seen.demand = last_demand(self.daemon_log, seen.demand)
        seen.peak_demand = max(seen.peak_demand, seen.demand)
        try:
            rows = read_registry(self.workdir / "drones.db")
        except StatusError:
            rows = []
        seen.drones = Counter(row.state for row in rows)
        return rows

    def daemon_died(self) -> bool:
        return self.daemon is not None and self.daemon.poll() is not None

    def _tail(self) -> str:
        try:
            return "\n".join(self.daemon_log.read_text(errors="replace").splitlines()[-15:])
        except OSError:
            return ""

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
                config, self.state_directories = demo_config(
                    self.config, self.workdir, scheduler.address
                )
                self.start_daemon(config)
                self.display.say(f"  COBalD/TARDIS daemon started (pid {self.daemon.pid})")
                try:
                    await self.compute(scheduler)
                    await self.wait_for_drones_to_go(scheduler)
                finally:
                    self.stop_daemon()
                    self.clean_up(scheduler)
        except Exception as err:  # noqa: BLE001 - the summary tells what went wrong
            self.summary.problems.append(f"{type(err).__name__}: {err}")
            self.stop_daemon()
            self.clean_up(None)
        self.summary.drones_started = drones_started(self.state_directories)
        self.summary.duration = time.monotonic() - self.started
        return self.summary

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
            seen = self.seen
            while not total.done():
                self.observe(scheduler, futures, seen)
                if seen.workers and self.summary.time_to_first_worker is None:
                    self.summary.time_to_first_worker = time.monotonic() - submitted
                self.display.show(seen)
                if self.daemon_died():
                    raise RuntimeError(f"the daemon exited early:\n{self._tail()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no result within {self.timeout:.0f} s:\n{self._tail()}")
                await asyncio.sleep(0.5)
            result = await total
            self.observe(scheduler, futures, seen)
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
        seen = self.seen
        while True:
            rows = self.observe(scheduler, None, seen)
            self.display.show(seen)
            if not rows and not seen.workers and not live_drone_processes(self.state_directories):
                self.display.say("  every drone is down")
                return
            if self.daemon_died():
                raise RuntimeError(f"the daemon exited early:\n{self._tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"drones still up after {self.timeout:.0f} s: {dict(seen.drones)}"
                )
            await asyncio.sleep(0.5)

    def stop_daemon(self) -> None:
        if self.daemon is None:
            return
        if self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(30)
            except subprocess.TimeoutExpired:
                self.summary.problems.append("the daemon ignored SIGTERM for 30 s; killed")
                self.daemon.kill()
                self.daemon.wait(10)
        self.summary.daemon_stopped = True

    def clean_up(self, scheduler: Any) -> None:
        """Whatever is still running now is a leftover: count it, then end it."""
        leftovers = live_drone_processes(self.state_directories)
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
