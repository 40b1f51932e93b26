"""Input checks: every check in one place, on small hand-made NIfTI/PNG files and on the shared data."""

from __future__ import annotations

import gzip
import re

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from app.data.checks import MAX_VOXELS, CheckOptions, check_dataset, check_entry, read_header
from app.errors import InputError

AFFINE = np.diag([-0.8, -0.8, 2.5, 1.0])
AFFINE[:3, 3] = [100.0, 120.0, -50.0]


def _nifti(path, array, affine=AFFINE):
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return str(path)


def _pair(tmp_path, name="case", image=None, label=None, label_affine=AFFINE):
    rng = np.random.default_rng(0)
    image = rng.normal(0, 100, (16, 16, 8)).astype(np.float32) if image is None else image
    if label is None:
        label = np.zeros((16, 16, 8), np.uint8)
        label[4:10, 4:10, 2:6] = 1
    return {
        "image": _nifti(tmp_path / f"{name}_img.nii.gz", image),
        "label": _nifti(tmp_path / f"{name}_lbl.nii.gz", label, label_affine),
    }


def _rotated(affine, degrees):
    """``affine`` with its axes rotated about z (same spacing and origin)."""
    t = np.deg2rad(degrees)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    out = affine.copy()
    out[:3, :3] = rot @ affine[:3, :3]
    return out


OPT = CheckOptions(spatial_dims=3, label_values=frozenset({0, 1}))


def test_good_pair_has_no_problem(tmp_path):
    assert check_entry(_pair(tmp_path), OPT) == []


def test_header_reports_itk_geometry(tmp_path):
    header = read_header(_pair(tmp_path)["image"])
    assert header.size == (16, 16, 8)
    np.testing.assert_allclose(header.spacing, (0.8, 0.8, 2.5))
    # NIfTI RAS (-x, -y flipped by the affine) is LPS (+x, +y) in ITK: origin x/y change sign.
    np.testing.assert_allclose(header.origin, (-100.0, -120.0, -50.0))


def _problems(entry, opt=OPT):
    return [str(e) for e in check_entry(entry, opt)]


def test_corrupt_file(tmp_path):
    entry = _pair(tmp_path)
    with open(entry["image"], "wb") as f:
        f.write(gzip.compress(b"not a nifti file at all" * 10))
    (msg,) = _problems(entry)
    assert entry["image"] in msg and "cannot be read" in msg


def test_truncated_file(tmp_path):
    entry = _pair(tmp_path)
    data = open(entry["label"], "rb").read()
    open(entry["label"], "wb").write(data[: len(data) // 3])
    msgs = _problems(entry)
    assert msgs and all(entry["label"] in m for m in msgs)


def test_missing_file(tmp_path):
    entry = _pair(tmp_path)
    entry["label"] = str(tmp_path / "nope.nii.gz")
    assert any("does not exist" in m and "nope.nii.gz" in m for m in _problems(entry))


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda a: np.diag([-0.8, -0.8, 3.0, 1.0]), "spacing"),
        (lambda a: a + np.array([[0, 0, 0, 5.0]] * 3 + [[0, 0, 0, 0]]), "origin"),
        (lambda a: _rotated(a, 10.0), "direction"),
    ],
)
def test_label_on_another_grid(tmp_path, change, expected):
    label_affine = change(AFFINE.copy())
    entry = _pair(tmp_path, label_affine=label_affine)
    msgs = _problems(entry)
    assert len(msgs) == 1 and entry["label"] in msgs[0] and expected in msgs[0], msgs


def test_label_with_other_shape(tmp_path):
    label = np.zeros((16, 16, 9), np.uint8)
    label[2:5, 2:5, 2:5] = 1
    msgs = _problems(_pair(tmp_path, label=label))
    assert len(msgs) == 1 and "shape (16, 16, 9) differs from its image's (16, 16, 8)" in msgs[0]


def test_nan_and_inf_image(tmp_path):
    image = np.ones((16, 16, 8), np.float32)
    image[0, 0, 0], image[1, 1, 1], image[2, 2, 2] = np.nan, np.inf, 3.0
    msgs = _problems(_pair(tmp_path, image=image))
    assert len(msgs) == 1 and "2 NaN/Inf" in msgs[0]


def test_blank_image(tmp_path):
    msgs = _problems(_pair(tmp_path, image=np.zeros((16, 16, 8), np.float32)))
    assert len(msgs) == 1 and "blank" in msgs[0]


def test_undeclared_label_values(tmp_path):
    label = np.zeros((16, 16, 8), np.uint8)
    label[:4], label[4:8] = 1, 2
    entry = _pair(tmp_path, label=label)
    (msg,) = _problems(entry)
    assert msg == f"{entry['label']}: label has values [0, 1, 2] but the bundle declares [0, 1]"


