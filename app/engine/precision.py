"""16-bit arithmetic on any device: ``torch.autocast`` around a network, for training and inference.

MONAI's engines autocast on CUDA only (``amp``), with float16 and a gradient scaler. CPUs with native
bfloat16 arithmetic (AVX-512 BF16, AMX) run 3-D convolutions about twice as fast in bfloat16 as in
float32; bfloat16 keeps float32's exponent range, so training needs no gradient scaling.
:class:`AutocastNetwork` wraps a network so that its forward pass runs under ``torch.autocast`` on the
device of its input and returns float32: losses, metrics and sliding-window stitching stay float32.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

__all__ = ["PRECISIONS", "AutocastNetwork", "native_16bit", "with_precision"]

logger = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
"""Arithmetic of a network's forward pass: ``"fp32"`` plainly, or autocast to a 16-bit type."""


def native_16bit(dtype: torch.dtype, device: torch.device | str) -> bool:
    """Whether ``device`` has native arithmetic for the 16-bit ``dtype``: CUDA GPUs (bfloat16 from
    Ampere on), CPUs whose oneDNN build reports it (AVX-512 BF16 or AMX for bfloat16; AVX-512 FP16 or
    AMX-FP16 for float16). Elsewhere autocast to ``dtype`` is emulated and slower than float32."""
    device = torch.device(device)
    if device.type == "cuda":
        return dtype == torch.float16 or (dtype == torch.bfloat16 and torch.cuda.is_bf16_supported())
    checks = {
        torch.bfloat16: torch.ops.mkldnn._is_mkldnn_bf16_supported,
        torch.float16: torch.ops.mkldnn._is_mkldnn_fp16_supported,
    }
    return device.type == "cpu" and dtype in checks and bool(checks[dtype]())


class AutocastNetwork(nn.Module):
    """``network`` whose forward pass runs under ``torch.autocast(dtype)``, returning float32 outputs.

    Convolutions and matrix products run in ``dtype``; autocast keeps reductions such as normalisation
    statistics in float32, and the weights (and so checkpoints and optimiser states) stay float32.
    Checkpoints load into ``network``, which the wrapper shares.

    Args:
        network: the network (or another inference wrapper) to run.
        dtype: ``torch.bfloat16`` or ``torch.float16``.
        training: also autocast in training mode with gradients (mixed-precision training); by default
            only inference (eval mode, no gradients) is autocast and training runs ``network`` as is.

    Example::

        net = AutocastNetwork(UNet(3, 1, 2, (16, 32, 64), (2, 2)).eval(), torch.bfloat16)
        with torch.no_grad():
            logits = net(torch.rand(1, 1, 64, 64, 64))  # float32 (1, 2, 64, 64, 64), bf16 arithmetic
    """

    def __init__(self, network: nn.Module, dtype: torch.dtype, training: bool = False) -> None:
        super().__init__()
        if dtype not in (torch.bfloat16, torch.float16):
            raise ValueError(f"autocast dtype must be torch.bfloat16 or torch.float16, got {dtype}")
        self.network = network
        self.dtype = dtype
        self.autocast_training = training

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """``network(x)`` under autocast, as float32 (in training only when ``training`` was set).

        A list of outputs (deep supervision heads in training) comes back as a list of float32 tensors.
        """
        if not self.autocast_training and (self.training or torch.is_grad_enabled()):
            return self.network(x)
        with torch.autocast(x.device.type, dtype=self.dtype):
            out = self.network(x)
        if isinstance(out, (list, tuple)):
            return [o.float() for o in out]
        return out.float()


def with_precision(
    network: nn.Module, precision: str, device: torch.device | str, training: bool = False
) -> nn.Module:
    """``network`` itself for ``"fp32"``, else an :class:`AutocastNetwork` of it.

    Args:
        network: the network.
        precision: one of :data:`PRECISIONS`.
        device: where it runs; a warning is logged when the device would emulate the 16-bit type.
        training: autocast the training forward pass too (see :class:`AutocastNetwork`).

    Raises:
        ValueError: for an unknown ``precision``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {tuple(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return network
    dtype = PRECISIONS[precision]
    if not native_16bit(dtype, device):
        logger.warning(
            "%s has no native %s arithmetic (on CPUs: AVX-512 BF16 / FP16 or AMX): 16-bit arithmetic "
            "will be slower than float32 here; use precision 'fp32'",
            device,
            dtype,
        )
    return AutocastNetwork(network, dtype, training=training)
