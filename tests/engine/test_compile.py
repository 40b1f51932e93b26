"""The ``compile`` choice of the 3D bundles: a compiled training step equals the eager one."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from monai.losses import DiceCELoss
from monai.networks.nets import UNet

from app.engine import check_compile, cpp_compiler, place_network


def test_check_compile_passes_the_choice_through():
    assert check_compile(False, "cpu") is False
    assert check_compile(True, "cuda") is True  # the GPU backend needs no C++ compiler


def test_check_compile_without_a_compiler_says_so(monkeypatch):
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CXX", raising=False)
    assert cpp_compiler() is None
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler .* --compile false"):
        check_compile(True, "cpu")


def _trained(compile_network: bool) -> tuple[list[float], dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    network = UNet(3, 1, 2, (4, 8, 16), (2, 2), num_res_units=1, norm="batch")
    network = place_network(network, "cpu", channels_last=True)
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(4, 1, 16, 16, 16, generator=generator)
    labels = (images > 0.5).float()
    batches = [{"image": images[i : i + 2], "label": labels[i : i + 2]} for i in (0, 2)]
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=batches,
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.1, momentum=0.9),
        loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
        compile=check_compile(compile_network, "cpu"),
        compile_kwargs={"dynamic": False},
        decollate=False,
    )
    losses: list[float] = []
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda engine: losses.append(engine.state.output["loss"].item())
    )
    trainer.run()
    return losses, {k: v.detach().clone() for k, v in network.state_dict().items()}


@pytest.mark.skipif(cpp_compiler() is None, reason="torch.compile on the CPU needs a C++ compiler")
def test_compiled_training_steps_equal_eager_ones():
    """Two SGD steps: same losses and weights to 1e-4 (TorchInductor reorders float sums)."""
    eager_losses, eager_weights = _trained(False)
    compiled_losses, compiled_weights = _trained(True)
    assert compiled_losses == pytest.approx(eager_losses, abs=1e-4)
    assert eager_losses[0] != pytest.approx(eager_losses[1], abs=1e-3)  # the first step changed the network
    for name, weight in eager_weights.items():
        assert torch.allclose(compiled_weights[name], weight, atol=1e-4), name
