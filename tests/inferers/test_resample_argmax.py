"""ResampleArgmaxd / resample_argmax give the labels of MONAI's dense resampling + argmax.

Tolerance: labels are identical wherever the two highest class scores of the reference (float64
``SpatialResample``) differ by more than 1e-5; closer scores may break the other way, because the fast
path interpolates in float32. Nearest-neighbour geometries avoid source coordinates exactly half-way
between two voxels, where the dense path's rounding depends on float64 error in its normalised grid.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Activationsd,
    AsDiscreted,
    Compose,
    CropForegroundd,
    EnsureTyped,
    Invertd,
    LoadImaged,
    Orientationd,
    Spacingd,
    SpatialResample,
)

from app.data.demo import make_ct_demo
from app.inferers.resample_argmax import ResampleArgmaxd, axis_aligned_map, channel_argmax, resample_argmax

MARGIN = 1e-5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _affine(scales, flips=(1, 1, 1), perm=(0, 1, 2), offset=(0.0, 0.0, 0.0)) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = np.eye(3)[:, list(perm)] @ np.diag(np.multiply(scales, flips))
    affine[:3, 3] = offset
    return affine


def _reference(probs, src_affine, dst_affine, shape, mode, padding_mode) -> torch.Tensor:
    dense = SpatialResample(mode=mode, padding_mode=padding_mode, dtype=torch.float64)(
        MetaTensor(probs, affine=torch.as_tensor(src_affine)),
        dst_affine=torch.as_tensor(dst_affine),
        spatial_size=shape,
    )
    return dense.as_tensor()


def _assert_labels_match(label: torch.Tensor, dense: torch.Tensor) -> None:
    """Equal labels wherever the reference's top two scores are more than MARGIN apart."""
    top2 = dense.topk(2, dim=0).values if dense.shape[0] > 1 else None
    decided = torch.ones_like(label[0], dtype=torch.bool) if top2 is None else (top2[0] - top2[1]) > MARGIN
    expected = torch.argmax(dense, dim=0, keepdim=True).to(label.dtype)
    assert label.shape == expected.shape
    assert torch.equal(label[0][decided], expected[0][decided])
    assert decided.sum() > 1000  # (zeros padding ties every class outside the source grid)


def test_channel_argmax_matches_torch_argmax_and_ties_go_to_the_first_channel():
    scores = torch.randint(0, 3, (4, 5, 6, 7)).float()  # many ties
    expected = torch.argmax(scores, dim=0, keepdim=True)
    label = channel_argmax(scores)
    assert label.dtype == torch.uint8 and label.shape == (1, 5, 6, 7)
    assert torch.equal(label.long(), expected)


def test_channel_argmax_rejects_too_many_channels_for_the_dtype():
    with pytest.raises(ValueError, match="do not fit"):
        channel_argmax(torch.rand(300, 2, 2), torch.uint8)


@pytest.mark.parametrize(
    "dst, expected",
    [
        (_affine((1, 1, 1)), [(0, 1.0, 0.0), (1, 1.0, 0.0), (2, 1.0, 0.0)]),
        (_affine((0.5, 2, 1), flips=(-1, 1, 1)), [(0, -0.5, 0.0), (1, 2.0, 0.0), (2, 1.0, 0.0)]),
        (_affine((1, 1, 1), perm=(2, 0, 1)), [(2, 1.0, 0.0), (0, 1.0, 0.0), (1, 1.0, 0.0)]),
    ],
)
def test_axis_aligned_map(dst, expected):
    np.testing.assert_allclose(np.array(axis_aligned_map(np.eye(4), dst)), np.array(expected), atol=1e-12)


