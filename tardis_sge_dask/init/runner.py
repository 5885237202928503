"""Run the read-only probe commands through the executor the daemon will use.

``init`` reaches the site exactly as the daemon will: TARDIS's ShellExecutor locally, its
SSHExecutor for ``--ssh user@host``. A probe asks for argv lists; the runner quotes them
with :func:`shlex.join`, as the site adapters do.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tardis.exceptions.executorexceptions import CommandExecutionFailure, ExecutorFailure


@dataclass
class Output:
    command: str
    stdout: str
    stderr: str
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Runner:
    """Runs commands on the site and remembers every answer (for ``--record``)."""

    def __init__(self, executor: Any, timeout: float = 60):
        self.executor = executor
        self.timeout = timeout
        self.answers: list[Output] = []
        # one loop for every command: an SSH connection belongs to the loop it was opened in
        self._loop = asyncio.new_event_loop()

    def close(self) -> None:
        self._loop.close()

    def __call__(self, *argv: str) -> Output:
        command = shlex.join(argv)
        try:
            result = self._loop.run_until_complete(self._run(command))
            output = Output(command, result.stdout or "", result.stderr or "", 0)
        except CommandExecutionFailure as failure:
            output = Output(
                command,
                failure.stdout or "",
                failure.stderr or "",
                failure.exit_code if failure.exit_code is not None else 1,
            )
        except (ExecutorFailure, TimeoutError, OSError) as failure:
            output = Output(command, "", f"{type(failure).__name__}: {failure}", 255)
        self.answers.append(output)
        return output

    async def _run(self, command: str) -> Any:
        return await asyncio.wait_for(self.executor.run_command(command), self.timeout)


class ReplayRunner(Runner):
    """Answers from recorded outputs (``init --record``'s JSON; the unit tests' fixtures).

    A command that was not recorded fails with exit code 127, as a missing command would.
    """

    def __init__(self, recorded: dict[str, Any] | list[dict[str, Any]]):
        super().__init__(executor=None)
        self._loop.close()
        answers = recorded["answers"] if isinstance(recorded, dict) else recorded
        self.recorded = {answer["command"]: answer for answer in answers}
        self.asked: list[str] = []

    def __call__(self, *argv: str) -> Output:
        command = shlex.join(argv)
        self.asked.append(command)
        answer = self.recorded.get(command)
        output = (
            Output(command, "", f"not recorded: {command}", 127)
            if answer is None
            else Output(command, answer["stdout"], answer["stderr"], answer["exit_code"])
        )
        self.answers.append(output)
        return output


#: how a probe runs one command of the site: argv in, its output back
Run = Callable[..., Output]


class ProbeError(RuntimeError):
    """The site could not be read at all."""
