"""The deploy pipeline's functions on small synthetic volumes: bundle loading, segmentation geometry."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from app.deploy.pipeline import CPU_MAX_ROI, load_bundle, resolve_model_path, segment
from app.deploy.staging import publish, staging_folder
from app.errors import InputError

from .conftest import THRESHOLD_HU, Threshold, ct_metadata, save_bundle


def _oblique_ct(size=(40, 32, 10), spacing=(0.8, 0.9, 2.5)) -> sitk.Image:
    """A smooth synthetic CT (a bright ball in soft tissue) on a rotated, flipped grid, int16 HU."""
    z, y, x = np.meshgrid(*(np.arange(n) for n in size[::-1]), indexing="ij")
    r2 = ((x - 20) * 0.8) ** 2 + ((y - 16) * 0.9) ** 2 + ((z - 5) * 2.5) ** 2
    image = sitk.GetImageFromArray(np.where(r2 < 9**2, 200, -20).astype(np.int16))
    image.SetSpacing(spacing)
    image.SetOrigin((-12.3, 45.6, -789.0))
    t = np.deg2rad(15)
    image.SetDirection((np.cos(t), -np.sin(t), 0, -np.sin(t), -np.cos(t), 0, 0, 0, 1))  # det -1: flipped
    return image


def test_segment_keeps_the_exact_source_grid_through_resampling(tmp_path):
    model = load_bundle(save_bundle(Threshold(), tmp_path / "t.ts", ct_metadata(pixdim=(1.5, 1.5, 2.0))))
    image = _oblique_ct()
    label = segment(image, model)
    assert label.GetSize() == image.GetSize() and label.GetPixelID() == sitk.sitkUInt8
    assert label.GetOrigin() == image.GetOrigin() and label.GetSpacing() == image.GetSpacing()
    assert label.GetDirection() == image.GetDirection()
    expected = sitk.GetArrayFromImage(image) >= THRESHOLD_HU
    got = sitk.GetArrayFromImage(label).astype(bool)
    assert (got == expected).mean() > 0.97  # resampled to 1.5 mm and back: only the border may move
    assert abs(int(got.sum()) - int(expected.sum())) < 0.1 * expected.sum()


def test_segment_is_exact_at_the_source_spacing(tmp_path):
    image = _oblique_ct()
    model = load_bundle(save_bundle(Threshold(), tmp_path / "t.ts", ct_metadata(pixdim=image.GetSpacing())))
    label = segment(image, model)
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(label), (sitk.GetArrayFromImage(image) >= THRESHOLD_HU).astype(np.uint8)
    )


def test_load_bundle_reads_the_embedded_metadata(tmp_path):
    meta = ct_metadata(spatial_shape=(96, 96, 96))
    model = load_bundle(save_bundle(Threshold(), tmp_path / "t.ts", meta), device="cpu")
    assert model.pixdim == (1.5, 1.5, 2.0) and model.intensity_window == (-57.0, 164.0)
    assert model.axcodes == "RAS" and model.modality == "CT" and model.num_classes == 2
    assert model.roi_size == (CPU_MAX_ROI,) * 3  # the bundle's 96^3 is capped on CPU
    assert model.segments[1].name == "spleen" and model.segments[1].type[0] == "78961009"
    assert load_bundle(tmp_path / "t.ts", roi_size=(32, 32, 16)).roi_size == (32, 32, 16)


def test_model_folder_resolves_to_its_one_model_file(tmp_path):
    path = save_bundle(Threshold(), tmp_path / "models" / "seg" / "model.ts", ct_metadata())
    assert resolve_model_path(tmp_path / "models") == path
    save_bundle(Threshold(), tmp_path / "models" / "other.ts", ct_metadata())
    with pytest.raises(InputError, match="2 model files"):
        resolve_model_path(tmp_path / "models")
    with pytest.raises(InputError, match="model file not found"):
        resolve_model_path(tmp_path / "nothing.ts")


def _without(meta: dict, *keys: str) -> dict:
    meta = json.loads(json.dumps(meta))
    node = meta
    for key in keys[:-1]:
        node = node[key]
    del node[keys[-1]]
    return meta


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        (None, "no embedded metadata.json"),
        (_without(ct_metadata(), "preprocessing"), "no preprocessing"),
        (_without(ct_metadata(), "preprocessing", "pixdim"), "no preprocessing#pixdim"),
        (_without(ct_metadata(), "segments"), "no segments"),
        (_without(ct_metadata(), "network_data_format", "outputs"), "no network_data_format#outputs"),
    ],
)
def test_bad_bundles_are_input_errors_naming_the_file(tmp_path, meta, message):
    path = save_bundle(Threshold(), tmp_path / "bad.ts", meta)
    with pytest.raises(InputError, match=message) as info:
        load_bundle(path)
    assert str(path) in str(info.value)


def test_a_file_that_is_not_torchscript_is_an_input_error(tmp_path):
    (tmp_path / "notes.ts").write_text("not a model")
    with pytest.raises(InputError, match="cannot load as a TorchScript model"):
        load_bundle(tmp_path / "notes.ts")
    with zipfile.ZipFile(tmp_path / "weights.zip", "w") as z:
        z.writestr("x/data.pkl", b"")
    with pytest.raises(InputError, match="cannot load as a TorchScript model"):
        load_bundle(tmp_path / "weights.zip")


def test_wrong_channel_count_is_reported(tmp_path):
    class ThreeClasses(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x, x, x], dim=1)

    model = load_bundle(save_bundle(ThreeClasses(), tmp_path / "t.ts", ct_metadata()))
    with pytest.raises(InputError, match="network gives 3 channels, its metadata says 2"):
        segment(_oblique_ct(size=(16, 16, 4)), model)


def test_staging_publishes_all_files_or_none(tmp_path):
    out = tmp_path / "out"
    with staging_folder(out) as staging:
        (staging / "a.txt").write_text("a")
        (staging / "sub").mkdir()
        (staging / "sub" / "b.txt").write_text("b")
        (staging / ".partial.tmp").write_text("temporary file of an atomic writer")
        written = publish(staging, out)
    assert written == [out / "a.txt", out / "sub" / "b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(RuntimeError), staging_folder(tmp_path / "out2") as staging:
        (staging / "a.txt").write_text("a")
        raise RuntimeError("writer failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_map_manifest_and_requirements():
    import yaml

    from app.paths import REPO_ROOT

    manifest = yaml.safe_load((REPO_ROOT / "app" / "deploy" / "app.yaml").read_text())
    assert manifest["application"]["title"] and manifest["application"]["version"]
    assert manifest["application"]["inputFormats"] == ["file"] == manifest["application"]["outputFormats"]
    assert {"cpu", "memory"} <= manifest["resources"].keys()
    requirements = (REPO_ROOT / "app" / "deploy" / "requirements.txt").read_text().splitlines()
    names = {line.split(">")[0].split("=")[0] for line in requirements if line and not line.startswith("#")}
    assert {"monai-deploy-app-sdk", "monai", "torch", "highdicom", "pydicom", "pylibjpeg-openjpeg"} <= names
