"""Tests for overlap-tile inference (Ronneberger et al. 2015, Fig. 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.inferers import Inferer
from torch import nn

from app.inferers import OverlapTileInferer, mirror_pad
from app.networks import UNet2015


class CropNet(nn.Module):
    """Identity "network" with valid-padding geometry: drops ``m`` voxels per side; counts its calls."""

    def __init__(self, m: int, expose_margin: bool = False) -> None:
        super().__init__()
        self.m = m
        self.calls: list[tuple[int, ...]] = []
        if expose_margin:
            self.margin = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        return x[(..., *(slice(self.m, s - self.m) for s in x.shape[2:]))]


def _ints(*shape: int) -> torch.Tensor:
    """Integer-valued floats: averages of equal predictions are then exact."""
    return torch.randint(-100, 100, shape, generator=torch.Generator().manual_seed(0)).float()


@pytest.fixture(scope="module")
def unet2d() -> UNet2015:
    torch.manual_seed(0)
    return UNet2015(spatial_dims=2, in_channels=1, out_channels=3, features=4, depth=2).eval()


def test_is_monai_inferer():
    assert isinstance(OverlapTileInferer(572), Inferer)


def test_single_tile_equals_direct_pass(unet2d):
    x = torch.rand(1, 1, 24, 24)  # exactly one 24x24 output tile of a 64x64 input tile (margin 20)
    with torch.no_grad():
        out = OverlapTileInferer(64)(x, unet2d)
        direct = unet2d(F.pad(x, (20, 20, 20, 20), mode="reflect"))
    assert out.shape == (1, 3, 24, 24)
    assert torch.equal(out, direct)


def test_tiles_equal_full_image_pass(unet2d):
    # tile shifts (20) are multiples of 2**depth, so stitched tiles equal one pass over the padded image
    x = torch.rand(2, 1, 40, 60)
    with torch.no_grad():
        out = OverlapTileInferer(60, sw_batch_size=4)(x, unet2d)
        direct = unet2d(F.pad(x, (20, 20, 20, 20), mode="reflect"))
    assert out.shape == (2, 3, 40, 60)
    torch.testing.assert_close(out, direct, atol=1e-5, rtol=1e-5)


def test_odd_sizes_2d(unet2d):
    with torch.no_grad():
        out = OverlapTileInferer(64, sw_batch_size=3, overlap=0.25, mode="gaussian")(
            torch.rand(2, 1, 37, 53), unet2d
        )
    assert out.shape == (2, 3, 37, 53)
    assert torch.isfinite(out).all()


def test_odd_sizes_3d():
    torch.manual_seed(0)
    net = UNet2015(spatial_dims=3, in_channels=2, out_channels=2, features=2, depth=2).eval()
    with torch.no_grad():
        out = OverlapTileInferer(48, sw_batch_size=6)(torch.rand(1, 2, 13, 17, 11), net)
    assert out.shape == (1, 2, 13, 17, 11)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("shape", [(1, 1, 37, 53), (2, 3, 5, 8), (3, 1, 40, 40), (1, 2, 1, 9), (2, 1, 64, 1)])
@pytest.mark.parametrize("roi", [7, 11, (10, 15)])
@pytest.mark.parametrize("overlap", [0.0, 0.3, 0.5, 0.9])
@pytest.mark.parametrize("sw_batch_size", [1, 4])
def test_stitching_is_exact_2d(shape, roi, overlap, sw_batch_size):
    x = _ints(*shape)
    out = OverlapTileInferer(roi, margin=3, sw_batch_size=sw_batch_size, overlap=overlap)(x, CropNet(3))
    assert torch.equal(out, x)


@pytest.mark.parametrize("shape", [(1, 1, 13, 17, 11), (2, 2, 4, 9, 6)])
@pytest.mark.parametrize("roi, overlap", [(6, 0.0), ((5, 8, 7), 0.5)])
def test_stitching_is_exact_3d(shape, roi, overlap):
    x = _ints(*shape)
    out = OverlapTileInferer(roi, margin=1, sw_batch_size=5, overlap=overlap)(x, CropNet(1))
    assert torch.equal(out, x)


@pytest.mark.parametrize("padding_mode", ["reflect", "symmetric", "replicate", "constant"])
def test_stitching_with_gaussian_blending_and_padding_modes(padding_mode):
    x = torch.rand(2, 2, 23, 31)
    inferer = OverlapTileInferer(
        12, margin=2, sw_batch_size=3, overlap=0.6, mode="gaussian", padding_mode=padding_mode
    )
    torch.testing.assert_close(inferer(x, CropNet(2)), x)


@pytest.mark.parametrize("shape", [(1, 1, 19, 26), (2, 1, 9, 14, 5)])
def test_tta_with_equivariant_network_equals_plain(shape):
    x = _ints(*shape)
    plain = OverlapTileInferer(10, margin=2)(x, CropNet(2))
    net = CropNet(2)
    with_tta = OverlapTileInferer(10, margin=2, tta=True)(x, net)
    assert torch.equal(with_tta, plain)
    assert torch.equal(with_tta, x)
    assert len(net.calls) >= 8  # 8 augmentations, at least one call each


def test_tta_averages_rotations(unet2d):
    x = torch.rand(1, 1, 24, 24)
    with torch.no_grad():
        out = OverlapTileInferer(64, tta=True)(x, unet2d)
        rotated = OverlapTileInferer(64, tta=True)(torch.rot90(x, 1, (2, 3)), unet2d)
    # the 2D augmentations form a group, so TTA predictions are rotation-equivariant
    torch.testing.assert_close(torch.rot90(out, 1, (2, 3)), rotated, atol=1e-5, rtol=1e-5)


def test_margin_probed_once_and_taken_from_network():
    x = _ints(1, 1, 16, 16)
    net = CropNet(4)
    inferer = OverlapTileInferer(16, sw_batch_size=100)
    assert torch.equal(inferer(x, net), x)
    assert net.calls[0] == (1, 1, 16, 16)  # the probe
    assert net.calls[1] == (4, 1, 16, 16)  # the 2x2 tiles of 8x8, in one batch
    assert torch.equal(inferer(x, net), x)
    assert len(net.calls) == 3  # the probed margin is cached

    exposed = CropNet(4, expose_margin=True)
    assert torch.equal(inferer(x, exposed), x)
    assert exposed.calls == [(4, 1, 16, 16)]  # network.margin is used, no probe

    unet = UNet2015(features=2, depth=2).eval()
    with torch.no_grad():  # the lambda hides unet.margin: the probe must find 20 on its own
        assert OverlapTileInferer(60)(torch.rand(1, 1, 30, 30), lambda t: unet(t)).shape == (1, 2, 30, 30)


def test_same_padding_network_with_explicit_margin():
    torch.manual_seed(0)
    net = UNet2015(features=2, depth=2, padding="same").eval()
    with torch.no_grad():
        out = OverlapTileInferer(32, margin=8)(torch.rand(1, 1, 40, 33), net)  # 32 -> cropped to 16
        plain = OverlapTileInferer(32)(torch.rand(1, 1, 40, 33), net)  # margin 0: plain tiling
    assert out.shape == plain.shape == (1, 2, 40, 33)


def test_deep_supervision_output_and_metatensor():
    x = MetaTensor(_ints(1, 1, 11, 12), affine=torch.diag(torch.tensor([2.0, 3.0, 1.0])))

    def network(tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return tiles[..., 1:-1, 1:-1], torch.zeros(1)

    out = OverlapTileInferer(6, margin=1)(x, network)
    assert isinstance(out, MetaTensor)
    assert torch.equal(out.affine, x.affine)
    assert torch.equal(out.as_tensor(), x.as_tensor())


def test_network_args_are_forwarded():
    def network(tiles: torch.Tensor, scale: float, *, shift: float) -> torch.Tensor:
        return tiles[..., 2:-2] * scale + shift

    x = _ints(2, 1, 15)
    out = OverlapTileInferer(9, margin=2)(x, network, 2.0, shift=1.0)
    assert torch.equal(out, x * 2 + 1)


@pytest.mark.parametrize(
    "mode, np_mode",
    [("reflect", "reflect"), ("symmetric", "symmetric"), ("replicate", "edge"), ("constant", "constant")],
)
def test_mirror_pad_matches_numpy_for_any_pad(mode, np_mode):
    x = torch.rand(2, 3, 4, 7)
    before, after = (11, 0), (3, 20)  # larger than the image: periodic mirroring
    expected = np.pad(x.numpy(), ((0, 0), (0, 0), (before[0], after[0]), (before[1], after[1])), mode=np_mode)
    assert torch.equal(mirror_pad(x, before, after, mode), torch.from_numpy(expected))


def test_mirror_pad_reflect_falls_back_to_replicate_on_size_one():
    x = torch.rand(1, 1, 1, 3)
    assert torch.equal(mirror_pad(x, (2, 0), (2, 0)), x.expand(1, 1, 5, 3))


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="overlap"):
        OverlapTileInferer(10, overlap=1.0)
    with pytest.raises(ValueError, match=r"'constant', 'gaussian'"):
        OverlapTileInferer(10, mode="mean")
    with pytest.raises(ValueError, match=r"'reflect', 'symmetric', 'replicate', 'constant'"):
        OverlapTileInferer(10, padding_mode="wrap")
    with pytest.raises(ValueError, match="roi_size"):
        OverlapTileInferer(0)
    with pytest.raises(ValueError, match="sw_batch_size"):
        OverlapTileInferer(10, sw_batch_size=0)
    with pytest.raises(ValueError, match="margin"):
        OverlapTileInferer(10, margin=-1)
    with pytest.raises(ValueError, match="must exceed 2 \\* margin"):
        OverlapTileInferer(10, margin=5)(torch.rand(1, 1, 8, 8), CropNet(5))
    with pytest.raises(ValueError, match="expected"):
        OverlapTileInferer(10, margin=2)(torch.rand(1, 1, 8, 8), CropNet(1))
    with pytest.raises(ValueError, match="spatial dims"):
        OverlapTileInferer((10, 10, 10), margin=2)(torch.rand(1, 1, 8, 8), CropNet(2))
    with pytest.raises(ValueError, match="cannot infer the margin"):
        OverlapTileInferer(10)(torch.rand(1, 1, 8, 8), lambda t: t[..., 1:, 1:])
