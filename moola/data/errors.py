"""The one exception type for bad input: every problem names where, expected vs found, the fix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One violation of the data contract."""

    where: str  # file, plus column or row
    expected: str
    found: str
    fix: str

    def __str__(self) -> str:
        return f"{self.where}: expected {self.expected}, found {self.found}. Fix: {self.fix}"


class DataContractError(ValueError):
    """Raised with every problem found, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} data problem(s):\n{lines}")
