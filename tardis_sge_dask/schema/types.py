"""Value types of the configuration schema, each with the one-line message a wrong value gets.

pydantic's own coercion is too lenient for a configuration (``2.5`` cores became ``2``,
``"yes"`` became true), so every type here accepts only what the adapters really read.

Each type is a validator class for pydantic and, to a type checker, the plain value the
validator returns (a field ``Cores: WholePositive`` holds an ``int``), as pydantic's own
constrained types do: code that reads a section then needs no casts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from ..sites.settings import SiteConfigError, parse_walltime
from ..sites.values import control_character_problem

#: a name the shell and every batch system's ``-v``/``--export`` take as a variable
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: characters that split a batch system's option lists or start a new job-script line
SEPARATORS = (",", "\n", "\r", "\0")


class KeyProblem(ValueError):
    """A cross-key rule broken at ``key`` (relative to the validated section)."""

    def __init__(self, key: str, problem: str, fix: str = "", *, pilot_only: bool = False):
        super().__init__(problem)
        self.key = key
        self.problem = problem
        self.fix = fix
        #: a setting only the drone pilot needs: the daemon cannot tell whether
        #: StartupCommand is that pilot, so only ``check`` reports it
        self.pilot_only = pilot_only


def control_characters(text: str) -> str | None:
    """Why ``text`` cannot reach a job script or a command line, or None."""
    # the adapters refuse the same characters at start: one rule for both
    return control_character_problem(text)


class _Type:
    @classmethod
    def __get_validators__(cls) -> Iterator[Callable[..., Any]]:
        yield cls.validate

    @classmethod
    def validate(cls, value: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Number(_Type):
    """A plain number (ints and floats, never bools or strings), with a lower bound."""

    minimum: ClassVar[float | None] = None
    above: ClassVar[float | None] = None
    whole: ClassVar[bool] = False

    @classmethod
    def validate(cls, value: Any) -> Any:
        if not _is_number(value) or (cls.whole and not isinstance(value, int)):
            kind = (
                "a whole number"
                if cls.whole
                else "a positive number"
                if cls.above == 0
                else "a number"
            )
            raise ValueError(f"expected {kind}, got {value!r}")
        if cls.minimum is not None and value < cls.minimum:
            raise ValueError(f"expected a number >= {cls.minimum:g}, got {value!r}")
        if cls.above == 0 and value <= 0:
            raise ValueError(f"expected a positive number, got {value!r}")
        if cls.above is not None and value <= cls.above:
            raise ValueError(f"expected a number > {cls.above:g}, got {value!r}")
        return value


class _NonNegative(Number):
    minimum = 0


class _AtLeastOne(Number):
    minimum = 1


class _Positive(Number):
    above = 0


class _WholeNonNegative(Number):
    minimum = 0
    whole = True


class _WholePositive(Number):
    minimum = 1
    whole = True


class _Flag(_Type):
    @classmethod
    def validate(cls, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value


class _Text(_Type):
    """A non-empty scalar that may reach a command line: no control characters."""

    @classmethod
    def validate(cls, value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int) or str(value) == "":
            raise ValueError(f"expected a non-empty string, got {value!r}")
        why = control_characters(str(value))
        if why:
            raise ValueError(f"{str(value)!r} {why}")
        return str(value)


class _PlainName(_Type):
    """A site or machine-type name: it becomes a job name, a queue or a ``-v`` value."""

    @classmethod
    def validate(cls, value: Any) -> str:
        text = _Text.validate(value)
        if any(char in text for char in SEPARATORS):
            raise ValueError(f"must not contain a comma, a newline or a CR: {text!r}")
        return text


class _TextList(_Type):
    @classmethod
    def validate(cls, value: Any) -> list[str]:
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise ValueError(f"expected a list of strings (one argument each), got {value!r}")
        items = []
        for index, item in enumerate(value):
            try:
                items.append(_Text.validate(item))
            except ValueError as err:
                raise ValueError(f"item {index}: {err}") from None
        return items


class _Walltime(_Type):
    """Seconds, or ``[[H:]M:]S``; parsed by the same function the adapters use."""

    @classmethod
    def validate(cls, value: Any) -> int:
        try:
            return parse_walltime(value, "Walltime")
        except SiteConfigError as err:
            raise ValueError(err.problem) from None


class _Address(_Type):
    @classmethod
    def validate(cls, value: Any) -> str:
        if not isinstance(value, str) or "://" not in value:
            raise ValueError(f"missing or not an address: {value!r}")
        return value


#: executor tags of COBalD/TARDIS YAML files
EXECUTOR_TAGS = (
    "TardisShellExecutor",
    "TardisSSHExecutor",
    "TardisDupingSSHExecutor",
    "ShellExecutor",
    "SSHExecutor",
    "DupingSSHExecutor",
)


class _Executor(_Type):
    """``!TardisShellExecutor {}`` / ``!TardisSSHExecutor {...}`` in a file, the built
    executor in the daemon."""

    @classmethod
    def validate(cls, value: Any) -> Any:
        from ..configfile import Tagged

        if isinstance(value, Tagged):
            if value.tag not in EXECUTOR_TAGS:
                raise ValueError(f"not an executor: !{value.tag}")
            return value
        if value is None or hasattr(value, "run_command"):
            return value
        raise ValueError(f"not an executor: {value!r}")


class _Environment(_Type):
    """``NAME: value`` for the job script; the pilot's own rules apply to the merged one."""

    @classmethod
    def validate(cls, value: Any) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping NAME: value, got {value!r}")
        from .pilot import PilotEnvironment

        names = PilotEnvironment.plain_values(value)
        return names


def plain_name(value: Any) -> str:
    """``value`` as a site or machine-type name, or ValueError (for other models' fields)."""
    return _PlainName.validate(value)


if TYPE_CHECKING:
    NonNegative = float
    AtLeastOne = float
    Positive = float
    WholeNonNegative = int
    WholePositive = int
    Flag = bool
    Text = str
    PlainName = str
    TextList = list[str]
    Walltime = int
    Address = str
    Executor = Any
    Environment = dict[str, str]
else:
    NonNegative = _NonNegative
    AtLeastOne = _AtLeastOne
    Positive = _Positive
    WholeNonNegative = _WholeNonNegative
    WholePositive = _WholePositive
    Flag = _Flag
    Text = _Text
    PlainName = _PlainName
    TextList = _TextList
    Walltime = _Walltime
    Address = _Address
    Executor = _Executor
    Environment = _Environment
