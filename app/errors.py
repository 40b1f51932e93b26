"""Errors raised for bad user input: each names the file (or path) and the problem."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["InputError", "InputErrors", "install_excepthook"]


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


def _input_errors_in_chain(exc: BaseException | None) -> list[InputError]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, InputErrors):
            return exc.errors
        if isinstance(exc, InputError):
            return [exc]
        exc = exc.__cause__ or exc.__context__
    return []


def _root_cause(exc: BaseException) -> BaseException:
    seen = {id(exc)}
    while (cause := exc.__cause__ or exc.__context__) is not None and id(cause) not in seen:
        seen.add(id(cause))
        exc = cause
    return exc


def install_excepthook() -> None:
    """Make an uncaught input error (even wrapped by ``monai.bundle``'s config evaluation) end the
    program with one line per problem, naming the file, instead of a long traceback. Exit code 1.

    Any other uncaught error keeps its traceback, followed by one ``ERROR <type>: <message>`` line with
    the root cause (``monai.bundle`` wraps it in ``Failed to evaluate ConfigExpression`` otherwise)."""
    previous = sys.excepthook
    if getattr(previous, "_app_input_errors", False):
        return

    def hook(exc_type, exc, tb):
        errors = _input_errors_in_chain(exc)
        if not errors:
            previous(exc_type, exc, tb)
            if isinstance(exc, Exception):
                root = _root_cause(exc)
                print(f"ERROR {type(root).__name__}: {root}", file=sys.stderr)
            return
        for err in errors:
            print(f"ERROR {err}", file=sys.stderr)
        print(f"stopped: {len(errors)} input problem(s) found before anything was written", file=sys.stderr)

    hook._app_input_errors = True  # type: ignore[attr-defined]
    sys.excepthook = hook
