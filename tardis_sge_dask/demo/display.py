"""What the demo prints: progress while it runs, the summary at the end."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TextIO

from .observe import Observation


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
