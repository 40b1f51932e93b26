"""Inference backends of a bundle network: PyTorch eager (optionally channels-last), TorchInductor, or
ONNX Runtime.

``inference_network(network, backend, channels_last)`` is the bundle config's single choice point.

On CPU, oneDNN runs 3-D convolutions on channels-last (``NDHWC``) tensors without the layout reorders it
needs around every convolution of a default (``NCDHW``) network; outputs match to float rounding.
ONNX Runtime folds batch norm into the convolutions and fuses element-wise operations when it builds
its session, which PyTorch eager mode does not do. :class:`OnnxRuntimeNetwork` wraps the bundle's
network so that checkpoint loading (``CheckpointLoader`` on the wrapped network) and the evaluator work
unchanged: the network is exported with :func:`app.io.onnx_export.export_onnx` (the same export as
``python -m app export-onnx``) on the first call in eval mode, and again whenever its weights change.
``"inductor"`` compiles the (channels-last) network with ``torch.compile``: TorchInductor fuses the
batch-norm, activation and residual passes between oneDNN's convolutions. Compiling takes 30-60 s on
a 2-core CPU (once per process and window batch size; TorchInductor's on-disk cache shortens later
runs), so it pays off on many volumes, not one; it needs a C++ compiler on the CPU.

``precision`` runs the PyTorch backends under ``torch.autocast``
(:class:`app.engine.precision.AutocastNetwork`): ``"bf16"`` halves the convolutions' time on CPUs with
native bfloat16 arithmetic (AVX-512 BF16, AMX) and on GPUs, at the price of rounding: logits differ
from float32 by about 1 % of their scale, and labels only where two class scores nearly tie. MONAI's
engines autocast on CUDA only (``amp``), hence the wrapper.
"""

from __future__ import annotations

import copy
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

from app.engine.precision import PRECISIONS, with_precision
from app.engine.run import check_compile, to_channels_last
from app.flags import as_bool
from app.io.onnx_export import export_onnx

__all__ = [
    "INFERENCE_BACKENDS",
    "INFERENCE_PRECISIONS",
    "DerivedNetwork",
    "FoldedBatchNormNetwork",
    "OnnxRuntimeNetwork",
    "inference_network",
]

logger = logging.getLogger(__name__)

INFERENCE_BACKENDS = ("torch", "inductor", "onnxruntime")
"""``"torch"``: the network itself (PyTorch eager); ``"inductor"``: ``torch.compile`` of it;
``"onnxruntime"``: :class:`OnnxRuntimeNetwork`."""

INFERENCE_PRECISIONS = tuple(PRECISIONS)
"""Arithmetic of the network's forward pass: ``"fp32"`` as trained, or ``torch.autocast`` to a 16-bit type."""


class DerivedNetwork(nn.Module):
    """Base of inference wrappers that run a network derived from ``network`` (an exported session, a
    folded copy) in eval mode without gradients, rebuilt when the weights of ``network`` change.

    Training mode and gradients go through ``network`` itself, and checkpoints load into it, so the
    wrapper can stand where the bundle's network stands. Subclasses define :meth:`build` and :meth:`run`.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self._derived: Any = None
        self._built_for: tuple | None = None

    def _weights_fingerprint(self) -> tuple:
        """Storage and version of each weight (``load_state_dict`` and optimiser steps change them)."""
        return tuple((t.data_ptr(), t._version) for t in self.network.state_dict().values())

    def derived_for(self, x: torch.Tensor) -> Any:
        """The derived network for the current weights and ``x``'s channels, dims and device."""
        fingerprint = (self._weights_fingerprint(), x.shape[1], x.ndim, x.device.type)
        if self._derived is None or fingerprint != self._built_for:
            self._derived = self.build(x)
            self._built_for = fingerprint
        return self._derived

    def build(self, x: torch.Tensor) -> Any:
        """The derived network for inputs like ``x``."""
        raise NotImplementedError

    def run(self, derived: Any, x: torch.Tensor) -> torch.Tensor:
        """``derived`` applied to ``x``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``network(x)``: through the derived network in eval mode without gradients, else ``network``."""
        if self.training or torch.is_grad_enabled():
            return self.network(x)
        return self.run(self.derived_for(x), x)


