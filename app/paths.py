"""Where the project finds its repository, its generated demo data and the shared real data."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["REPO_ROOT", "demo_root", "shared_data_dir"]

REPO_ROOT = Path(__file__).resolve().parent.parent


def demo_root() -> Path:
    """Folder holding the generated demo sets (``$APP_DEMO_DIR``, default ``<repo>/demo_data``)."""
    return Path(os.environ.get("APP_DEMO_DIR", REPO_ROOT / "demo_data")).resolve()


def shared_data_dir() -> Path:
    """Folder of real shared data (``$APP_SHARED_DATA``, default ``<repo>/../shared/data``)."""
    return Path(os.environ.get("APP_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()
