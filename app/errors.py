"""Errors raised for bad user input: each names the file (or path) and the problem."""

from __future__ import annotations

from pathlib import Path

__all__ = ["InputError", "InputErrors"]


class InputError(ValueError):
    """A problem with one input file or path.

    Args:
        path: the offending file or folder.
        problem: what is wrong, and where possible how to fix it.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class InputErrors(ValueError):
    """Several input problems found in one pass, reported together."""

    def __init__(self, errors: list[InputError]) -> None:
        self.errors = list(errors)
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"{len(self.errors)} input problem(s):\n{lines}")
