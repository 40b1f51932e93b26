"""16-bit autocast around a network: training and inference in bfloat16, outputs and weights in float32."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import UNet

from app.engine.precision import AutocastNetwork, native_16bit, with_precision
from app.networks import FlexUNet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _unet() -> UNet:
    torch.manual_seed(0)
    return UNet(3, 1, 3, channels=(4, 8, 16), strides=(2, 2), num_res_units=1, norm="instance")


def _conv_output_dtypes(net: torch.nn.Module) -> list[torch.dtype]:
    """Records the output dtype of every 3-D convolution of ``net`` while it runs."""
    seen: list[torch.dtype] = []
    for module in net.modules():
        if isinstance(module, torch.nn.Conv3d):
            module.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    return seen


def test_training_autocast_convolves_in_bfloat16_and_learns_float32_weights():
    net = _unet().train()
    seen = _conv_output_dtypes(net)
    wrapped = with_precision(net, "bf16", "cpu", training=True)
    assert isinstance(wrapped, AutocastNetwork) and wrapped.network is net
    x = torch.rand(2, 1, 16, 16, 16)
    out = wrapped(x)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 16, 16, 16)
    assert seen and set(seen) == {torch.bfloat16}
    out.square().mean().backward()
    weight = net.model[0].conv.unit0.conv.weight
    assert weight.dtype == torch.float32 and weight.grad.dtype == torch.float32
    assert weight.grad.abs().sum() > 0
    # the same step in float32 gives nearly the same gradient: bfloat16 rounds, it does not change the maths
    net.zero_grad()
    net(x).square().mean().backward()
    reference = weight.grad.clone()
    net.zero_grad()
    wrapped(x).square().mean().backward()
    cosine = torch.nn.functional.cosine_similarity(weight.grad.flatten(), reference.flatten(), dim=0)
    assert cosine > 0.99


def test_training_autocast_returns_every_deep_supervision_output_in_float32():
    torch.manual_seed(0)
    net = FlexUNet(3, 1, 3, features=4, depth=2, deep_supervision=True).train()
    wrapped = with_precision(net, "bf16", "cpu", training=True)
    outs = wrapped(torch.rand(2, 1, 16, 16, 16))
    assert isinstance(outs, list)
    assert [tuple(o.shape) for o in outs] == [(2, 3, 16, 16, 16), (2, 3, 8, 8, 8)]
    assert {o.dtype for o in outs} == {torch.float32}
    sum(o.mean() for o in outs).backward()
    assert next(net.aux_heads.parameters()).grad is not None


def test_inference_only_autocast_leaves_training_in_float32():
    net = _unet().train()
    seen = _conv_output_dtypes(net)
    wrapped = AutocastNetwork(net, torch.bfloat16)
    wrapped(torch.rand(1, 1, 16, 16, 16))
    assert set(seen) == {torch.float32}
    seen.clear()
    with torch.no_grad():
        wrapped.eval()(torch.rand(1, 1, 16, 16, 16))
    assert set(seen) == {torch.bfloat16}


def test_fp32_is_the_network_itself_and_unknown_precisions_are_rejected():
    net = _unet()
    assert with_precision(net, "fp32", "cpu", training=True) is net
    with pytest.raises(ValueError, match="precision must be one of \\('fp32', 'bf16', 'fp16'\\), got 'int8'"):
        with_precision(net, "int8", "cpu")


def test_native_16bit_is_false_for_types_and_devices_without_arithmetic():
    assert not native_16bit(torch.float64, "cpu")
    assert not native_16bit(torch.bfloat16, "meta")
    assert native_16bit(torch.bfloat16, "cpu") == torch.ops.mkldnn._is_mkldnn_bf16_supported()
