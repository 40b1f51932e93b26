"""Export a bundle's network to ONNX with the bundle metadata embedded.

``python -m app export-onnx --config_file bundles/ct/train.json --ckpt runs/ct/model.pt --out model.onnx``

The network is the one the checkpoint was trained as: built from the training config its run folder
recorded (:func:`app.engine.trained_network`), else from the bundle config's ``network_def`` plus
overrides (so ONNX and TorchScript exports come from the same definition as training); the checkpoint
is loaded with ``weights_only=True``, and the model is exported with dynamic batch and spatial axes;
``metadata.json`` is stored in the ONNX ``metadata_props`` under the key ``"metadata.json"``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from app.errors import InputError

__all__ = ["build_network", "export_onnx", "add_parser"]

logger = logging.getLogger(__name__)


def build_network(
    config_files: Sequence[str | Path],
    meta_file: str | Path | None = None,
    overrides: dict | None = None,
    run_dir: str | Path | None = None,
) -> tuple[torch.nn.Module, dict]:
    """Instantiate ``network_def`` of a bundle config (plus overrides); returns it and the metadata.

    With ``run_dir`` (the weights' run folder) the config is pinned to that run
    (:func:`app.engine.trained.pin_to_run`), so that building the network starts no run: no
    ``command.json`` or ``config.json`` is written and no data are read (the MRI bundle counts its input
    channels from the run's saved split).
    """
    files = [str(f) for f in config_files]
    for f in files:
        if not Path(f).is_file():
            raise InputError(f, "config file does not exist")
    meta_path = Path(meta_file) if meta_file else Path(files[0]).parent / "metadata.json"
    parser = ConfigParser()
    parser.read_config(files)
    parser.read_meta(str(meta_path))
    if run_dir is not None:
        from app.engine.trained import pin_to_run

        pin_to_run(parser, run_dir)
    for key, value in (overrides or {}).items():
        parser[key] = value
    return parser.get_parsed_content("network_def"), parser.get("_meta_", {})


def export_onnx(
    network: torch.nn.Module,
    out_path: str | Path,
    spatial_dims: int,
    in_channels: int,
    metadata: dict | None = None,
    example_size: int = 32,
    opset: int = 17,
) -> Path:
    """Export ``network`` (eval mode, CPU) to ONNX, written atomically (temp file + rename).

    Args:
        network: the model; deep-supervision heads must already be off in eval mode.
        out_path: the ``.onnx`` file.
        spatial_dims, in_channels: the example input is ``(1, in_channels, *[example_size] * spatial_dims)``.
        metadata: bundle metadata stored as the ``metadata.json`` property.
        example_size: spatial size of the example input (a size the network accepts).
        opset: ONNX opset.
    """
    import onnx

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    network = network.to("cpu").eval()
    example = torch.rand(1, in_channels, *([example_size] * spatial_dims))
    axes = {0: "batch", **{2 + i: f"dim{i}" for i in range(spatial_dims)}}
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with torch.no_grad():
            torch.onnx.export(
                network,
                (example,),
                str(tmp),
                input_names=["image"],
                output_names=["pred"],
                dynamic_axes={"image": axes, "pred": axes},
                opset_version=opset,
                dynamo=False,
            )
        model = onnx.load(str(tmp))
        if metadata is not None:
            entry = model.metadata_props.add()
            entry.key, entry.value = "metadata.json", json.dumps(metadata)
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    logger.info("ONNX model written to %s", out)
    return out


def _cmd(args: argparse.Namespace) -> int:
    from app.engine.checkpoint import safe_load
    from app.engine.trained import trained_network
    from app.engine.weights import check_weights_fit

    overrides = {}
    for item in args.override or []:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    if not Path(args.ckpt).is_file():
        raise InputError(args.ckpt, "checkpoint does not exist")
    network, metadata = build_network(args.config_file, args.meta_file, overrides, Path(args.ckpt).parent)
    network = trained_network(network, args.ckpt, metadata)
    state = safe_load(args.ckpt)
    state = state.get("network", state)
    check_weights_fit(state, network, args.ckpt)
    network.load_state_dict(state)
    image = metadata.get("network_data_format", {}).get("inputs", {}).get("image", {})
    spatial_dims = len(image.get("spatial_shape", [0, 0, 0]))
    export_onnx(
        network,
        args.out,
        spatial_dims,
        _input_channels(network, int(image.get("num_channels", 1))),
        metadata,
        args.example_size,
    )
    return 0


def add_parser(subparsers) -> None:
    """Register ``export-onnx`` on the ``python -m app`` command line."""
    p = subparsers.add_parser("export-onnx", help="export a bundle's trained network to ONNX")
    p.add_argument("--config_file", nargs="+", required=True, help="bundle config file(s), e.g. train.json")
    p.add_argument("--meta_file", help="metadata.json (default: beside the first config file)")
    p.add_argument("--ckpt", required=True, help="model.pt (state dict) or a full checkpoint.pt")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--override", nargs="*", help="config overrides key=value (JSON values)")
    p.add_argument("--example-size", type=int, default=32, help="spatial size of the tracing input")
    p.set_defaults(func=_cmd)


def _input_channels(network: torch.nn.Module, default: int) -> int:
    """The input channels of ``network``'s first convolution (a run may have trained on several), else
    ``default`` (the metadata's ``num_channels``)."""
    for module in network.modules():
        if isinstance(module, torch.nn.modules.conv._ConvNd):
            return int(module.in_channels)
    return default
