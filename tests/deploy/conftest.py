"""Fixtures for the MONAI Deploy app tests: tiny TorchScript bundles and edited copies of the real series."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom
import pytest
import torch

from app.paths import REPO_ROOT

SERIES = "ct_dicom_series/series"
SOURCE_SPACING = [0.9765625, 0.9765625, 2.0]  # the real series: resampling to it is the identity
WINDOW = (-57.0, 164.0)  # bundles/ct/metadata.json intensity window
THRESHOLD_HU = WINDOW[0] + 0.5 * (WINDOW[1] - WINDOW[0])  # 53.5 HU: the threshold module's cut


class Threshold(torch.nn.Module):
    """Logits ``[x < 0.5, x >= 0.5]`` of the windowed, [0, 1]-scaled input: label 1 where HU >= 53.5."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([(x < 0.5).float(), (x >= 0.5).float()], dim=1)


def ct_metadata(pixdim=None, spatial_shape=(64, 64, 32)) -> dict:
    """bundles/ct/metadata.json with a small patch size (and optionally another pixdim)."""
    meta = json.loads((REPO_ROOT / "bundles" / "ct" / "metadata.json").read_text())
    if pixdim is not None:
        meta["preprocessing"]["pixdim"] = list(pixdim)
    meta["network_data_format"]["inputs"]["image"]["spatial_shape"] = list(spatial_shape)
    return meta


def save_bundle(network: torch.nn.Module, path: Path, meta: dict | None) -> Path:
    """Script ``network`` and save it with an embedded metadata.json (and a delta-style inference.json)."""
    extra = {"inference.json": "{}"}
    if meta is not None:
        extra["metadata.json"] = json.dumps(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.script(network.eval()), str(path), _extra_files=extra)
    return path


@pytest.fixture(scope="session")
def series_dir(shared_data) -> Path:
    """The real 20-slice JPEG 2000 CT series (read-only)."""
    return shared_data / SERIES


@pytest.fixture(scope="session")
def threshold_bundle(tmp_path_factory) -> Path:
    """Threshold module at the source spacing: the predicted mask is exactly HU >= 53.5."""
    return save_bundle(
        Threshold(), tmp_path_factory.mktemp("bundle") / "threshold.ts", ct_metadata(SOURCE_SPACING)
    )


@pytest.fixture(scope="session")
def unet_bundle(tmp_path_factory) -> Path:
    """A tiny random MONAI UNet with the CT bundle's preprocessing (1.5 x 1.5 x 2 mm)."""
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    net = UNet(3, 1, 2, channels=(4, 8), strides=(2,))
    return save_bundle(net, tmp_path_factory.mktemp("bundle") / "unet.ts", ct_metadata())


@pytest.fixture
def copy_series(series_dir, tmp_path):
    """Factory: copy ``n`` consecutive slices of the real series (from ``start``) and edit attributes.

    ``edit`` maps attribute keyword -> value for every copied file; ``edit_files`` maps a copy's index
    to attributes for that file only. Returns the new folder.
    """

    def copy(n=4, name="series", start=0, edit=None, edit_files=None):
        folder = tmp_path / name
        folder.mkdir()
        for i, src in enumerate(sorted(series_dir.iterdir())[start : start + n]):
            target = folder / src.name
            shutil.copyfile(src, target)
            attributes = {**(edit or {}), **((edit_files or {}).get(i, {}))}
            if attributes:
                ds = pydicom.dcmread(target)
                for keyword, value in attributes.items():
                    setattr(ds, keyword, value)
                ds.save_as(target)
        return folder

    return copy
