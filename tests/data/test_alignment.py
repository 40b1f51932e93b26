"""Label-to-image alignment: offsets of hand-made membrane images, the run's recorded shift, ISBI slices."""

import json

import numpy as np
import pytest
from PIL import Image

from app.data.alignment import SHIFT_FILE, label_offset, resolve_image_shift, saved_image_shift
from app.errors import InputError


def _membranes(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Dark 3-px lines every 16 px in x and y on a bright image; the label is 1 in the cells."""
    image = np.ones((n, n))
    for start in range(6, n, 16):
        image[start : start + 3, :] = 0.0
        image[:, start : start + 3] = 0.0
    return image, (image > 0.5).astype(np.uint8)


def test_aligned_labels_have_no_offset():
    image, label = _membranes()
    np.testing.assert_allclose(label_offset(image, label), [0.0, 0.0], atol=1e-9)


@pytest.mark.parametrize("shift", [(1, 0), (0, -1), (-2, 1)])
def test_a_rolled_label_is_found_rolled_back(shift):
    image, label = _membranes()
    # the label moved by `shift`: rolling it by -shift aligns it again
    np.testing.assert_allclose(
        label_offset(image, np.roll(label, shift, (0, 1))), [-s for s in shift], atol=1e-9
    )


def test_a_half_pixel_offset_is_resolved_between_the_integers():
    image, label = _membranes()
    # the image blurred half a pixel towards higher y: its membranes sit +0.5 px from the label's
    shifted = 0.5 * (image + np.roll(image, 1, axis=1))
    offset = label_offset(shifted, label)
    assert abs(offset[0]) < 0.05 and 0.3 < offset[1] < 0.7


def test_bad_pairs_are_refused():
    image, label = _membranes()
    with pytest.raises(ValueError, match="differ in shape"):
        label_offset(image, label[:-1])
    with pytest.raises(ValueError, match="no boundaries"):
        label_offset(image, np.zeros_like(label))


def _write_pairs(folder, shift, n=3, start=0):
    """``n`` membrane images whose labels are rolled by ``shift``, as PNG files; their datalist entries."""
    image, label = _membranes(96)
    items = []
    for i in range(start, start + n):
        # PNG rows are the bundle's axis 1: write the transposes so the roll is along the bundle's axes
        Image.fromarray((image.T * 255).astype(np.uint8)).save(folder / f"{i}.png")
        Image.fromarray((np.roll(label, shift, (0, 1)).T * 255).astype(np.uint8)).save(
            folder / f"{i}_label.png"
        )
        items.append({"image": str(folder / f"{i}.png"), "label": str(folder / f"{i}_label.png")})
    return items


def test_auto_measures_the_shift_records_it_and_reads_it_back(tmp_path):
    items = _write_pairs(tmp_path, (0, 1))  # labels one pixel towards higher y: shift the images by -1
    shift = resolve_image_shift("auto", items, tmp_path, spatial_dims=2)
    np.testing.assert_allclose(shift, [0.0, -1.0], atol=1e-9)
    record = json.loads((tmp_path / SHIFT_FILE).read_text())
    assert record["source"] == "measured" and sorted(record["pairs"]) == [item["image"] for item in items]
    assert saved_image_shift(tmp_path, 2) == shift


def test_aligned_pairs_need_no_shift(tmp_path):
    assert resolve_image_shift("AUTO", _write_pairs(tmp_path, (0, 0)), tmp_path, 2) == [0.0, 0.0]


def test_pairs_that_disagree_are_not_shifted(tmp_path, caplog):
    items = _write_pairs(tmp_path, (0, 2), n=1) + _write_pairs(tmp_path, (0, 0), n=1, start=1)
    assert resolve_image_shift("auto", items, tmp_path, 2) == [0.0, 0.0]
    assert "no constant label offset" in caplog.text


def test_a_given_shift_is_recorded_as_given(tmp_path):
    assert resolve_image_shift([0.13, 0.64], [], tmp_path, 2) == [0.13, 0.64]
    assert json.loads((tmp_path / SHIFT_FILE).read_text())["source"] == "given"
    assert saved_image_shift(tmp_path, 2) == [0.13, 0.64]


@pytest.mark.parametrize("value", ["automatic", [0.5], [0.1, "a"], [0.1, float("nan")], [True, 0.0]])
def test_a_bad_shift_is_refused(tmp_path, value):
    with pytest.raises(ValueError, match="image_shift must be 'auto' or 2 numbers"):
        resolve_image_shift(value, [], tmp_path, 2)
    assert not (tmp_path / SHIFT_FILE).exists()


def test_runs_without_a_record_were_not_shifted_and_a_broken_record_is_named(tmp_path):
    assert saved_image_shift(tmp_path, 3) == [0.0, 0.0, 0.0]
    (tmp_path / SHIFT_FILE).write_text('{"image_shift": [1.0]}')
    with pytest.raises(InputError, match=f"{SHIFT_FILE}: cannot read the run's image shift"):
        saved_image_shift(tmp_path, 2)


def test_an_unmeasurable_pair_is_named(tmp_path):
    items = _write_pairs(tmp_path, (0, 0), n=1)
    Image.fromarray(np.zeros((96, 96), np.uint8)).save(items[0]["label"])
    with pytest.raises(InputError, match="0_label.png: cannot measure its offset"):
        resolve_image_shift("auto", items, tmp_path, 2)


def test_the_measured_shift_aligns_real_isbi_images_with_their_labels(shared_data):
    from monai.transforms import Affine, LoadImage

    load = LoadImage(image_only=True)
    name = "14.png"
    image = load(str(shared_data / "isbi2012" / "train" / "image" / name))
    label = np.asarray(load(str(shared_data / "isbi2012" / "train" / "label" / name)))
    before = label_offset(np.asarray(image), label)
    assert 0.3 < before[1] < 1.0  # the label sits off along y
    shifted, _ = Affine(translate_params=before.tolist(), mode="bilinear", padding_mode="reflection")(
        image[None]
    )
    after = label_offset(np.asarray(shifted[0]), label)
    assert np.abs(after).max() < 0.15


def test_ensemble_members_must_share_the_run_s_shift(tmp_path):
    run, close, far, unshifted = (tmp_path / name for name in ("run", "close", "far", "unshifted"))
    for folder, shift in ((run, [0.13, 0.64]), (close, [0.11, 0.66]), (far, [0.13, 0.0])):
        resolve_image_shift(shift, [], folder.mkdir() or folder, 2)
    unshifted.mkdir()
    assert saved_image_shift(run, 2, [close]) == [0.13, 0.64]  # 0.02 px apart: the run's shift
    with pytest.raises(
        InputError,
        match=r"far.image_shift.json: ensemble member was trained on images shifted by \[0.13, 0.0\]",
    ):
        saved_image_shift(run, 2, [close, far])
    with pytest.raises(InputError, match=r"unshifted.image_shift.json: .*shifted by \[0.0, 0.0\] px"):
        saved_image_shift(run, 2, [unshifted])
