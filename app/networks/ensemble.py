"""An ensemble of trained networks of one bundle: their class probabilities averaged, as nnU-Net does.

:func:`ensemble_network` builds it from run folders (``RUN_DIR/model.pt``) beside the bundle's own
network, and refuses members that were trained on cases the evaluation validates on.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from app.data.datalist import load_datalist
from app.engine.checkpoint import safe_load
from app.engine.trained import trained_network
from app.engine.weights import check_weights_fit
from app.errors import InputError

__all__ = ["MeanEnsemble", "ensemble_network"]

logger = logging.getLogger(__name__)

_TINY = 1e-12  # floor of the mean probability before its log: a class no member predicts stays finite


class MeanEnsemble(nn.Module):
    """Mean of the softmax probabilities of ``networks``, returned as log-probabilities.

    A softmax after this module (the bundles' post-processing) gives back the mean probabilities, so the
    ensemble stands where one network's logits stood: sliding windows, test-time mirroring, argmax.

    Args:
        networks: members with the same input and output channels; ``(B, C_in, *spatial)`` ->
            ``(B, C, *spatial)`` logits each.

    Example::

        ensemble = MeanEnsemble([net_a, net_b]).eval()
        probs = torch.softmax(ensemble(x), dim=1)  # == (softmax(net_a(x)) + softmax(net_b(x))) / 2
    """

    def __init__(self, networks: Sequence[nn.Module]) -> None:
        super().__init__()
        if not networks:
            raise ValueError("an ensemble needs at least one network")
        self.members = nn.ModuleList(networks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *spatial)`` -> ``(B, C, *spatial)`` log of the members' mean probabilities."""
        return _mean_log_probability(x, *(torch.softmax(net(x).float(), dim=1) for net in self.members))


@torch.fx.wrap
def _mean_log_probability(x: torch.Tensor, *probs: torch.Tensor) -> torch.Tensor:
    """Log of the mean of ``probs``, which must share one shape (``x``, the input, names the case).

    A leaf of ``torch.fx`` traces (its shape check is Python), so that batch-norm folding still sees the
    members' layers; skipped while ``torch.jit`` traces (ONNX export), where sizes are tensors.
    """
    shapes = {tuple(p.shape) for p in probs}
    if len(shapes) > 1 and not torch.jit.is_tracing():
        raise ValueError(
            f"ensemble members predict outputs of different shapes {sorted(shapes)} for one input of "
            f"{tuple(x.shape)}: members need the same classes and, for valid-padding networks, the same "
            "depth (the same margin)"
        )
    return torch.stack(probs).mean(0).clamp_min(_TINY).log()


def _images(entries: list[dict]) -> set[str]:
    """The image paths of datalist entries (several channels: one tuple per case), as strings."""
    return {str(e["image"]) for e in entries}


def ensemble_network(
    network: nn.Module,
    run_dirs: Sequence[str | Path],
    device: torch.device | str = "cpu",
    datalist: str | Path | Mapping | None = None,
    model_name: str = "model.pt",
    meta: Mapping | None = None,
) -> nn.Module:
    """``network`` alone, or a :class:`MeanEnsemble` of it and the models of ``run_dirs``.

    ``network`` is the bundle's network (its checkpoint loader fills it when the evaluator starts); each
    further member is the network its own run was trained as (:func:`app.engine.trained_network`: built
    from ``RUN_DIR/config.json``, else a copy of ``network``) with the weights of ``RUN_DIR/model_name``.

    Args:
        network: the bundle's network.
        run_dirs: run folders of further members (same bundle and network settings); empty: no ensemble.
        device: where the members run.
        datalist: the evaluated cases: the run's ``datalist.json`` or a datalist (e.g.
            :func:`app.data.evaluation_datalist`); when given, a member whose own ``datalist.json`` trained
            on any of its validation cases is refused (its scores would be inflated).
        model_name: the weights file in each run folder.
        meta: the bundle metadata (``@_meta_``) the members' recorded configs read.

    Raises:
        InputError: a member's weights or datalist are missing, do not fit the network, or the member
            trained on validation cases of ``datalist``.
    """
    if not run_dirs:
        return network
    if isinstance(datalist, str | Path):
        evaluated, source = load_datalist(datalist), datalist
    else:
        evaluated = datalist or {}
        source = evaluated.get("dataset_dir", "the run")
    validation = _images(evaluated.get("validation", []))
    members = [network]
    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        weights = run_dir / model_name
        if not weights.is_file():
            raise InputError(weights, "ensemble member has no weights file (train it first, or fix the path)")
        if validation:
            leaked = validation & _images(load_datalist(run_dir / "datalist.json")["training"])
            if leaked:
                raise InputError(
                    run_dir / "datalist.json",
                    f"ensemble member trained on {len(leaked)} validation case(s) of {source} "
                    f"(e.g. {sorted(leaked)[0]}); train members on the same split (--split_seed)",
                )
        member = trained_network(network, weights, meta)
        member = copy.deepcopy(network) if member is network else member
        state = safe_load(weights, map_location=device)
        check_weights_fit(state, member, weights)
        member.load_state_dict(state)
        members.append(member.to(device))
    logger.info("ensemble of %d networks: this run and %s", len(members), ", ".join(map(str, run_dirs)))
    return MeanEnsemble(members)