class OnnxRuntimeNetwork(DerivedNetwork):
    """``network`` for inference with ONNX Runtime; training mode and gradients use ``network`` itself.

    Args:
        network: the PyTorch network (its weights are read at export time; load checkpoints into it).
        providers: ONNX Runtime execution providers; default ``CUDAExecutionProvider`` (when the
            input is on a CUDA device and the provider is installed) then ``CPUExecutionProvider``.
        intra_op_num_threads: threads of one operator; 0 (default) lets ONNX Runtime use every core.

    Raises:
        ImportError: on the first inference call when ``onnxruntime`` (or ``onnx``) is not installed
            (``pip install -e '.[deploy]'``).

    Example::

        net = OnnxRuntimeNetwork(UNet(3, 1, 2, (16, 32, 64, 128, 256), (2, 2, 2, 2), num_res_units=2))
        net.network.load_state_dict(torch.load("model.pt"))
        with torch.no_grad():
            logits = net.eval()(torch.rand(4, 1, 96, 96, 96))  # (4, 2, 96, 96, 96), via ONNX Runtime
    """

    def __init__(
        self,
        network: nn.Module,
        providers: list[str] | None = None,
        intra_op_num_threads: int = 0,
    ) -> None:
        super().__init__(network)
        self.providers = providers
        self.intra_op_num_threads = intra_op_num_threads

    def build(self, x: torch.Tensor) -> Any:
        """An ONNX Runtime session of the network exported for inputs like ``x``."""
        import onnxruntime as ort

        spatial_dims, in_channels = x.ndim - 2, x.shape[1]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "network.onnx"
            # a copy: export moves the network to the CPU and to eval mode
            export_onnx(
                copy.deepcopy(self.network), path, spatial_dims, in_channels, example_size=min(x.shape[2:])
            )
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.intra_op_num_threads = self.intra_op_num_threads
            providers = self.providers or [
                p
                for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                if p in ort.get_available_providers() and (x.is_cuda or p == "CPUExecutionProvider")
            ]
            session = ort.InferenceSession(str(path), options, providers=providers)
        logger.info("ONNX Runtime session built (%s)", ", ".join(session.get_providers()))
        return session

    def run(self, derived: Any, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().float().cpu().contiguous().numpy()
        (out,) = derived.run(None, {"image": array})
        return torch.from_numpy(out).to(x.device)


class FoldedBatchNormNetwork(DerivedNetwork):
    """``network`` for inference with every batch norm that follows a convolution folded into it.

    In eval mode a batch norm is an affine map per channel, so ``bn(conv(x))`` is one convolution with
    rescaled weights and bias (``torch.fx.experimental.optimization.fuse``): one memory pass less per
    layer, the same outputs to float rounding. Batch norms after transposed convolutions stay. The fold
    works on a copy (rebuilt when the weights change), kept in the channels-last memory format when the
    network is; a network that ``torch.fx`` cannot trace runs unfolded (with a warning).
    """

    def build(self, x: torch.Tensor) -> nn.Module:
        """A folded copy of the network (or the network itself when it cannot be traced)."""
        try:
            folded = fuse(copy.deepcopy(self.network).eval())
        except Exception as error:  # torch.fx raises several types for untraceable code
            logger.warning("batch norm not folded: the network cannot be traced by torch.fx (%s)", error)
            return self.network
        return to_channels_last(folded) if _in_channels_last(self.network) else folded

    def run(self, derived: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return derived(x)


def _in_channels_last(network: nn.Module) -> bool:
    """Whether ``network``'s convolution weights are stored channels-last (not merely both, as 1x1 ones)."""
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    return any(
        w.ndim in formats and not w.is_contiguous() and w.is_contiguous(memory_format=formats[w.ndim])
        for w in network.parameters()
    )


def inference_network(
    network: nn.Module,
    backend: str = "torch",
    channels_last: bool = False,
    fold_batch_norm: bool = False,
    precision: str = "fp32",
) -> nn.Module:
    """The network to run inference with.

    Args:
        network: the bundle's network; checkpoints keep loading into it.
        backend: one of :data:`INFERENCE_BACKENDS`.
        channels_last: convert ``network``'s weights in place to the channels-last memory format
            (``channels_last_3d`` for 3-D convolutions, ``channels_last`` for 2-D). PyTorch backends
            only: ONNX Runtime chooses its own layouts, so the flag is ignored there.
        fold_batch_norm: ``"torch"`` backend: run a :class:`FoldedBatchNormNetwork` (TorchInductor and
            ONNX Runtime fold and fuse by themselves).
        precision: one of :data:`INFERENCE_PRECISIONS`; ``"bf16"`` / ``"fp16"`` wrap the PyTorch
            backends in an :class:`~app.engine.precision.AutocastNetwork` (a warning is logged on a
            device that would emulate the type). ONNX Runtime runs the exported float32 graph: only
            ``"fp32"`` is accepted with it.

    Returns:
        ``network`` (PyTorch), a :class:`FoldedBatchNormNetwork` wrapping it, its ``torch.compile``
        wrapper (which shares its weights: checkpoints loaded into ``network`` take effect), or an
        :class:`OnnxRuntimeNetwork` wrapping it.

    Raises:
        ValueError: for an unknown ``backend`` or ``precision``, 16-bit ``precision`` with ONNX Runtime, or
            flags that are not booleans (words as :func:`app.flags.as_bool` reads them are accepted).
        RuntimeError: ``"inductor"`` on a CPU-only machine without a C++ compiler.
    """
    if backend not in INFERENCE_BACKENDS:
        raise ValueError(f"backend must be one of {INFERENCE_BACKENDS}, got {backend!r}")
    if precision not in INFERENCE_PRECISIONS:
        raise ValueError(f"precision must be one of {INFERENCE_PRECISIONS}, got {precision!r}")
    if backend == "onnxruntime":
        if precision != "fp32":
            raise ValueError(f"precision {precision!r} needs a PyTorch backend; ONNX Runtime runs float32")
        return OnnxRuntimeNetwork(network)
    network = to_channels_last(network) if as_bool(channels_last, "channels_last") else network
    device = next(network.parameters()).device
    if backend == "inductor":
        check_compile(True, device)
    fold = as_bool(fold_batch_norm, "fold_batch_norm")
    wrapped = FoldedBatchNormNetwork(network) if fold and backend == "torch" else network
    wrapped = with_precision(wrapped, precision, device)
    return torch.compile(wrapped, dynamic=False) if backend == "inductor" else wrapped
