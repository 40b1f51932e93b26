"""Run ``python -m monai.bundle ...`` and SIGKILL the process at a chosen point (a test helper).

Usage: ``python tests/bundles/fault_driver.py POINT monai.bundle-arguments...`` where POINT is

- ``iteration:N``: at the start of the N-th training iteration of this process;
- ``validation``: at the first validation iteration;
- ``checkpoint``: half-way through writing the first resumable checkpoint (a torn temporary file);
- ``losses:N``: no kill; print ``LOSSES [...]`` (JSON) after the N-th training iteration and exit 0;
- ``none``: no kill.
"""

from __future__ import annotations

import io
import json
import os
import runpy
import signal
import sys

import torch
from monai.engines import SupervisedEvaluator, SupervisedTrainer


def kill() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def kill_at_iteration(engine_class: type, n: int) -> None:
    original, calls = engine_class._iteration, [0]

    def iteration(self, engine, batchdata):
        calls[0] += 1
        if calls[0] == n:
            kill()
        return original(self, engine, batchdata)

    engine_class._iteration = iteration


def print_losses_and_exit(n: int) -> None:
    original, losses = SupervisedTrainer._iteration, []

    def iteration(self, engine, batchdata):
        output = original(self, engine, batchdata)
        losses.append(float((output[0] if isinstance(output, list) else output)["loss"]))
        if len(losses) == n:
            print("LOSSES", json.dumps(losses), flush=True)
            os._exit(0)
        return output

    SupervisedTrainer._iteration = iteration


def kill_while_saving_checkpoint() -> None:
    original = torch.save

    def save(obj, f, *args, **kwargs):
        if ".checkpoint.pt" in str(getattr(f, "name", f)):
            buffer = io.BytesIO()
            original(obj, buffer, *args, **kwargs)
            f.write(buffer.getvalue()[: buffer.tell() // 2])
            f.flush()
            kill()
        return original(obj, f, *args, **kwargs)

    torch.save = save


if __name__ == "__main__":
    point = sys.argv.pop(1)
    if point.startswith("iteration:"):
        kill_at_iteration(SupervisedTrainer, int(point.split(":")[1]))
    elif point.startswith("losses:"):
        print_losses_and_exit(int(point.split(":")[1]))
    elif point == "validation":
        kill_at_iteration(SupervisedEvaluator, 1)
    elif point == "checkpoint":
        kill_while_saving_checkpoint()
    elif point != "none":
        raise SystemExit(f"unknown kill point {point!r}")
    sys.argv[0] = "monai.bundle"
    runpy.run_module("monai.bundle", run_name="__main__", alter_sys=True)
