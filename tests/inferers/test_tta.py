"""Mirror and shift test-time augmentation: hand-computed averages, pass counts, metadata, bad axes."""

import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import SimpleInferer, SlidingWindowInferer

from app.inferers import MirrorTTAInferer, OverlapTileInferer, ShiftTTAInferer
from app.inferers.tta import apply_symmetry, flip_combinations, invert_symmetry, square_symmetries


class RampNet(torch.nn.Module):
    """Adds ``0, 1, 2, ...`` along the first spatial axis: not flip-invariant, so TTA changes its output."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        ramp = torch.arange(x.shape[2], dtype=x.dtype).view(1, 1, -1, *([1] * (x.ndim - 3)))
        return x + ramp


def test_mirroring_the_ramp_axis_averages_the_ramp_with_its_mirror():
    x = torch.rand(1, 1, 4, 3, 2)
    net = RampNet()
    out = MirrorTTAInferer(SimpleInferer(), spatial_axes=[0])(x, net)
    # (x + [0,1,2,3]) and flip(flip(x) + [0,1,2,3]) = x + [3,2,1,0]: mean x + 1.5 everywhere
    torch.testing.assert_close(out, x + 1.5)
    assert net.calls == 2


def test_mirroring_other_axes_leaves_the_ramp_and_costs_two_to_the_k_passes():
    x = torch.rand(2, 1, 4, 3, 2)
    net = RampNet()
    out = MirrorTTAInferer(SimpleInferer(), spatial_axes=(1, 2))(x, net)
    torch.testing.assert_close(out, RampNet()(x))
    assert net.calls == 4


def test_no_axes_is_one_plain_pass_of_the_wrapped_inferer():
    x = torch.rand(1, 1, 8, 8, 8)
    inner = SlidingWindowInferer(roi_size=(4, 4, 4), overlap=0.5, mode="gaussian")
    net, reference = RampNet(), RampNet()
    torch.testing.assert_close(MirrorTTAInferer(inner)(x, net), inner(x, reference))
    assert net.calls == reference.calls


def test_flip_invariant_network_gives_the_plain_prediction_with_sliding_windows():
    x = torch.rand(1, 2, 9, 7, 6)
    conv = torch.nn.Conv3d(2, 3, kernel_size=1)
    inner = SlidingWindowInferer(roi_size=(4, 4, 4), overlap=0.25)
    with torch.no_grad():
        torch.testing.assert_close(MirrorTTAInferer(inner, (0, 1, 2))(x, conv), conv(x), atol=1e-6, rtol=1e-5)


def test_metadata_is_kept_and_deep_supervision_reduced_to_the_main_output():
    affine = torch.diag(torch.tensor([2.0, 3.0, 4.0, 1.0]))
    x = MetaTensor(torch.rand(1, 1, 4, 4, 4), affine=affine)
    out = MirrorTTAInferer(SimpleInferer(), (0,))(x, lambda t: [t * 2, t])
    assert isinstance(out, MetaTensor)
    assert torch.equal(out.affine.float(), affine)
    torch.testing.assert_close(out.as_tensor(), x.as_tensor() * 2)


@pytest.mark.parametrize("axes", [(-1,), (0, 0), (0.5,)])
def test_bad_axes_are_refused(axes):
    with pytest.raises(ValueError, match="spatial_axes"):
        MirrorTTAInferer(SimpleInferer(), axes)


def test_an_axis_the_input_lacks_is_refused_with_the_shape():
    with pytest.raises(ValueError, match=r"2 spatial dims \(5, 5\)"):
        MirrorTTAInferer(SimpleInferer(), (2,))(torch.rand(1, 1, 5, 5), RampNet())


def test_symmetries_are_distinct_and_invert_exactly():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    sym2d = square_symmetries()
    images = {tuple(apply_symmetry(x, s).flatten().tolist()) for s in sym2d}
    assert len(sym2d) == 8 and len(images) == 8 and sym2d[0] == (0, ())
    for s in sym2d:
        torch.testing.assert_close(invert_symmetry(apply_symmetry(x, s), s), x)
    assert flip_combinations((0, 2)) == [(0, ()), (0, (2,)), (0, (4,)), (0, (2, 4))]


def test_overlap_tile_tta_still_averages_the_eight_square_symmetries():
    x = torch.rand(1, 1, 12, 12)
    out = OverlapTileInferer(roi_size=12, margin=0, tta=True)(x, RampNet())
    # mapped back, the ramp 0..11 runs forwards and backwards along each axis twice: mean 5.5 everywhere
    torch.testing.assert_close(out, x + 5.5)


def test_overlap_tile_tta_flip_axes_mirrors_only_those_axes():
    x = torch.rand(1, 1, 12, 10)
    ramp_axis, other_axis = RampNet(), RampNet()
    # flips of the ramp's axis: (x + ramp) and x + mirrored ramp, mean x + 5.5; two passes, no turns
    torch.testing.assert_close(
        OverlapTileInferer(12, margin=0, tta=True, tta_flip_axes=[0])(x, ramp_axis), x + 5.5
    )
    assert ramp_axis.calls == 2
    # flips of the other axis leave the ramp as it is
    out = OverlapTileInferer(12, margin=0, tta=True, tta_flip_axes=(1,))(x, other_axis)
    torch.testing.assert_close(out, RampNet()(x))
    no_flips = RampNet()
    torch.testing.assert_close(
        OverlapTileInferer(12, margin=0, tta=True, tta_flip_axes=())(x, no_flips), RampNet()(x)
    )
    assert no_flips.calls == 1


@pytest.mark.parametrize("axes", [[0, 0], [-1], [0.5]])
def test_overlap_tile_bad_tta_flip_axes_are_refused(axes):
    with pytest.raises(ValueError, match="tta_flip_axes"):
        OverlapTileInferer(12, tta=True, tta_flip_axes=axes)


def test_overlap_tile_tta_flip_axis_beyond_the_input_is_named():
    with pytest.raises(ValueError, match=r"tta_flip_axes \(2,\) do not fit an input with 2 spatial dims"):
        OverlapTileInferer(12, margin=0, tta=True, tta_flip_axes=[2])(torch.rand(1, 1, 12, 12), RampNet())


def test_shifting_the_ramp_axis_averages_the_ramp_with_its_circular_shift():
    x = torch.rand(1, 1, 4, 3, 2)
    net = RampNet()
    out = ShiftTTAInferer(SimpleInferer(), shift=1, spatial_axes=[0])(x, net)
    # roll back (roll(x, 1) + [0,1,2,3]) = x + [1,2,3,0]; mean with x + [0,1,2,3]
    torch.testing.assert_close(out, x + torch.tensor([0.5, 1.5, 2.5, 1.5]).view(1, 1, 4, 1, 1))
    assert net.calls == 2


def test_shifts_along_other_axes_leave_the_ramp_and_cost_two_to_the_k_passes():
    x = torch.rand(2, 1, 4, 3, 2)
    net = RampNet()
    out = ShiftTTAInferer(SimpleInferer(), shift=1, spatial_axes=(1, 2))(x, net)
    torch.testing.assert_close(out, RampNet()(x))
    assert net.calls == 4


def test_shift_zero_is_one_plain_pass_and_shifts_compose_with_mirrors():
    x = MetaTensor(torch.rand(1, 1, 4, 3, 2), meta={"filename_or_obj": "case.nii.gz"})
    net = RampNet()
    out = ShiftTTAInferer(SimpleInferer(), shift=0)(x, net)
    torch.testing.assert_close(
        torch.as_tensor(out), torch.as_tensor(x) + RampNet()(torch.zeros(1, 1, 4, 1, 1))
    )
    assert net.calls == 1
    # mirrored mean x + 1.5 is shift-invariant along the ramp: the shifts keep it, 2 x 2 passes
    both = MirrorTTAInferer(ShiftTTAInferer(SimpleInferer(), shift=2, spatial_axes=[0]), spatial_axes=[0])
    out = both(x, net)
    torch.testing.assert_close(torch.as_tensor(out), torch.as_tensor(x) + 1.5)
    assert net.calls == 1 + 4 and out.meta["filename_or_obj"] == "case.nii.gz"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shift": -1}, "shift must be an int >= 0"),
        ({"shift": 1.5}, "shift must be an int >= 0"),
        ({"shift": True}, "shift must be an int >= 0"),
        ({"shift": 1, "spatial_axes": (0, 0)}, "spatial_axes must be distinct ints"),
    ],
)
def test_bad_shifts_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ShiftTTAInferer(SimpleInferer(), **kwargs)


def test_a_shift_the_input_cannot_hold_is_refused_with_the_shape():
    with pytest.raises(
        ValueError, match=r"shift 3 along spatial_axes \(0, 1, 2\) does not fit .* \(4, 3, 2\)"
    ):
        ShiftTTAInferer(SimpleInferer(), shift=3)(torch.rand(1, 1, 4, 3, 2), RampNet())
    with pytest.raises(ValueError, match="does not fit"):
        ShiftTTAInferer(SimpleInferer(), shift=1, spatial_axes=[3])(torch.rand(1, 1, 4, 3, 2), RampNet())
