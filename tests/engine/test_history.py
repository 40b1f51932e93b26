"""The per-epoch history: rows, LR, validation columns, resume truncation, the CSV round trip."""

from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Engine, Events
from monai.handlers import LrScheduleHandler

from app.engine.history import TrainingHistory, read_history, scalar_metrics, write_history

ITERATIONS = 3


def _trainer(max_lr: float = 0.1) -> tuple[Engine, torch.optim.Optimizer]:
    """A trainer whose loss is ``10 * epoch + iteration-in-epoch`` and whose LR halves every epoch."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=max_lr)

    def step(engine: Engine, batch: int) -> dict:
        optimizer.step()  # no gradient, no change: keeps the scheduler's step-order check quiet
        return {"loss": torch.tensor(10.0 * engine.state.epoch + batch)}

    trainer = Engine(step)
    LrScheduleHandler(torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)).attach(trainer)
    return trainer, optimizer


def _evaluator(trainer: Engine) -> Engine:
    """A validator whose metrics encode the trainer epoch: a scalar, a labelled dict and a vector."""
    evaluator = Engine(lambda e, b: None)

    @evaluator.on(Events.EPOCH_COMPLETED)
    def _metrics(engine: Engine) -> None:
        epoch = trainer.state.epoch
        engine.state.metrics = {
            "val_mean_dice": epoch / 10,
            "val_dice": {"val_dice_cell": torch.tensor(epoch / 20)},
            "val_vector": torch.tensor([epoch, -epoch]),
            "val_hd95": float("inf"),
        }

    return evaluator


def _validate_every_2(trainer: Engine, evaluator: Engine) -> None:
    trainer.add_event_handler(Events.EPOCH_COMPLETED(every=2), lambda _: evaluator.run([0]))


@pytest.mark.parametrize("history_first", [False, True])
def test_rows_hold_loss_lr_and_the_metrics_of_epochs_that_validated(tmp_path, history_first):
    trainer, optimizer = _trainer()
    evaluator = _evaluator(trainer)
    history = TrainingHistory(tmp_path, optimizer, evaluator)
    if history_first:  # the row must get its metrics whatever the handler order
        history.attach(trainer)
        _validate_every_2(trainer, evaluator)
    else:
        _validate_every_2(trainer, evaluator)
        history.attach(trainer)
    trainer.run(list(range(ITERATIONS)), max_epochs=4)

    rows = read_history(tmp_path / "history.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert [r["train_loss"] for r in rows] == [11.0, 21.0, 31.0, 41.0]  # mean of 10e + (0, 1, 2)
    assert [r["lr"] for r in rows] == pytest.approx([0.1, 0.05, 0.025, 0.0125])
    assert "val_mean_dice" not in rows[0] and "val_mean_dice" not in rows[2]
    assert rows[1]["val_mean_dice"] == pytest.approx(0.2) and rows[3]["val_mean_dice"] == pytest.approx(0.4)
    assert rows[3]["val_dice_cell"] == pytest.approx(0.2)
    assert (rows[3]["val_vector_0"], rows[3]["val_vector_1"]) == (4.0, -4.0)
    assert math.isinf(rows[3]["val_hd95"])
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_resume_drops_the_epochs_after_the_checkpoint_and_keeps_the_earlier_ones(tmp_path):
    trainer, optimizer = _trainer()
    TrainingHistory(tmp_path, optimizer).attach(trainer)
    trainer.run(list(range(ITERATIONS)), max_epochs=4)

    # A crash after epoch 4 with the newest checkpoint at epoch 2: the resumed trainer starts at
    # epoch 2 (what ResumableCheckpoint does at STARTED) and trains epoch 3 again with another LR.
    resumed, optimizer = _trainer(max_lr=1.0)
    resumed.add_event_handler(Events.STARTED, lambda e: setattr(e.state, "epoch", 2))
    TrainingHistory(tmp_path, optimizer).attach(resumed)
    resumed.run(list(range(ITERATIONS)), max_epochs=3)

    rows = read_history(tmp_path / "history.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["lr"] for r in rows] == pytest.approx([0.1, 0.05, 1.0])
    assert rows[2]["train_loss"] == 31.0


def test_a_fresh_run_replaces_an_old_history(tmp_path):
    write_history([{"epoch": e, "train_loss": 9.0, "lr": 9.0} for e in (1, 2, 3)], tmp_path / "history.csv")
    trainer, optimizer = _trainer()
    TrainingHistory(tmp_path, optimizer).attach(trainer)
    trainer.run(list(range(ITERATIONS)), max_epochs=1)
    assert read_history(tmp_path / "history.csv") == [{"epoch": 1, "train_loss": 11.0, "lr": 0.1}]


def test_csv_round_trip_with_columns_that_appear_later(tmp_path):
    rows = [
        {"epoch": 1, "train_loss": 0.5, "lr": 0.01},
        {"epoch": 2, "train_loss": 0.25, "lr": 0.005, "val_mean_dice": 0.75, "val_hd95": float("nan")},
    ]
    path = write_history(rows, tmp_path / "history.csv")
    assert path.read_text().splitlines()[0] == "epoch,train_loss,lr,val_mean_dice,val_hd95"
    back = read_history(path)
    assert back[0] == rows[0]
    assert back[1]["val_mean_dice"] == 0.75 and math.isnan(back[1]["val_hd95"])
    assert not list(tmp_path.glob(".*tmp"))


def test_read_history_names_a_bad_file(tmp_path):
    bad = tmp_path / "history.csv"
    bad.write_text("epoch,train_loss\n1,abc\n")
    with pytest.raises(ValueError, match=f"{bad}: line 2"):
        read_history(bad)
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="no 'epoch' column"):
        read_history(bad)


def test_scalar_metrics_flattens_tensors_vectors_and_labelled_dicts():
    metrics = {
        "val_mean_dice": torch.tensor(0.5),
        "val_dice": {"val_dice_a": torch.tensor([0.25]), "val_dice_b": 0.75},
        "val_dice_a": 0.25,
        "val_per_class": torch.tensor([0.1, 0.2]),
        "note": "text",
    }
    assert scalar_metrics(metrics) == pytest.approx(
        {
            "val_mean_dice": 0.5,
            "val_dice_a": 0.25,
            "val_dice_b": 0.75,
            "val_per_class_0": 0.1,
            "val_per_class_1": 0.2,
        }
    )


@pytest.mark.parametrize(("interval", "drawn"), [(0.0, [1, 2, 3, 4]), (1e9, [1, 4])])
def test_curves_are_redrawn_at_most_every_interval_and_at_the_end(tmp_path, monkeypatch, interval, drawn):
    rows_drawn = []
    monkeypatch.setattr("app.engine.history.plot_curves", lambda rows, path: rows_drawn.append(len(rows)))
    trainer, optimizer = _trainer()
    TrainingHistory(tmp_path, optimizer, plot_interval_s=interval).attach(trainer)
    trainer.run(list(range(ITERATIONS)), max_epochs=4)
    assert rows_drawn == drawn
