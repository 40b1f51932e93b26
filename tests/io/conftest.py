"""Fixtures for the DICOM / Slicer I/O tests: the real 20-slice CT series, read once, and copies of it."""

from __future__ import annotations

import shutil

import pytest

from app.io.dicom_series import read_dicom_series

SERIES = "ct_dicom_series/series"


@pytest.fixture(scope="session")
def series_dir(shared_data):
    """The real JPEG 2000 CT series folder (read-only)."""
    return shared_data / SERIES


@pytest.fixture(scope="session")
def ct_series(series_dir):
    """``(image, datasets)`` of the real series; copy datasets before changing them."""
    return read_dicom_series(series_dir)


@pytest.fixture
def copy_series(series_dir, tmp_path):
    """Factory: copy the first ``n`` files (consecutive slices) of the real series to a new folder."""

    def copy(n: int = 6, name: str = "series"):
        folder = tmp_path / name
        folder.mkdir()
        for src in sorted(series_dir.iterdir())[:n]:
            shutil.copyfile(src, folder / src.name)  # copyfile: the copies are writable
        return folder

    return copy
