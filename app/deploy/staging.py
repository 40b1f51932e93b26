"""All-or-nothing output folders: write into a hidden staging folder, then move the files in.

A run that fails half way (bad input found late, a writer error, Ctrl-C) leaves the output folder
exactly as it was: no half-written file and no partial set of files appears there. The staging
folder is a hidden sibling of the output folder (same file system, so each move is an atomic
``os.replace``); where the parent is not writable it is a hidden folder inside the output folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from app.errors import InputError

__all__ = ["staging_folder", "publish"]


def _make_staging(out_dir: Path) -> Path:
    for parent, prefix in ((out_dir.parent, f".{out_dir.name}.staging-"), (out_dir, ".staging-")):
        with contextlib.suppress(OSError):
            parent.mkdir(parents=True, exist_ok=True)
            return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    raise InputError(out_dir, "cannot create a folder to write the outputs in (read-only location?)")


@contextlib.contextmanager
def staging_folder(out_dir: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder for the outputs of ``out_dir``; it is always removed afterwards.

    Write every output into it, then call :func:`publish` inside the ``with`` block.
    """
    staging = _make_staging(Path(out_dir))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish(staging: str | Path, out_dir: str | Path) -> list[Path]:
    """Move every file of ``staging`` (sub-folders kept) into ``out_dir`` (created if needed).

    Files of the same name in ``out_dir`` are replaced; other files there are left alone. Hidden
    files (temporary files of atomic writers) are not moved.

    Returns:
        the files now in ``out_dir``, sorted.
    """
    staging, out_dir = Path(staging), Path(out_dir)
    files = sorted(
        p
        for p in staging.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(staging).parts)
    )
    written = []
    for path in files:
        target = out_dir / path.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        written.append(target)
    return written
