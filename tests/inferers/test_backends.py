"""Inference backends give the outputs of the plain PyTorch network.

Tolerances: channels-last 1e-5 absolute (same arithmetic, other summation order); folded batch norm,
TorchInductor and
ONNX Runtime 1e-4 absolute and relative (fused element-wise passes; batch norm folded into the
convolutions by ONNX Runtime), as the ONNX export test of the bundle; bfloat16 autocast 5 % of the
logits' scale and 98 % of the argmax labels (8-bit mantissa: a rounding per layer).
"""

from __future__ import annotations

import copy

import pytest
import torch
from monai.networks.nets import UNet

from app.engine import cpp_compiler
from app.engine.precision import AutocastNetwork
from app.inferers.backends import FoldedBatchNormNetwork, OnnxRuntimeNetwork, inference_network

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _unet(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    net = UNet(3, 1, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=2, norm="batch")
    with torch.no_grad():  # non-trivial batch-norm statistics, so that folding them is exercised
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return net.eval()


def test_channels_last_gives_the_plain_outputs_and_keeps_loading_checkpoints():
    plain = _unet()
    fast = inference_network(_unet(seed=1), channels_last=True)
    assert fast.model[0].conv.unit0.conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    fast.load_state_dict(plain.state_dict())  # as CheckpointLoader does after the network is built
    x = torch.rand(2, 1, 24, 20, 16)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), atol=1e-5, rtol=0)


def test_torch_backend_returns_the_network_itself():
    net = _unet()
    assert inference_network(net) is net


def test_unknown_backend_is_rejected_with_the_valid_ones():
    with pytest.raises(ValueError, match="must be one of .*'torch', 'inductor', 'onnxruntime'"):
        inference_network(_unet(), backend="onnx")


# The inductor backend against the plain network, in a fresh process (see the compiled_check fixture).
INDUCTOR_OUTPUTS = """
from monai.networks.nets import UNet
from app.inferers.backends import inference_network


def unet(seed):
    torch.manual_seed(seed)
    net = UNet(3, 1, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=2, norm="batch")
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return net.eval()


plain = unet(0)
compiled = inference_network(unet(1), backend="inductor", channels_last=True)
x = torch.rand(2, 1, 24, 20, 16)
with torch.no_grad():
    before = (compiled(x) - plain(x)).abs().max().item()  # compiled with the seed-1 weights
    compiled._orig_mod.load_state_dict(plain.state_dict())  # as CheckpointLoader does
    after = (compiled(x) - plain(x)).abs().max().item()
    scale = plain(x).abs().max().item()
print(json.dumps({"before_load": before, "after_load": after, "scale": scale}))
"""


@pytest.mark.skipif(cpp_compiler() is None, reason="torch.compile on the CPU needs a C++ compiler")
def test_inductor_gives_the_plain_outputs_and_follows_checkpoint_loads(compiled_check):
    result = compiled_check(INDUCTOR_OUTPUTS)
    assert result["before_load"] > 1e-2  # other weights, other outputs
    assert result["after_load"] <= 1e-4 * max(1.0, result["scale"])


def test_channels_last_is_ignored_by_onnxruntime():
    net = _unet()
    wrapped = inference_network(net, backend="onnxruntime", channels_last=True)
    assert isinstance(wrapped, OnnxRuntimeNetwork) and wrapped.network is net
    assert net.model[0].conv.unit0.conv.weight.is_contiguous()


def test_onnxruntime_gives_the_plain_outputs_and_follows_weight_changes():
    pytest.importorskip("onnxruntime")
    torch_net = _unet()
    ort_net = inference_network(torch_net, backend="onnxruntime").eval()
    assert isinstance(ort_net, OnnxRuntimeNetwork)
    x = torch.rand(3, 1, 24, 16, 32)  # batch and spatial sizes other than the export's
    with torch.no_grad():
        torch.testing.assert_close(ort_net(x), torch_net(x), atol=1e-4, rtol=1e-4)
        session = ort_net._derived
        ort_net(x[:1])
        assert ort_net._derived is session  # same weights: no new export
        torch_net.load_state_dict(_unet(seed=2).state_dict())
        torch.testing.assert_close(ort_net(x), torch_net(x), atol=1e-4, rtol=1e-4)
        assert ort_net._derived is not session


