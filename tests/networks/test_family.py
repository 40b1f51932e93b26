"""The shared model tester: one battery run on every variant of the U-Net family.

Every variant is a ``(name, factory)`` pair; ``factory(spatial_dims, in_channels, out_channels)`` builds a
tiny network (depth 2, 2-8 channels). The battery checks forward/backward in 2D and 3D, channel counts,
non-square sizes, clear errors for unusable sizes, TorchScript and state-dict round trips, determinism in
eval mode, and that deep-supervision outputs appear in training only. Files ``test_<part>.py`` add only
what is special about a variant; ``plain_small`` (``width_multiplier``) and the valid-padding dense and
mobile blocks add no code path beyond the cases here and are tested there.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
import torch
from torch import nn

from app.networks import CascadedUNet, FlexUNet, UNetPlusPlus, unet2015_input_size

TINY = {"features": (2, 4, 8), "norm": "instance"}

Factory = Callable[[int, int, int], nn.Module]


def _flex(**kwargs) -> Factory:
    return lambda d, c_in, c_out: FlexUNet(d, c_in, c_out, **{**TINY, **kwargs})


def _unetpp(**kwargs) -> Factory:
    return lambda d, c_in, c_out: UNetPlusPlus(d, c_in, c_out, **{**TINY, **kwargs})


VARIANTS: list[tuple[str, Factory]] = [
    ("plain", _flex(norm="batch", dropout_bottleneck=0.3, dropout_decoder=0.1)),
    ("residual", _flex(block="residual")),
    ("dense", _flex(block="dense")),
    ("mobile", _flex(block="mobile")),
    ("attention", _flex(skip="attention")),
    ("attention_residual", _flex(block="residual", skip="attention")),
    ("skipnorm", _flex(skip_norm=True)),
    ("deep_supervision", _flex(deep_supervision=True)),
    ("multihead", lambda d, c_in, c_out: FlexUNet(d, c_in, c_out, heads={"a": 1, "b": c_out - 1}, **TINY)),
    ("unetpp", _unetpp()),
    ("unetpp_ds", _unetpp(deep_supervision=True)),
    ("unetpp_pruned", _unetpp(deep_supervision=True, prune_level=1)),
    ("cascade", lambda d, c_in, c_out: CascadedUNet(d, c_in, c_out, deep_supervision=True, features=(2, 4))),
    ("plain_valid", _flex(padding="valid")),
    ("attention_residual_valid", _flex(block="residual", skip="attention", padding="valid")),
    ("unetpp_ds_valid", _unetpp(deep_supervision=True, padding="valid")),
]
NAMES = [name for name, _ in VARIANTS]
parametrize_variants = pytest.mark.parametrize("factory", [f for _, f in VARIANTS], ids=NAMES)


def _size(net: nn.Module, spatial_dims: int) -> int:
    """A small usable input size: 32 (2D) / 16 (3D) with same padding, the smallest valid one otherwise."""
    if net.padding == "valid":
        return unet2015_input_size(1, net.depth, "valid")
    return 32 if spatial_dims == 2 else 16


def _main(output: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    return output[0] if isinstance(output, list) else output


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@parametrize_variants
@pytest.mark.parametrize("spatial_dims, in_channels, out_channels", [(2, 3, 4), (3, 1, 2)])
def test_forward_backward(factory, spatial_dims, in_channels, out_channels):
    net = factory(spatial_dims, in_channels, out_channels)
    size = _size(net, spatial_dims)
    x = torch.rand(2, in_channels, *[size] * spatial_dims)
    output = net(x)
    y = _main(output)
    assert y.shape == (2, out_channels, *[size - 2 * net.margin] * spatial_dims)
    loss = sum(o.float().mean() for o in output) if isinstance(output, list) else y.mean()
    loss.backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@parametrize_variants
def test_non_square_sizes(factory):
    net = factory(2, 1, 2).eval()
    if net.padding == "valid":
        sizes = (unet2015_input_size(1, net.depth, "valid"), unet2015_input_size(5, net.depth, "valid"))
    else:
        sizes = (24, 40)
    y = net(torch.rand(1, 1, *sizes))
    assert y.shape == (1, 2, *(s - 2 * net.margin for s in sizes))


@parametrize_variants
def test_unusable_size_names_usable_sizes(factory):
    net = factory(2, 1, 2).eval()
    good = _size(net, 2)
    with pytest.raises(ValueError, match=rf"input size {good + 2} is not valid.*use \d+ or \d+"):
        net(torch.rand(1, 1, good, good + 2))


@parametrize_variants
def test_eval_is_deterministic(factory):
    net = factory(2, 1, 2).eval()
    x = torch.rand(2, 1, *[_size(net, 2)] * 2)
    with torch.no_grad():
        assert torch.equal(net(x), net(x))


@parametrize_variants
def test_deep_supervision_outputs_in_training_only(factory):
    net = factory(2, 1, 3)
    x = torch.rand(2, 1, *[_size(net, 2)] * 2)
    train_output = net.train()(x)
    with torch.no_grad():
        eval_output = net.eval()(x)
    assert isinstance(eval_output, torch.Tensor)
    if getattr(net, "deep_supervision", False):
        assert isinstance(train_output, list) and len(train_output) >= 2
        assert train_output[0].shape[:2] == (2, 3)
        assert all(o.shape[:2] == (2, 3) for o in train_output)
    else:
        assert isinstance(train_output, torch.Tensor)


@parametrize_variants
def test_torchscript_and_state_dict_round_trip(factory):
    net = factory(2, 2, 3).eval()
    x = torch.rand(1, 2, *[_size(net, 2)] * 2)
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(net), buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    # the profiling executor's optimisation passes cost more than these tiny networks' forward passes
    with torch.no_grad(), torch.jit.optimized_execution(False):
        expected = net(x)
        scripted = loaded(x)
    assert isinstance(scripted, torch.Tensor)  # deep-supervision heads are not in the exported output
    torch.testing.assert_close(scripted, expected, atol=1e-5, rtol=1e-4)
    assert loaded.margin == net.margin

    copy = factory(2, 2, 3)
    copy.load_state_dict(net.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(copy.eval()(x), expected)
