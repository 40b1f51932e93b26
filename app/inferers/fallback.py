"""Sliding-window inference that degrades instead of failing when the accelerator runs out of memory.

A large volume on a small GPU fails in one of two places: the batch of windows sent through the network
(memory grows with ``sw_batch_size``) or the full-size output buffer the window predictions are stitched
into (memory grows with the volume and the number of classes). :class:`FallbackSlidingWindowInferer`
catches ``torch.OutOfMemoryError`` and retries, in this order:

1. with ``sw_batch_size`` halved, down to 1 window per network call;
2. with the stitching buffer on the CPU (``device="cpu"``) while the windows still run on ``sw_device``.

Each step is logged as a warning and kept for the following calls (a volume that did not fit will not fit
next time either). When every step has failed the last error is raised.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from monai.inferers import SlidingWindowInferer

__all__ = ["FallbackSlidingWindowInferer"]

logger = logging.getLogger(__name__)


class FallbackSlidingWindowInferer(SlidingWindowInferer):
    """MONAI's :class:`~monai.inferers.SlidingWindowInferer` with an out-of-memory fallback.

    Takes the same arguments and gives the same output (``(B, C_out, *spatial)`` on ``device``, or on the
    input's device when ``device`` is None); only the memory strategy changes after an out-of-memory error.
    """

    def __call__(
        self,
        inputs: torch.Tensor,
        network: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        while True:
            try:
                return super().__call__(inputs, network, *args, **kwargs)
            except torch.OutOfMemoryError:
                if not self._degrade(inputs.device):
                    raise
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()

    def _degrade(self, input_device: torch.device) -> bool:
        """Take the next fallback step; False when none is left (``input_device`` is where the output is
        stitched when ``device`` is None)."""
        if self.sw_batch_size > 1:
            self.sw_batch_size = max(1, self.sw_batch_size // 2)
            logger.warning(
                "out of memory in sliding-window inference: retrying with sw_batch_size %d",
                self.sw_batch_size,
            )
            return True
        if torch.device(self.device or input_device).type != "cpu":
            self.device = torch.device("cpu")
            logger.warning(
                "out of memory in sliding-window inference: retrying with the output stitched on the CPU"
            )
            return True
        return False
