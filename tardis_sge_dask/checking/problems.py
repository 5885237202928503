"""A problem of a configuration file, as one line, and the list they are collected in."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..schema import Finding


@dataclass(frozen=True)
class Problem:
    file: str
    key_path: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key_path}: {self.problem}. Fix: {self.fix}"


@dataclass
class Report:
    """Problems of one file; ``check_files=False`` leaves out the daemon host's files."""

    path: str
    check_files: bool = True
    #: whether settings only the drone pilot needs are reported (see Finding.pilot_only)
    pilot_settings: bool = True
    problems: list[Problem] = field(default_factory=list)

    def __call__(self, key_path: str, problem: str, fix: str) -> None:
        line = Problem(self.path, key_path, problem, fix)
        # a site-wide gap is found once per machine type; say it once
        if line not in self.problems:
            self.problems.append(line)

    def host_file(self, key_path: str, problem: str, fix: str) -> None:
        """A file on this host is missing: a problem only where the daemon runs."""
        if self.check_files:
            self(key_path, problem, fix)

    def findings(self, findings: Iterable[Finding]) -> None:
        for finding in findings:
            if self.pilot_settings or not finding.pilot_only:
                self(finding.key_path, finding.problem, finding.fix)
