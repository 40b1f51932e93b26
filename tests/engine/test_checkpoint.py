"""Resumable checkpoints: atomic writes, weights-only loading, fallback to the previous file, resume."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events

from app.engine.checkpoint import ResumableCheckpoint, atomic_torch_save, rng_state, safe_load, set_rng_state


def _setup(run_dir):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    data = [torch.full((2, 3), float(i)) for i in range(4)]

    def step(engine, x):
        opt.zero_grad()
        loss = (net(x) - 1).pow(2).mean()
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    engine = Engine(step)
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda _: sched.step())
    ckpt = ResumableCheckpoint(run_dir, {"network": net, "optimizer": opt, "lr_scheduler": sched})
    ckpt.attach(engine)
    return engine, net, opt, sched, data


def test_resume_continues_from_saved_epoch_with_same_state(tmp_path):
    engine, net, opt, _, data = _setup(tmp_path / "ref")
    engine.run(data, max_epochs=4)
    reference = net.weight.detach().clone()

    engine, net, opt, _, data = _setup(tmp_path / "run")
    engine.run(data, max_epochs=2)  # "killed" after epoch 2
    assert (tmp_path / "run" / "checkpoint.pt").exists()

    engine, net, opt, sched, data = _setup(tmp_path / "run")
    started = []
    engine.add_event_handler(Events.EPOCH_STARTED, lambda e: started.append(e.state.epoch))
    engine.run(data, max_epochs=4)
    assert started == [3, 4]
    assert engine.state.iteration == 16
    torch.testing.assert_close(net.weight, reference)
    assert sched.last_epoch == 4
    assert "momentum_buffer" in opt.state_dict()["state"][0]


def test_corrupt_checkpoint_falls_back_to_previous(tmp_path, caplog):
    engine, _, _, _, data = _setup(tmp_path)
    engine.run(data, max_epochs=3)
    (tmp_path / "checkpoint.pt").write_bytes(b"truncated")
    engine, _, _, _, data = _setup(tmp_path)
    started = []
    engine.add_event_handler(Events.EPOCH_STARTED, lambda e: started.append(e.state.epoch))
    engine.run(data, max_epochs=3)
    assert started == [3]  # the previous checkpoint (epoch 2) was used
    assert "skipping unusable checkpoint" in caplog.text


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"trainer": _Evil()}, f)
    with pytest.raises(RuntimeError, match="not a valid weights-only checkpoint"):
        safe_load(path)
    torch.save({"x": _Evil()}, tmp_path / "evil2.pt")
    with pytest.raises(RuntimeError, match="evil2.pt"):
        safe_load(tmp_path / "evil2.pt")


def test_atomic_save_leaves_no_temp_file(tmp_path):
    atomic_torch_save({"a": torch.ones(2)}, tmp_path / "x.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]
    torch.testing.assert_close(safe_load(tmp_path / "x.pt")["a"], torch.ones(2))


def test_rng_state_round_trip_through_weights_only_file(tmp_path):
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    atomic_torch_save({"rng": rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(safe_load(tmp_path / "rng.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
