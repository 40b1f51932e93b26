"""Shared pytest fixtures: real shared data (skipped only when absent outside CI) and demo sets."""

from __future__ import annotations

import os

import pytest
import torch

# torch.compile's CPU backend imports setuptools, whose distutils shim fails ("AssertionError:
# .../distutils/core.py") once any code has imported the standard library's distutils; some library
# used by an earlier test in the session does. Importing it first keeps setuptools' distutils in place.
import torch.utils.cpp_extension  # noqa: F401  (isort: skip)
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


@pytest.fixture
def one_torch_thread():
    """One intra-op thread for the test, then the previous count: equal-output comparisons of fast
    paths stay reproducible and do not oversubscribe a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
