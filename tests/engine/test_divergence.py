"""A training whose loss turns NaN stops with an error naming the iteration; the last finite epoch stays."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine

from app.engine.checkpoint import safe_load
from app.engine.handlers import TrainingDiverged, train_handlers


def test_a_nan_loss_stops_the_run_and_keeps_the_last_finite_checkpoint(tmp_path):
    net = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)

    def step(engine: Engine, batch: int) -> dict:
        # epoch 1: finite; epoch 2: NaN at its second iteration (iteration 5 of the run)
        nan = engine.state.epoch == 2 and batch == 1
        return {"loss": torch.tensor(float("nan") if nan else 1.0)}

    trainer = Engine(step)
    for handler in train_handlers(tmp_path, net, optimizer, tensorboard=False):
        handler.attach(trainer)
    with pytest.raises(TrainingDiverged, match=r"training diverged, loss nan at epoch 2 iteration 5"):
        trainer.run([0, 1, 2], max_epochs=3)
    assert safe_load(tmp_path / "checkpoint.pt")["trainer"]["epoch"] == 1
    assert not (tmp_path / "model_final.pt").exists()


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_an_infinite_loss_stops_it_too(tmp_path, value):
    net = torch.nn.Linear(1, 1)
    trainer = Engine(lambda engine, batch: {"loss": torch.tensor(value)})
    for handler in train_handlers(
        tmp_path, net, torch.optim.SGD(net.parameters(), lr=0.1), tensorboard=False
    ):
        handler.attach(trainer)
    with pytest.raises(TrainingDiverged, match="epoch 1 iteration 1"):
        trainer.run([0], max_epochs=1)
