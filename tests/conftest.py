"""Shared pytest fixtures: real shared data (skipped only when absent outside CI) and demo sets."""

from __future__ import annotations

import os

import pytest

from app.paths import shared_data_dir


@pytest.fixture(scope="session")
def shared_data():
    """Path to ``../shared/data``; CI always has it, so there a missing folder is a failure."""
    path = shared_data_dir()
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared data folder {path} is missing in CI")
        pytest.skip(f"shared data folder {path} not found (set APP_SHARED_DATA)")
    return path
