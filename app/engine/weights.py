"""Loading trained weights into a configured network, with an error that says why they do not fit.

A run trained with network overrides (``--network_def#filters ...``, ``--features 32``, ``--preset ...``)
saves weights that only fit a network built with the same overrides. PyTorch then reports dozens of
``size mismatch`` lines; :func:`check_weights_fit` turns them into one :class:`~app.errors.InputError` that
names the weights file, counts the differences, shows the first one and, when the run folder holds the
``command.json`` every training writes, quotes the overrides the run was trained with.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path

import torch
from ignite.engine import Engine
from monai.handlers import CheckpointLoader
from torch import nn

from app.engine.checkpoint import safe_load
from app.engine.run import bundle_cli_options
from app.errors import InputError

__all__ = ["WeightsLoader", "check_weights_fit", "describe_mismatch", "training_overrides"]

# options of the bundles' training commands that never change the network's tensors
_NOT_NETWORK = {
    "config_file", "meta_file", "logging_file", "dataset_dir", "run_dir", "seed", "split_seed", "epochs",
    "val_interval", "val_fraction", "fold", "n_folds", "early_stop_patience", "learning_rate", "batch_size",
    "samples_per_image", "patch_size", "tile_size", "flip_axes", "rotate90", "precision", "amp", "compile",
    "channels_last", "cache_rate", "num_workers", "sw_batch_size", "device",
}


def describe_mismatch(state: Mapping[str, torch.Tensor], network: nn.Module) -> str | None:
    """What differs between a state dict and ``network``'s, or ``None`` when every tensor fits.

    Example: ``"12 tensors differ in shape (first: 'conv.weight' is [16, 1, 3, 3] in the file,
    [8, 1, 3, 3] in the network)"``, followed by the counts of missing and unexpected keys, if any.
    """
    own = network.state_dict()
    shape = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    parts = []
    if shape:
        k = shape[0]
        parts.append(f"{len(shape)} tensor(s) differ in shape (first: {k!r} is {list(state[k].shape)} in the "
                     f"file, {list(own[k].shape)} in the network)")
    if missing:
        parts.append(f"{len(missing)} network tensor(s) missing from the file (first: {missing[0]!r})")
    if unexpected:
        parts.append(f"{len(unexpected)} tensor(s) in the file the network does not have (first: "
                     f"{unexpected[0]!r})")
    return "; ".join(parts) or None


def training_overrides(run_dir: str | Path) -> list[str] | None:
    """The options of the training command saved in ``run_dir/command.json`` that can shape the network.

    Returns ``None`` when the folder has no readable ``command.json``; else ``["--key value", ...]`` without
    the options that never change the network's tensors (data, folders, seeds, schedule, precision...; an
    empty list: the network was trained with the bundle defaults).
    """
    try:
        argv = json.loads((Path(run_dir) / "command.json").read_text())["argv"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    options = bundle_cli_options(argv)
    return [f"--{k} {shlex.quote(v)}" if v else f"--{k}" for k, v in options.items() if k not in _NOT_NETWORK]


def check_weights_fit(state: Mapping[str, torch.Tensor], network: nn.Module, path: str | Path) -> None:
    """Raise an :class:`InputError` naming ``path`` when ``state`` does not fit ``network``.

    The message says what differs (:func:`describe_mismatch`) and, from ``command.json`` beside the file,
    which overrides the run was trained with, to repeat on this command.
    """
    mismatch = describe_mismatch(state, network)
    if mismatch is None:
        return
    overrides = training_overrides(Path(path).parent)
    if overrides is None:
        hint = "build the network with the settings these weights were trained with"
    elif overrides:
        hint = f"its run was trained with {' '.join(overrides)}: repeat the options that shape the network"
    else:
        hint = "its run was trained with the bundle defaults: drop the network options of this command"
    raise InputError(path, f"weights do not fit the configured network: {mismatch}; {hint}")


class WeightsLoader(CheckpointLoader):
    """MONAI's ``CheckpointLoader`` whose failures name the file and say what to fix.

    Same arguments as ``CheckpointLoader``. A missing file, or weights that do not fit a network of
    ``load_dict`` (checked with :func:`check_weights_fit` once loading failed), raise :class:`InputError`.
    """

    def __call__(self, engine: Engine) -> None:
        """Load the weights into the objects of ``load_dict``."""
        if not Path(self.load_path).is_file():
            raise InputError(self.load_path, "no such weights file (train first, or fix --model_path)")
        try:
            super().__call__(engine)
            return
        except RuntimeError as e:
            error = e
        # outside the except block: the InputError does not drag PyTorch's per-tensor listing along
        state = safe_load(self.load_path, map_location="cpu")
        key = next(iter(self.load_dict))
        if len(self.load_dict) == 1 and key not in state:
            state = {key: state}
        for name, obj in self.load_dict.items():
            if isinstance(obj, nn.Module) and isinstance(state.get(name), Mapping):
                check_weights_fit(state[name], obj, self.load_path)
        raise error
