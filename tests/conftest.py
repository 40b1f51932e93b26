"""Shared pytest fixtures: real shared data (skipped only when absent outside CI) and demo sets."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

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


@pytest.fixture
def compiled_check():
    """:func:`run_compiled_check`, for tests of the ``torch.compile`` paths."""
    return run_compiled_check


def run_compiled_check(script: str, timeout_s: int = 600) -> dict:
    """Run ``script`` (Python source that prints one JSON object last) in a fresh interpreter; its result.

    For the ``torch.compile`` tests: TorchInductor's CPU backend imports setuptools, whose distutils shim
    can fail ("AssertionError: .../distutils/core.py") depending on what a long test session imported
    before; a fresh process sees only what the check needs. The test is skipped when the script reports
    ``{"skip": reason}`` (no usable C++ toolchain), and fails with the script's output on any error.
    """
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        pytest.fail(f"compile check failed (exit {done.returncode}):\n{output}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if "skip" in result:
        pytest.skip(result["skip"])
    return result
