"""Every ``configs/augment/*.json`` preset parses over every bundle and keeps image, label, weight aligned.

Registration check: the image is the label as a float (a few discs or balls), so after any spatial
transform that moves both alike, ``label == (image > 0.5)`` except where bilinear interpolation of the
image's edges (or, in ``full``, the intensity transforms) crosses 0.5 differently from the nearest-neighbour
label: at most ``TOLERANCE`` of the pixels (measured: at most 0.5 % for geometric and elastic, 2 % for full,
over 20 seeds). The check is sensitive: the transformed image disagrees with the *untransformed* label on many
times more pixels (asserted), which is what a label left behind (or moved differently) would give.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import (
    Compose,
    MapTransform,
    Rand2DElasticd,
    RandAffined,
    RandCropByPosNegLabeld,
    RandSpatialCropd,
    RandSpatialCropSamplesd,
)

from app.paths import REPO_ROOT
from app.transforms import AUGMENTATION_PRESETS, Rand3DElasticd, augmentation_preset

AUGMENT_DIR = REPO_ROOT / "configs" / "augment"
BUNDLES = ("em", "ct", "mri")
CROPS = {"em": RandSpatialCropSamplesd, "ct": RandCropByPosNegLabeld, "mri": RandSpatialCropd}
KEYS = {"em": ("image", "label", "weight"), "ct": ("image", "label"), "mri": ("image", "label")}
TOLERANCE = 0.03
# synthetic patch sizes: EM 2D (its tile_size), MRI 3D (its patch_size)
SIZES = {"em": 64, "mri": [32, 32, 32]}


def _parser(bundle: str, preset: str | None = None) -> ConfigParser:
    parser = ConfigParser()
    parser.read_meta(REPO_ROOT / "bundles" / bundle / "metadata.json")
    files = [REPO_ROOT / "bundles" / bundle / "train.json"]
    if preset is not None:
        files.append(AUGMENT_DIR / f"{preset}.json")
    parser.read_config([str(f) for f in files])
    return parser


def _blobs(spatial: tuple[int, ...]) -> torch.Tensor:
    """``(1, *spatial)`` float mask of three discs (2D) or balls (3D), about a third of the patch."""
    grid = np.meshgrid(*[np.arange(s) for s in spatial], indexing="ij")
    mask = np.zeros(spatial, bool)
    for centre, radius in (((0.3, 0.3, 0.4), 0.22), ((0.7, 0.6, 0.5), 0.25), ((0.3, 0.75, 0.7), 0.15)):
        dist2 = sum((g - c * s) ** 2 for g, c, s in zip(grid, centre[: len(spatial)], spatial, strict=True))
        mask |= dist2 < (radius * min(spatial)) ** 2
    return torch.from_numpy(mask.astype(np.float32))[None]


def _apply(bundle: str, preset: str, seed: int) -> tuple[dict, torch.Tensor]:
    """Run the bundle's preset with every probability 1 on a synthetic patch; return output and the mask."""
    parser = _parser(bundle, preset)
    parser["train#augmentation#prob"] = 1.0
    if bundle == "em":
        parser["tile_size"] = SIZES["em"]
    else:
        parser["patch_size"] = SIZES[bundle]
    spatial = tuple(parser.get_parsed_content("patch_size"))
    mask = _blobs(spatial)
    data = {"image": mask.clone(), "label": mask.clone()}
    if bundle == "em":
        data["weight"] = 1.0 + 2.0 * mask  # the U-Net weight map: interpolated like the image
    transform = Compose(parser.get_parsed_content("train#augmentation"))
    transform.set_random_state(seed)
    return transform(data), mask


def _mismatch(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.bool() != b.bool()).float().mean().item()


def test_the_presets_are_the_documented_ones():
    assert {p.stem for p in AUGMENT_DIR.glob("*.json")} == set(AUGMENTATION_PRESETS)
    docs = (REPO_ROOT / "docs" / "losses_and_augmentation.md").read_text()
    assert all(f"configs/augment/{name}.json" in docs for name in AUGMENTATION_PRESETS)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_bundle_crop_is_its_own_key_before_the_default_augmentation(bundle):
    parser = _parser(bundle)
    if bundle == "mri":
        parser["in_channels"] = 2  # the bundle counts them in its datalist, which needs the demo data
    crop = parser.get_parsed_content("train#crop")
    assert isinstance(crop, CROPS[bundle]) and tuple(crop.keys) == KEYS[bundle]
    augmentation = parser.get_parsed_content("train#augmentation")
    assert augmentation and not any(isinstance(t, tuple(CROPS.values())) for t in augmentation)
    transforms = parser.get_parsed_content("train#preprocessing").transforms
    assert transforms[-len(augmentation) - 1] is crop
    assert list(transforms[-len(augmentation) :]) == augmentation


