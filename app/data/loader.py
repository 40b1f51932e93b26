"""A thread-buffered data loader that re-raises what its loading thread raised.

MONAI's :class:`~monai.data.ThreadDataLoader` fetches batches in a daemon thread. When that thread raises
(a transform fails, a batch cannot be collated, a file is unreadable) the thread dies, the buffer runs
dry and the loop simply ends: the epoch "completes" with fewer or no iterations and the training exits
successfully. :class:`ThreadDataLoader` is MONAI's loader with that error re-raised in the iterating
thread, so the run stops with the real cause.

A loader that does not shuffle (validation, evaluation) draws its random seeds from a private generator:
PyTorch draws one from the global torch generator every time a loader is iterated, so a validation run
used to move the random stream the training's shuffling then read, and ``--val_interval`` changed the
trained model. With the private generator the same seed trains the same model whatever the validation
schedule.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import monai.data
import torch
from monai.data.thread_buffer import ThreadBuffer

__all__ = ["RaisingThreadBuffer", "ThreadDataLoader"]


class RaisingThreadBuffer(ThreadBuffer):
    """:class:`~monai.data.thread_buffer.ThreadBuffer` that re-raises the source's exception after the
    values buffered before it."""

    def enqueue_values(self) -> None:
        try:
            super().enqueue_values()
        except BaseException as e:  # handed to the consuming thread, which raises it
            self.error = e

    def __iter__(self) -> Iterator[Any]:
        self.error: BaseException | None = None
        yield from super().__iter__()
        if self.error is not None:
            raise self.error


class ThreadDataLoader(monai.data.ThreadDataLoader):
    """MONAI's ``ThreadDataLoader`` (same arguments) whose loading errors reach the training loop.

    Without ``shuffle``, ``sampler`` or ``generator`` the loader gets its own ``torch.Generator``, so that
    iterating it leaves the global random stream alone (see the module docstring).
    """

    def __init__(self, dataset: Any, *args: Any, **kwargs: Any) -> None:
        if not kwargs.get("shuffle") and kwargs.get("sampler") is None and kwargs.get("generator") is None:
            kwargs["generator"] = torch.Generator()
        super().__init__(dataset, *args, **kwargs)

    def __iter__(self) -> Iterator[Any]:
        batches = monai.data.DataLoader.__iter__(self)
        for batch in RaisingThreadBuffer(batches, self.buffer_size, self.buffer_timeout):
            for _ in range(self.repeats):
                yield batch
