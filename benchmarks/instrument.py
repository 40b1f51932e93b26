"""Per-stage wall-clock times of one ``SupervisedEvaluator`` run, the same way for project and baseline.

Stages of a file-to-label inference:

- ``load``: ``LoadImaged`` (read and decode the file);
- ``preprocess``: the rest of fetching the batch (orientation, spacing, intensity, collation);
- ``network``: the network calls of the sliding window;
- ``stitch``: the rest of the sliding window (window extraction, blending, normalisation);
- ``invert``: post-processing except writing (softmax, back to the input grid, argmax);
- ``write``: ``SaveImaged``;
- ``other``: the remainder of the run (checkpoint loading, engine events).

Only class methods of MONAI transforms and engine events are hooked, nothing of either pipeline changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ignite.engine import Events
from monai.engines import SupervisedEvaluator
from monai.engines.utils import IterationEvents
from monai.transforms import LoadImaged, SaveImaged

from benchmarks.common import StageTimer, synchronize

__all__ = ["STAGES", "timed_run"]

STAGES = ("load", "preprocess", "network", "stitch", "invert", "write", "other")


@contextmanager
def _timed_calls(cls: type, stage: str, timer: StageTimer) -> Iterator[None]:
    """Count the time of every ``cls.__call__`` in ``stage`` while the block runs."""
    original = cls.__call__

    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        with timer.stage(stage):
            return original(self, *args, **kwargs)

    cls.__call__ = timed
    try:
        yield
    finally:
        cls.__call__ = original


class _TimedInferer:
    """Wraps an inferer: its whole call is the sliding window, the network calls inside it are timed."""

    def __init__(self, inferer: Callable[..., Any], timer: StageTimer) -> None:
        self.inferer, self.timer = inferer, timer
        self.windows = 0

    def __call__(self, inputs: Any, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def timed_network(windows: Any, *net_args: Any, **net_kwargs: Any) -> Any:
            self.windows += len(windows)
            with self.timer.stage("network"):
                return network(windows, *net_args, **net_kwargs)

        with self.timer.stage("sliding window"):
            return self.inferer(inputs, timed_network, *args, **kwargs)


def timed_run(evaluator: SupervisedEvaluator, timer: StageTimer) -> dict[str, float]:
    """Run ``evaluator``; seconds per stage of :data:`STAGES`, ``total``, and the number of ``windows``."""
    marks: dict[str, float] = {}

    def mark(name: str) -> Callable[[Any], None]:
        def handler(_engine: Any) -> None:
            synchronize(timer.device)
            now = time.perf_counter()
            if name.endswith("_end"):
                timer.add(name[: -len("_end")], now - marks[name[: -len("_end")]])
            else:
                marks[name] = now

        return handler

    evaluator.add_event_handler(Events.GET_BATCH_STARTED, mark("fetch"))
    evaluator.add_event_handler(Events.GET_BATCH_COMPLETED, mark("fetch_end"))
    evaluator.add_event_handler(IterationEvents.FORWARD_COMPLETED, mark("post"))
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, mark("post_end"))
    inferer = evaluator.inferer = _TimedInferer(evaluator.inferer, timer)
    with _timed_calls(LoadImaged, "load", timer), _timed_calls(SaveImaged, "write", timer):
        with timer.stage("total"):
            evaluator.run()
    s = timer.seconds
    stages = {
        "load": s["load"],
        "preprocess": s["fetch"] - s["load"],
        "network": s["network"],
        "stitch": s["sliding window"] - s["network"],
        "invert": s["post"] - s["write"],
        "write": s["write"],
    }
    stages["other"] = s["total"] - sum(stages.values())
    stages["total"] = s["total"]
    stages["windows"] = inferer.windows
    return stages