def test_axis_aligned_map_rejects_a_rotation():
    angle = np.deg2rad(3)
    rotation = np.eye(4)
    rotation[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    assert axis_aligned_map(np.eye(4), rotation) is None


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("padding_mode", ["border", "zeros"])
@pytest.mark.parametrize(
    "src, dst, shape",
    [
        # coarse grid -> finer input grid, with flips, as after Orientationd + Spacingd
        (
            _affine((1.5, 1.5, 2.0), offset=(-3.13, 2.27, 1.71)),
            _affine((0.8, 0.8, 2.0), (-1, -1, 1), offset=(20.3, 18.1, 0.37)),
            (27, 23, 9),
        ),
        # permuted axes and a field of view beyond the source (padding matters)
        (
            _affine((1.0, 1.2, 0.9)),
            _affine((0.7, 1.1, 1.3), perm=(1, 2, 0), offset=(-2.11, -3.07, -1.19)),
            (19, 21, 17),
        ),
        # an oblique grid: the dense fallback
        (
            _affine((1.5, 1.5, 2.0)),
            np.array([[0.8, -0.05, 0, 1], [0.05, 0.8, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]]),
            (20, 20, 8),
        ),
    ],
    ids=["flips", "permuted", "oblique"],
)
def test_resample_argmax_matches_dense_resampling_then_argmax(mode, padding_mode, src, dst, shape):
    torch.manual_seed(0)
    probs = torch.softmax(3 * torch.randn(3, 16, 14, 10), dim=0)
    label = resample_argmax(probs, src, dst, shape, mode, padding_mode)
    _assert_labels_match(label, _reference(probs, src, dst, shape, mode, padding_mode))


def test_resample_argmax_works_in_slabs_of_any_size(monkeypatch):
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(2, 12, 12, 12), dim=0)
    src, dst = _affine((1.5, 1.5, 2.0)), _affine((1.0, 1.0, 1.0), (1, -1, 1))
    whole = resample_argmax(probs, src, dst, (18, 18, 23))
    monkeypatch.setattr("app.inferers.resample_argmax._SLAB_VOXELS", 18 * 18 * 3)  # slabs of 3 slices
    assert torch.equal(resample_argmax(probs, src, dst, (18, 18, 23)), whole)


@pytest.mark.parametrize("kwargs", [{"mode": "bicubic"}, {"padding_mode": "reflection"}])
def test_unsupported_modes_are_rejected_early(kwargs):
    with pytest.raises(ValueError, match="must be one of"):
        resample_argmax(torch.rand(2, 4, 4, 4), np.eye(4), np.eye(4), (4, 4, 4), **kwargs)
    with pytest.raises(ValueError, match="must be one of"):
        ResampleArgmaxd("pred", **kwargs)


@pytest.fixture(scope="module")
def ct_case(tmp_path_factory):
    """A small generated CT case: oblique in-plane direction, LPS-like flips, 4 mm slices."""
    out = make_ct_demo(tmp_path_factory.mktemp("ct"), n_cases=1, shape=(48, 40, 12))
    return str(out / "imagesTr" / "ct_000.nii.gz")


def _preprocessing(crop: bool = False) -> Compose:
    transforms = [
        LoadImaged("image", ensure_channel_first=True),
        Orientationd("image", axcodes="RAS"),
        Spacingd("image", pixdim=(1.5, 1.5, 2.0), mode="bilinear"),
    ]
    if crop:
        transforms.append(CropForegroundd("image", source_key="image", select_fn=lambda x: x > 0))
    return Compose([*transforms, EnsureTyped("image")])


def _with_prediction(preprocessing: Compose, path: str) -> dict:
    data = preprocessing({"image": path})
    image = data["image"]
    torch.manual_seed(0)
    logits = torch.nn.functional.avg_pool3d(torch.randn(1, 2, *image.shape[1:]), 3, 1, 1)[0]
    pred = MetaTensor(4 * logits, meta=dict(image.meta), applied_operations=list(image.applied_operations))
    return Activationsd("pred", softmax=True)({**data, "pred": pred})


def test_resample_argmaxd_gives_the_labels_of_invertd_then_argmax(ct_case):
    preprocessing = _preprocessing()
    data = _with_prediction(preprocessing, ct_case)
    inverted = Invertd("pred", transform=preprocessing, orig_keys="image", nearest_interp=False)(dict(data))
    expected = AsDiscreted("pred", argmax=True)(dict(inverted))["pred"]
    out = ResampleArgmaxd("pred")(dict(data))["pred"]
    assert isinstance(out, MetaTensor) and out.dtype == torch.uint8
    assert out.shape == expected.shape == (1, 48, 40, 12)
    torch.testing.assert_close(out.affine, expected.affine.to(torch.float64), atol=1e-6, rtol=0)
    assert out.meta["filename_or_obj"] == ct_case
    _assert_labels_match(out, inverted["pred"].as_tensor())


def test_resample_argmaxd_refuses_preprocessing_that_is_not_a_grid_change(ct_case):
    data = _with_prediction(_preprocessing(crop=True), ct_case)
    with pytest.raises(ValueError, match="CropForeground.*Invertd"):
        ResampleArgmaxd("pred")(data)