@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize("preset", AUGMENTATION_PRESETS)
def test_preset_instantiates_on_bundle(preset, bundle):
    augmentation = _parser(bundle, preset).get_parsed_content("train#augmentation")
    assert isinstance(augmentation, list) and all(isinstance(t, MapTransform) for t in augmentation)
    assert (preset == "none") == (augmentation == [])
    spatial = [t for t in augmentation if "label" in t.keys]
    assert all(tuple(t.keys) == KEYS[bundle] for t in spatial)
    intensity = [t for t in augmentation if "label" not in t.keys]
    assert all(tuple(t.keys) == ("image",) for t in intensity)
    assert (len(intensity) > 0) == (preset in ("intensity", "full"))
    elastic = [type(t) for t in augmentation if isinstance(t, (Rand2DElasticd, Rand3DElasticd))]
    expected = [Rand2DElasticd if bundle == "em" else Rand3DElasticd] if preset in ("elastic", "full") else []
    assert elastic == expected
    for t in augmentation:
        if isinstance(t, (RandAffined, Rand2DElasticd, Rand3DElasticd)):
            assert tuple(t.mode)[KEYS[bundle].index("label")] == "nearest"


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("bundle", ["em", "mri"], ids=["2d", "3d"])
@pytest.mark.parametrize("preset", ["geometric", "elastic", "full"])
def test_preset_keeps_image_and_label_registered(preset, bundle, seed):
    out, mask = _apply(bundle, preset, seed)
    assert out["image"].shape == out["label"].shape == mask.shape
    assert _mismatch(out["label"], out["image"] > 0.5) <= TOLERANCE
    if bundle == "em":
        assert _mismatch(out["label"], out["weight"] > 2.0) <= TOLERANCE
    # the transform did move things, by far more than the tolerance
    assert _mismatch(mask, out["image"] > 0.5) > 3 * _mismatch(out["label"], out["image"] > 0.5)
    assert _mismatch(mask, out["label"]) > TOLERANCE / 3
    assert set(out["label"].unique().tolist()) <= {0.0, 1.0}  # nearest-neighbour: still a label


@pytest.mark.parametrize("bundle", ["em", "mri"], ids=["2d", "3d"])
def test_intensity_changes_only_the_image(bundle):
    out, mask = _apply(bundle, "intensity", seed=0)
    assert torch.equal(out["label"], mask)
    assert not torch.equal(out["image"], mask)
    assert _mismatch(out["label"], out["image"] > 0.5) <= TOLERANCE


@pytest.mark.parametrize("bundle", BUNDLES)
def test_none_is_the_crop_only(bundle):
    parser = _parser(bundle, "none")
    if bundle == "em":
        parser["tile_size"] = 8
    else:
        parser["patch_size"] = [8, 8, 8]
    crop = parser.get_parsed_content("train#crop")
    pipeline = Compose([crop, *parser.get_parsed_content("train#augmentation")])
    spatial = (16, 16) if bundle == "em" else (16, 16, 16)
    image = torch.arange(float(np.prod(spatial))).view(1, *spatial)
    data = {key: image.clone() for key in KEYS[bundle]}
    data["label"] = (image % 2 == 0).float()
    out = pipeline(data)
    out = out[0] if isinstance(out, list) else out
    assert out["image"].shape[1:] == (8,) * len(spatial)
    # a crop is a window: the output is a contiguous block of the input, labels untouched
    start = [int(s) for s in torch.nonzero(image[0] == out["image"][0].flatten()[0])[0]]
    window = tuple(slice(s, s + 8) for s in start)
    assert torch.equal(out["image"][0], image[0][window])
    assert torch.equal(out["label"][0], data["label"][0][window])


def test_factory_errors():
    with pytest.raises(ValueError, match="one of \\('none', 'geometric', 'intensity', 'elastic', 'full'\\)"):
        augmentation_preset("strong", ["image"], ["bilinear"], [64, 64])
    with pytest.raises(ValueError, match="one mode per key"):
        augmentation_preset("elastic", ["image", "label"], ["bilinear"], [64, 64])
    with pytest.raises(ValueError, match="2 or 3 spatial dims"):
        augmentation_preset("geometric", ["image"], ["bilinear"], [64])
