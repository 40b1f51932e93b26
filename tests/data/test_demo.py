"""Demo generators: layouts, shapes, label sets, affines, seeding; ensure_demo generates once."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from app.data.checks import CheckOptions, check_dataset
from app.data.demo import demo_dir, ensure_demo, make_ct_demo, make_demo, make_em_demo, make_mri_demo


def test_em_layout_and_labels(tmp_path):
    out = make_em_demo(tmp_path, n_train=2, n_test=1, size=128)
    assert sorted(p.name for p in (out / "train" / "image").iterdir()) == ["0.png", "1.png"]
    assert [p.name for p in (out / "test").iterdir()] == ["0.png"]
    image = np.array(Image.open(out / "train" / "image" / "0.png"))
    label = np.array(Image.open(out / "train" / "label" / "0.png"))
    assert image.shape == label.shape == (128, 128) and image.dtype == np.uint8
    assert set(np.unique(label)) == {0, 255}
    assert 0.08 < (label == 0).mean() < 0.35  # membrane fraction, ISBI has ~0.22
    assert image[label == 0].mean() < image[label == 255].mean() - 40  # membranes are dark
    n_cells = ndimage.label(label == 255)[1]
    assert n_cells > 5


def test_em_default_size_matches_isbi():
    from app.data.demo import _em_slice

    image, label = _em_slice(np.random.default_rng(0), 512)
    assert image.shape == label.shape == (512, 512)


def test_ct_volumes_affines_and_label(tmp_path):
    out = make_ct_demo(tmp_path, n_cases=2, shape=(160, 160, 12))
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] == {"0": "background", "1": "spleen"} and meta["numTraining"] == 2
    for item in meta["training"]:
        image, label = nib.load(out / item["image"]), nib.load(out / item["label"])
        np.testing.assert_array_equal(image.affine, label.affine)
        assert not np.allclose(image.affine, np.eye(4))
        zooms = image.header.get_zooms()
        assert zooms[2] > 2 * zooms[0]  # anisotropic: thick slices
        assert np.linalg.det(image.affine[:3, :3]) > 0 and image.affine[0, 0] < 0  # LPS-like RAS affine
        hu = np.asanyarray(image.dataobj)
        assert image.get_data_dtype() == np.int16 and hu.min() <= -1000 and 300 < hu.max() < 3072
        lbl = np.asanyarray(label.dataobj)
        assert set(np.unique(lbl)) == {0, 1}
        assert 110 < hu[lbl == 1].mean() < 170  # enhanced spleen, brighter than the liver
    assert check_dataset(out) == []


def test_mri_two_adjacent_structures_and_scales(tmp_path):
    out = make_mri_demo(tmp_path, n_cases=4)
    means = []
    for item in json.loads((out / "dataset.json").read_text())["training"]:
        label = np.asanyarray(nib.load(out / item["label"]).dataobj)
        assert set(np.unique(label)) == {0, 1, 2}
        touching = ndimage.binary_dilation(label == 1) & (label == 2)
        assert touching.any()
        means.append(np.asanyarray(nib.load(out / item["image"]).dataobj).mean())
    assert max(means) / min(means) > 3  # intensity scales differ strongly between cases
    assert check_dataset(out, CheckOptions(label_values=frozenset({0, 1, 2}))) == []


def test_mri_multichannel_layout(tmp_path):
    out = make_mri_demo(tmp_path, n_cases=2, n_channels=2)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["modality"] == {"0": "MRI", "1": "MRI1"}
    first = meta["training"][0]["image"]
    assert first == ["./imagesTr/mri_000_0000.nii.gz", "./imagesTr/mri_000_0001.nii.gz"]
    a, b = (np.asanyarray(nib.load(out / p).dataobj) for p in first)
    assert a.shape == b.shape and np.corrcoef(a.ravel(), b.ravel())[0, 1] < 0  # a different contrast
    assert check_dataset(out, CheckOptions(label_values=frozenset({0, 1, 2}))) == []


@pytest.mark.parametrize(
    "task, pattern", [("ct", "imagesTr/*.nii.gz"), ("mri", "imagesTr/*.nii.gz"), ("em", "train/image/*.png")]
)
def test_seeded(tmp_path, task, pattern):
    kwargs = {
        "ct": {"n_cases": 1, "shape": (32, 32, 8)},
        "mri": {"n_cases": 1},
        "em": {"n_train": 1, "n_test": 0, "size": 64},
    }[task]
    a, b, c = (
        make_demo(task, tmp_path / name, seed=s, **kwargs) for name, s in (("a", 0), ("b", 0), ("c", 1))
    )
    (fa,), (fb,), (fc,) = (sorted(d.glob(pattern)) for d in (a, b, c))
    assert fa.read_bytes() == fb.read_bytes() or _pixels(fa) == _pixels(fb)
    assert _pixels(fa) != _pixels(fc)


def _pixels(path):
    data = np.array(Image.open(path)) if path.suffix == ".png" else np.asanyarray(nib.load(path).dataobj)
    return data.tobytes()


def test_unknown_task(tmp_path):
    with pytest.raises(ValueError, match="valid: em, ct, mri"):
        make_demo("xray", tmp_path)


def test_ensure_demo_generates_once(tmp_path, monkeypatch):
    monkeypatch.setenv("APP_DEMO_DIR", str(tmp_path))
    calls = []
    import app.data.demo as demo

    real = demo._MAKERS["mri"]
    monkeypatch.setitem(
        demo._MAKERS, "mri", lambda out, seed=0: calls.append(out) or real(out, seed=seed, n_cases=2)
    )
    first = ensure_demo("mri")
    assert first == demo_dir("mri") == tmp_path / "mri"
    assert (first / ".complete").is_file() and len(list((first / "imagesTr").iterdir())) == 2
    assert ensure_demo("mri") == first and len(calls) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["mri"]  # no temporary folder left behind


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("APP_DEMO_DIR", str(tmp_path))
    import app.data.demo as demo

    def boom(out, seed=0):
        (out / "partial.txt").write_text("x")
        raise KeyboardInterrupt

    monkeypatch.setitem(demo._MAKERS, "ct", boom)
    with pytest.raises(KeyboardInterrupt):
        ensure_demo("ct")
    assert list(tmp_path.iterdir()) == []


def test_concurrent_first_use_by_two_processes(tmp_path, monkeypatch):
    """Both ranks of a distributed run may generate the demo at once: both must end with one complete set."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setenv("APP_DEMO_DIR", str(tmp_path))
    import app.data.demo as demo

    real = demo._MAKERS["mri"]
    monkeypatch.setitem(demo._MAKERS, "mri", lambda out, seed=0: real(out, seed=seed, n_cases=2))
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: ensure_demo("mri"), range(2)))
    assert results == [tmp_path / "mri"] * 2
    assert (tmp_path / "mri" / ".complete").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["mri"]
