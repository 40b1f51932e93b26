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
"""

from __future__ import annotations

import copy
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from app.engine.run import check_compile, to_channels_last
from app.io.onnx_export import export_onnx

__all__ = ["INFERENCE_BACKENDS", "OnnxRuntimeNetwork", "inference_network"]

logger = logging.getLogger(__name__)

INFERENCE_BACKENDS = ("torch", "inductor", "onnxruntime")
"""``"torch"``: the network itself (PyTorch eager); ``"inductor"``: ``torch.compile`` of it;
``"onnxruntime"``: :class:`OnnxRuntimeNetwork`."""


class OnnxRuntimeNetwork(nn.Module):
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
        super().__init__()
        self.network = network
        self.providers = providers
        self.intra_op_num_threads = intra_op_num_threads
        self._session: Any = None
        self._exported_for: tuple | None = None

    def _weights_fingerprint(self) -> tuple:
        """Storage and version of each weight (``load_state_dict`` and optimiser steps change them)."""
        return tuple((t.data_ptr(), t._version) for t in self.network.state_dict().values())

    def _session_for(self, x: torch.Tensor) -> Any:
        """The session for the current weights, exporting the network when they changed."""
        fingerprint = (self._weights_fingerprint(), x.shape[1], x.ndim, x.device.type)
        if self._session is not None and fingerprint == self._exported_for:
            return self._session
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
            self._session = ort.InferenceSession(str(path), options, providers=providers)
        self._exported_for = fingerprint
        logger.info("ONNX Runtime session built (%s)", ", ".join(self._session.get_providers()))
        return self._session

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``network(x)``: through ONNX Runtime in eval mode without gradients, else through PyTorch."""
        if self.training or torch.is_grad_enabled():
            return self.network(x)
        session = self._session_for(x)
        array = x.detach().float().cpu().contiguous().numpy()
        (out,) = session.run(None, {"image": array})
        return torch.from_numpy(out).to(x.device)


def inference_network(network: nn.Module, backend: str = "torch", channels_last: bool = False) -> nn.Module:
    """The network to run inference with.

    Args:
        network: the bundle's network; checkpoints keep loading into it.
        backend: one of :data:`INFERENCE_BACKENDS`.
        channels_last: convert ``network``'s weights in place to the channels-last memory format
            (``channels_last_3d`` for 3-D convolutions, ``channels_last`` for 2-D). PyTorch backends
            only: ONNX Runtime chooses its own layouts, so the flag is ignored there.

    Returns:
        ``network`` (PyTorch), its ``torch.compile`` wrapper (which shares its weights: checkpoints loaded
        into ``network`` take effect), or an :class:`OnnxRuntimeNetwork` wrapping it.

    Raises:
        ValueError: for an unknown ``backend``.
        RuntimeError: ``"inductor"`` on a CPU-only machine without a C++ compiler.
    """
    if backend not in INFERENCE_BACKENDS:
        raise ValueError(f"backend must be one of {INFERENCE_BACKENDS}, got {backend!r}")
    if backend == "onnxruntime":
        return OnnxRuntimeNetwork(network)
    network = to_channels_last(network) if channels_last else network
    if backend == "inductor":
        device = next(network.parameters()).device
        check_compile(True, device)
        return torch.compile(network, dynamic=False)
    return network
