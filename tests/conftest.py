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


# What every compiled check starts with: one thread, and a skip report when the toolchain cannot load.
_COMPILED_CHECK_PREAMBLE = """
import json
import torch
from app.engine import check_compile

torch.set_num_threads(1)
try:
    check_compile(True, "cpu")
except RuntimeError as error:
    print(json.dumps({"skip": str(error)}))
    raise SystemExit(0)
"""


def run_compiled_check(script: str, timeout_s: int = 600) -> dict:
    """Run ``script`` (Python source that prints one JSON object last) in a fresh interpreter; its result.

    For the ``torch.compile`` tests: TorchInductor's CPU backend imports setuptools, whose distutils shim
    can fail ("AssertionError: .../distutils/core.py") depending on what a long test session imported
    before; a fresh process sees only what the check needs. The script runs after a preamble that imports
    ``json`` and ``torch``, sets one thread and checks the toolchain (``check_compile``); the test is
    skipped when that check fails (no usable C++ toolchain), and fails with the script's output on any
    other error.
    """
    source = _COMPILED_CHECK_PREAMBLE + script
    done = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        pytest.fail(f"compile check failed (exit {done.returncode}):\n{output}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if "skip" in result:
        pytest.skip(result["skip"])
    return result
