"""ReduceLROnPlateau in the bundle trainers: it steps on the epoch's mean training loss."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine

from app.engine.handlers import train_handlers


@pytest.mark.parametrize(
    ("loss_of_epoch", "expected_lrs"),
    [
        (lambda epoch: 1.0, [0.1, 0.1, 0.05, 0.025]),  # flat: halved after each epoch from the second on
        (lambda epoch: 1.0 / epoch, [0.1, 0.1, 0.1, 0.1]),  # improving: kept
    ],
)
def test_plateau_steps_on_the_epoch_loss(tmp_path, loss_of_epoch, expected_lrs):
    net = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0)
    lrs = []

    def step(engine: Engine, batch: int) -> dict:
        if batch == 0:
            lrs.append(optimizer.param_groups[0]["lr"])
        # the epoch mean is loss_of_epoch(epoch): 3 iterations around it
        return {"loss": torch.tensor(loss_of_epoch(engine.state.epoch) + (batch - 1) * 0.01)}

    trainer = Engine(step)
    epoch_loss, schedule = train_handlers(tmp_path, net, optimizer, lr_scheduler=plateau, tensorboard=False)[
        :2
    ]
    epoch_loss.attach(trainer)
    schedule.attach(trainer)
    trainer.run([0, 1, 2], max_epochs=4)
    assert lrs == pytest.approx(expected_lrs)
    assert trainer.state.metrics["train_loss"] == pytest.approx(loss_of_epoch(4))
