"""Label offset: a hand-made membrane image whose label is shifted by known amounts."""

import json

import numpy as np
import pytest

from benchmarks.label_offset import label_offset, main


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


def test_the_isbi_slices_sit_off_along_y(shared_data, tmp_path):
    assert main(["--data", str(shared_data / "isbi2012"), "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "label_offset.json").read_text())
    assert len(record["slices"]) == 24
    x, y = record["median"]
    assert abs(x) < 0.3 and 0.4 < y < 0.9
