"""Training augmentation presets for 2D and 3D bundles, built from MONAI dictionary transforms.

A preset is selected with an overlay ``configs/augment/<name>.json`` that replaces a bundle's
``train#augmentation`` (the transforms after the random crop ``train#crop``). The bundle supplies the keys to
keep aligned (``aug_keys``), their interpolation modes (``aug_modes``: nearest-neighbour for labels) and the
crop size (``patch_size``), so one preset serves the 2D EM bundle (image, label, weight map) and the 3D CT
and MRI bundles (image, label).

Reference for the elastic deformation:
    O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation",
    MICCAI 2015, https://arxiv.org/abs/1505.04597 (section 3.1: random displacements on a coarse 3 x 3 grid,
    10 pixels standard deviation, bicubic interpolation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from monai.transforms import (
    MapTransform,
    Rand2DElasticd,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandScaleIntensityFixedMeand,
    RandShiftIntensityd,
)

from app.transforms.elastic import Rand3DElasticd

__all__ = ["AUGMENTATION_PRESETS", "augmentation_preset"]

AUGMENTATION_PRESETS = ("none", "geometric", "intensity", "elastic", "full")

# 15 degrees and 15 % (nnU-Net uses 30 degrees and 0.7-1.4 on whole cases; these act on patches).
ROTATION = math.pi / 12
SCALING = 0.15
# 2D (paper): Gaussian control-point displacements of 10 px on a grid spaced half the patch.
ELASTIC_2D_MAGNITUDE = (10.0, 10.0)
# 3D: MONAI smooths a dense random field instead; these give a mean displacement of about 3.5-6 voxels
# (measured on a 48^3 grid), close to 3D U-Net's 4-voxel grid displacements (Cicek et al. 2016).
ELASTIC_3D_SIGMA = (6.0, 8.0)
ELASTIC_3D_MAGNITUDE = (300.0, 500.0)


def augmentation_preset(
    name: str,
    keys: Sequence[str],
    modes: Sequence[str],
    patch_size: Sequence[int],
    image_key: str = "image",
    prob: float | None = None,
) -> list[MapTransform]:
    """The MONAI transforms of augmentation preset ``name``, for patches of ``patch_size``.

    - ``"none"``: no transform;
    - ``"geometric"``: a flip along each spatial axis (p 0.5 each), then rotation by up to 15 degrees about
      each axis and per-axis scaling by up to 15 % (``RandAffined``, p 0.3);
    - ``"intensity"`` (``image_key`` only): brightness shift by up to 0.1, contrast around the mean by up to
      25 %, gamma in ``[0.7, 1.5]`` (p 0.3 each) and Gaussian noise, std up to 0.1 (p 0.15);
    - ``"elastic"`` (p 0.3): in 2D ``Rand2DElasticd``, the paper's deformation: control points spaced half
      the patch (a coarse 3 x 3 grid over it), displaced by a Gaussian of 10 px standard deviation,
      interpolated bicubically; in 3D ``Rand3DElasticd`` (MONAI's, faster on CPU: ``app.transforms.elastic``),
      a Gaussian-smoothed dense field (see ``ELASTIC_3D_*``);
    - ``"full"``: geometric, then elastic, then intensity.

    Spatial transforms act on all ``keys`` with the same random parameters, interpolating ``keys[i]`` with
    ``modes[i]`` (``"nearest"`` for labels keeps them integer and aligned with the image) and reflecting at
    the border.

    Args:
        name: one of ``AUGMENTATION_PRESETS``.
        keys: the keys of the arrays ``(C, *patch_size)`` to keep aligned, e.g. ``["image", "label"]``.
        modes: interpolation mode of each key, e.g. ``["bilinear", "nearest"]``.
        patch_size: spatial size of the patches (2 or 3 values); sets 2D or 3D and the 2D control grid.
        image_key: the key the intensity transforms change.
        prob: if given, the probability of every transform instead of the defaults above (1.0 always
            applies every one).

    Raises:
        ValueError: on an unknown ``name``, ``modes`` not matching ``keys``, or a ``patch_size`` that is not
            2D or 3D.

    Example::

        augmentation_preset("elastic", ["image", "label", "weight"], ["bilinear", "nearest", "bilinear"],
                            patch_size=[572, 572])  # 2D EM tiles
        augmentation_preset("full", ["image", "label"], ["bilinear", "nearest"], patch_size=[96, 96, 96])
    """
    if name not in AUGMENTATION_PRESETS:
        raise ValueError(f"augmentation preset must be one of {AUGMENTATION_PRESETS}, got {name!r}.")
    if len(modes) != len(keys):
        raise ValueError(f"modes {list(modes)} must give one mode per key of {list(keys)}.")
    if len(patch_size) not in (2, 3):
        raise ValueError(f"patch_size must have 2 or 3 spatial dims, got {list(patch_size)}.")

    def p(default: float) -> float:
        return default if prob is None else prob

    keys, modes = list(keys), list(modes)
    geometric = _geometric(keys, modes, len(patch_size), p(0.5), p(0.3))
    elastic = [_elastic(keys, modes, patch_size, p(0.3))]
    intensity = _intensity(image_key, p(0.3), p(0.15))
    return {
        "none": [],
        "geometric": geometric,
        "intensity": intensity,
        "elastic": elastic,
        "full": geometric + elastic + intensity,
    }[name]


def _geometric(
    keys: list[str], modes: list[str], spatial_dims: int, flip_prob: float, affine_prob: float
) -> list[MapTransform]:
    """Flips along every spatial axis, then rotation and scaling."""
    n_angles = 1 if spatial_dims == 2 else 3
    flips = [RandFlipd(keys, prob=flip_prob, spatial_axis=axis) for axis in range(spatial_dims)]
    affine = RandAffined(
        keys,
        prob=affine_prob,
        rotate_range=[ROTATION] * n_angles,
        scale_range=[SCALING] * spatial_dims,
        mode=modes,
        padding_mode="reflection",
    )
    return [*flips, affine]


def _elastic(keys: list[str], modes: list[str], patch_size: Sequence[int], prob: float) -> MapTransform:
    """The 2D coarse-grid or the 3D dense elastic deformation."""
    if len(patch_size) == 2:
        return Rand2DElasticd(
            keys,
            spacing=[max(1, size // 2) for size in patch_size],
            magnitude_range=ELASTIC_2D_MAGNITUDE,
            prob=prob,
            mode=modes,
            padding_mode="reflection",
        )
    return Rand3DElasticd(
        keys,
        sigma_range=ELASTIC_3D_SIGMA,
        magnitude_range=ELASTIC_3D_MAGNITUDE,
        prob=prob,
        mode=modes,
        padding_mode="reflection",
    )


def _intensity(image_key: str, prob: float, noise_prob: float) -> list[MapTransform]:
    """Brightness, contrast, gamma and noise of the image."""
    return [
        RandShiftIntensityd(image_key, offsets=0.1, prob=prob),
        RandScaleIntensityFixedMeand(image_key, factors=0.25, prob=prob),
        RandAdjustContrastd(image_key, gamma=(0.7, 1.5), prob=prob),
        RandGaussianNoised(image_key, std=0.1, prob=noise_prob),
    ]
