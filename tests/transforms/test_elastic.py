"""The fast 3D elastic deformation against MONAI's (same random state, same output)."""

from __future__ import annotations

import math

import pytest
import torch
from monai.networks.layers import GaussianFilter
from monai.transforms import Rand3DElasticd as MonaiRand3DElasticd

from app.transforms import Rand3DElasticd, gaussian_smooth


@pytest.mark.parametrize(
    ("shape", "sigma"),
    [
        ((2, 3, 17), 2.0),
        ((1, 2, 20, 15), (1.5, 3.0)),
        ((1, 3, 24, 19, 21), 6.0),
        ((2, 1, 9, 30, 12), (1.0, 2.5, 4.0)),
    ],
)
def test_gaussian_smooth_equals_monai_gaussian_filter(shape, sigma):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    expected = GaussianFilter(len(shape) - 2, sigma, 3.0)(x)
    result = gaussian_smooth(x, sigma)
    assert result.shape == x.shape
    assert torch.allclose(result, expected, atol=1e-6)


def test_gaussian_smooth_of_an_impulse_is_the_normalised_kernel():
    x = torch.zeros(1, 1, 31, 31, 31)
    x[0, 0, 15, 15, 15] = 1.0
    result = gaussian_smooth(x, 2.0)
    assert result.sum().item() == pytest.approx(1.0, abs=5e-3)  # kernels truncated at 3 sigma
    # separable and isotropic: the same profile along each axis through the centre
    profiles = [result[0, 0, :, 15, 15], result[0, 0, 15, :, 15], result[0, 0, 15, 15, :]]
    assert torch.allclose(profiles[0], profiles[1]) and torch.allclose(profiles[0], profiles[2])

    # MONAI's kernel integrates the Gaussian (sigma 2) over each voxel
    def k(i: int) -> float:
        return 0.5 * (math.erf((i + 0.5) / (2.0 * math.sqrt(2))) - math.erf((i - 0.5) / (2.0 * math.sqrt(2))))

    ratio = profiles[0][16].item() / profiles[0][15].item()
    assert ratio == pytest.approx(k(1) / k(0), rel=1e-4)


def test_gaussian_smooth_rejects_a_wrong_sigma():
    with pytest.raises(ValueError, match="sigma must give one value or 3"):
        gaussian_smooth(torch.zeros(1, 1, 4, 4, 4), (1.0, 2.0))


def _patch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    label = torch.zeros(1, 24, 28, 20)
    label[:, 6:18, 8:20, 5:15] = 1.0
    return {"image": torch.rand(1, 24, 28, 20, generator=generator), "label": label}


def _pair(prob: float) -> tuple[Rand3DElasticd, MonaiRand3DElasticd]:
    args = {
        "keys": ["image", "label"],
        "sigma_range": (5, 8),
        "magnitude_range": (50, 150),
        "prob": prob,
        "rotate_range": (0.2, 0.2, 0.2),
        "mode": ["bilinear", "nearest"],
        "padding_mode": "border",
    }
    fast, reference = Rand3DElasticd(**args), MonaiRand3DElasticd(**args)
    fast.set_random_state(7)
    reference.set_random_state(7)
    return fast, reference


def test_applied_deformation_equals_monai():
    fast, reference = _pair(1.0)
    for _ in range(2):
        data = _patch()
        result, expected = fast(data), reference(data)
        assert not torch.allclose(expected["image"], data["image"], atol=1e-2)  # it did deform
        assert torch.allclose(torch.as_tensor(result["image"]), torch.as_tensor(expected["image"]), atol=1e-5)
        assert torch.equal(torch.as_tensor(result["label"]), torch.as_tensor(expected["label"]))


def test_not_applied_returns_the_data_as_given():
    fast, _ = _pair(0.0)
    data = _patch()
    result = fast(data)
    assert result["image"] is data["image"] and result["label"] is data["label"]


def test_numpy_arrays_are_deformed_like_tensors():
    fast, reference = _pair(1.0)
    data = {key: value.numpy() for key, value in _patch().items()}
    result, expected = fast(data), reference(_patch())
    assert torch.allclose(torch.as_tensor(result["image"]), torch.as_tensor(expected["image"]), atol=1e-5)
