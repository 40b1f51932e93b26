"""Atomic file output: write to a hidden temporary file beside the target, then rename onto it."""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_output"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_output(out_path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write ``out_path``'s content to; it replaces ``out_path`` on success.

    The temporary file is ``.<random>.<name>`` in the same folder (same file system, so the final
    ``os.replace`` is atomic, and the same ending, so writers that choose the format by extension,
    e.g. SimpleITK with ``.nii.gz``, still work). If the body raises, the temporary file is removed
    and ``out_path`` is left as it was: a half-written output is never visible under its final name.
    The parent folder is created if needed.
    """
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{uuid.uuid4().hex[:12]}.{out.name}")
    try:
        yield tmp
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    logger.debug("wrote %s", out)