def test_empty_label(tmp_path):
    entry = _pair(tmp_path, label=np.zeros((16, 16, 8), np.uint8))
    (msg,) = _problems(entry)
    assert "label is empty" in msg
    assert check_entry(entry, CheckOptions(label_values=frozenset({0, 1}), allow_empty_label=True)) == []


def test_non_integer_label(tmp_path):
    label = np.full((16, 16, 8), 0.5, np.float32)
    label[0] = 0
    (msg,) = _problems(_pair(tmp_path, label=label))
    assert "non-integer" in msg


def test_wrong_dimensionality(tmp_path):
    entry = _pair(tmp_path)
    img2d = tmp_path / "slice.png"
    Image.fromarray((np.arange(64).reshape(8, 8) * 3).astype(np.uint8)).save(img2d)
    entry["image"] = str(img2d)
    msgs = _problems(entry)
    assert any("is 2D" in m and "needs 3D" in m and str(img2d) in m for m in msgs)
    four_d = _nifti(tmp_path / "4d.nii.gz", np.ones((4, 4, 4, 2), np.float32))
    assert any("is 4D" in m for m in _problems({"image": four_d}))


def test_zero_spacing(tmp_path):
    path = tmp_path / "zero.nii"
    header = nib.Nifti1Header()
    header.set_data_shape((8, 8, 4))
    header.set_data_dtype(np.float32)
    header["pixdim"][1:4] = (1.0, 1.0, 0.0)
    header["vox_offset"] = 352
    data = np.random.default_rng(0).random((8, 8, 4)).astype(np.float32)
    path.write_bytes(header.binaryblock + b"\0" * 4 + data.tobytes(order="F"))
    msgs = _problems({"image": str(path)})
    assert len(msgs) == 1 and str(path) in msgs[0] and "zero or negative" in msgs[0], msgs


def test_absurd_header_fails_fast(tmp_path):
    path = tmp_path / "huge.nii"
    header = nib.Nifti1Header()
    header.set_data_shape((30000, 30000, 30000))
    header.set_data_dtype(np.float32)
    with open(path, "wb") as f:
        f.write(header.binaryblock + b"\0" * 4)  # header + extension flag, no pixel data
    with pytest.raises(InputError, match=re.escape(f"more than {MAX_VOXELS:.3g}")):
        read_header(path)


def test_channels_must_share_the_grid(tmp_path):
    entry = _pair(tmp_path)
    other = _nifti(
        tmp_path / "adc.nii.gz",
        np.random.default_rng(1).random((16, 16, 8)).astype(np.float32),
        np.diag([-1.0, -0.8, 2.5, 1.0]),
    )
    entry["image"] = [entry["image"], other]
    (msg,) = _problems(entry)
    assert other in msg and "channel is not on the image's grid" in msg


def test_all_problems_reported_together(tmp_path):
    """The Foundation acceptance case: a corrupt file, a label on another grid and a NaN image."""
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    good = _pair(tmp_path / "imagesTr", "a")
    bad_grid = _pair(tmp_path / "imagesTr", "b", label_affine=np.diag([-0.8, -0.8, 5.0, 1.0]))
    nan_image = np.ones((16, 16, 8), np.float32)
    nan_image[3, 3, 3] = np.nan
    nan_pair = _pair(tmp_path / "imagesTr", "c", image=nan_image)
    corrupt = _pair(tmp_path / "imagesTr", "d")
    open(corrupt["image"], "wb").write(b"\x1f\x8b garbage")
    entries = [good, bad_grid, nan_pair, corrupt]
    from app.data.checks import check_datalist

    msgs = [str(e) for e in check_datalist(entries, OPT)]
    assert len(msgs) == 3
    assert bad_grid["label"] in msgs[0] and nan_pair["image"] in msgs[1] and corrupt["image"] in msgs[2]


@pytest.mark.parametrize("name, dims", [("isbi2012", 2), ("hippocampus", 3), ("spleen_ct", 3)])
def test_shared_datasets_pass(shared_data, name, dims):
    labels = {"isbi2012": {0, 255}, "hippocampus": {0, 1, 2}, "spleen_ct": {0, 1}}[name]
    assert (
        check_dataset(shared_data / name, CheckOptions(spatial_dims=dims, label_values=frozenset(labels)))
        == []
    )


def test_shared_dicom_series_header(shared_data):
    header = read_header(shared_data / "ct_dicom_series" / "series")
    assert header.dimension == 3 and header.size == (512, 512, 20)