def test_onnxruntime_wrapper_trains_through_pytorch():
    net = OnnxRuntimeNetwork(copy.deepcopy(_unet())).train()
    x = torch.rand(2, 1, 16, 16, 16)
    net(x).sum().backward()
    assert net.network.model[0].conv.unit0.conv.weight.grad is not None
    assert net._derived is None


def test_folded_batch_norm_gives_the_plain_outputs_and_follows_checkpoint_loads():
    plain = _unet()
    folded = inference_network(_unet(seed=1), channels_last=True, fold_batch_norm=True).eval()
    assert isinstance(folded, FoldedBatchNormNetwork)
    x = torch.rand(2, 1, 24, 20, 16)
    with torch.no_grad():
        folded(x)  # folded with the seed-1 weights
        copy_net = folded._derived
        n_norms = sum(isinstance(m, torch.nn.BatchNorm3d) for m in plain.modules())
        left = sum(isinstance(m, torch.nn.BatchNorm3d) for m in copy_net.modules())
        assert left < n_norms / 2  # all but those after transposed convolutions are folded
        conv = next(
            m for m in copy_net.modules() if isinstance(m, torch.nn.Conv3d) and m.kernel_size == (3, 3, 3)
        )
        assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
        folded.network.load_state_dict(plain.state_dict())  # as CheckpointLoader does
        torch.testing.assert_close(folded(x), plain(x), atol=1e-4, rtol=1e-4)
        assert folded._derived is not copy_net
    # training and gradients go through the network itself, whose batch norms are still there
    folded.train()
    folded(x).sum().backward()
    assert folded.network.model[0].conv.unit0.conv.weight.grad is not None


def test_untraceable_network_runs_unfolded():
    class Branching(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.norm = torch.nn.Conv3d(1, 2, 3), torch.nn.BatchNorm3d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.norm(self.conv(x)) if x.sum() > 0 else self.conv(x)  # data-dependent: not traceable

    network = Branching().eval()
    folded = FoldedBatchNormNetwork(network).eval()
    x = torch.rand(1, 1, 8, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), network(x))
    assert folded._derived is network


def test_bf16_precision_runs_the_network_in_bfloat16_and_returns_float32():
    plain = _unet()
    fast = inference_network(_unet(seed=1), channels_last=True, fold_batch_norm=True, precision="bf16")
    assert isinstance(fast, AutocastNetwork) and isinstance(fast.network, FoldedBatchNormNetwork)
    fast.network.network.load_state_dict(plain.state_dict())  # as CheckpointLoader does
    x = torch.rand(2, 1, 24, 20, 16)
    with torch.no_grad():
        reference, out = plain(x), fast.eval()(x)
    assert out.dtype == torch.float32 and out.shape == reference.shape
    # bfloat16 keeps 8 bits of mantissa: ~0.4 % per rounding, a few percent after the layers
    error = (out - reference).abs().max().item()
    assert 1e-5 < error <= 0.05 * reference.abs().max().item()  # rounded, not skipped
    assert (out.argmax(1) == reference.argmax(1)).float().mean() >= 0.98


def test_autocast_network_trains_through_the_network_in_float32():
    net = AutocastNetwork(_unet().train(), torch.bfloat16)
    out = net(torch.rand(2, 1, 16, 16, 16))
    assert out.dtype == torch.float32
    out.sum().backward()
    assert net.network.model[0].conv.unit0.conv.weight.grad is not None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "fp64"}, "precision must be one of .*'fp32', 'bf16', 'fp16'"),
        ({"backend": "onnxruntime", "precision": "bf16"}, "ONNX Runtime runs float32"),
    ],
)
def test_unsupported_precision_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        inference_network(_unet(), **kwargs)
    with pytest.raises(ValueError, match="torch.bfloat16 or torch.float16"):
        AutocastNetwork(_unet(), torch.float64)


def test_16bit_precision_warns_on_a_device_that_would_emulate_it(monkeypatch, caplog):
    monkeypatch.setattr("app.engine.precision.native_16bit", lambda dtype, device: False)
    with caplog.at_level("WARNING", logger="app.engine.precision"):
        inference_network(_unet(), precision="bf16")
    assert "no native torch.bfloat16 arithmetic" in caplog.text and "use precision 'fp32'" in caplog.text
