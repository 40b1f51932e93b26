"""The network a run was trained as, rebuilt from the training config the run recorded.

Every training writes its merged config (bundle files + command-line overrides) to ``RUN_DIR/config.json``
(:func:`app.engine.run.start_run`). Evaluation and inference build their network from that record, as
nnU-Net keeps its plans beside the weights, so the options that shaped the network at training
(``--preset unet2015``, ``--features 32``, ``--network_def#filters ...``) need not be repeated.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from monai.bundle import ConfigParser
from torch import nn

from app.data.datalist import load_datalist
from app.engine.weights import describe_mismatch

__all__ = ["pin_to_run", "recorded_network", "trained_network"]

logger = logging.getLogger(__name__)

RECORD = "config.json"


def pin_to_run(parser: ConfigParser, run_dir: str | Path) -> None:
    """Point ``parser``'s bundle config at the existing run folder ``run_dir``, so that parsing it redoes
    nothing of the run: ``run_folder`` is the folder (no re-seeding, no new ``command.json`` or
    ``config.json``) and ``datalist`` the run's saved split (``datalist.json``; no data are read or checked;
    an empty split when the folder has none). Call it after the config is read.
    """
    run_dir = Path(run_dir)
    split = run_dir / "datalist.json"
    parser.globals["_run_folder"] = str(run_dir)
    parser.globals["_run_datalist"] = (
        load_datalist(split) if split.is_file() else {"training": [], "validation": []}
    )
    parser["run_folder"] = "$_run_folder"
    parser["datalist"] = "$_run_datalist"


def recorded_network(run_dir: str | Path, meta: Mapping | None = None) -> nn.Module:
    """``network_def`` of the training config recorded in ``run_dir``, instantiated.

    The record is parsed as it was trained, except that nothing of the run is redone (:func:`pin_to_run`:
    ``run_folder`` is the folder itself, ``datalist`` the run's saved split) and ``_meta_`` is ``meta`` (the
    bundle metadata of the current command). The torch random state is left
    as it was (the weights' random initialisation is drawn from a forked generator).

    Args:
        run_dir: a training run folder holding ``config.json``.
        meta: the bundle metadata the config's ``@_meta_`` references read (class names...).

    Raises:
        OSError, ValueError: the record is missing or is not JSON; any error of building the network
            (e.g. a record from a version whose options no longer exist).
    """
    run_dir = Path(run_dir)
    config = json.loads((run_dir / RECORD).read_text())
    if not isinstance(config, dict) or "network_def" not in config:
        raise ValueError("has no network_def")
    parser = ConfigParser(config)
    pin_to_run(parser, run_dir)
    parser["_meta_"] = dict(meta or {})
    with torch.random.fork_rng(devices=[]):
        network = parser.get_parsed_content("network_def")
    if not isinstance(network, nn.Module):
        raise ValueError(f"network_def builds a {type(network).__name__}, not a torch module")
    return network


def trained_network(configured: nn.Module, weights: str | Path, meta: Mapping | None = None) -> nn.Module:
    """The network ``weights`` were trained as, else ``configured``.

    Args:
        configured: the network the current command's config built (``@network_def``).
        weights: the weights file to load (``--model_path``); its folder is the run folder.
        meta: the bundle metadata (``@_meta_``), for :func:`recorded_network`.

    Returns:
        the network of the run's recorded config (:func:`recorded_network`) when the weights' folder has
        ``config.json``; otherwise ``configured`` (weights from elsewhere, a run started from Python). A
        record that cannot be rebuilt also falls back to ``configured``, with a warning naming the file and
        the reason; loading the weights then checks that they fit (:class:`app.engine.WeightsLoader`).
    """
    run_dir = Path(weights).parent
    record = run_dir / RECORD
    if not record.is_file():
        logger.info("no %s beside %s: the network is built from this command's config", RECORD, weights)
        return configured
    try:
        network = recorded_network(run_dir, meta)
    except Exception as error:  # noqa: BLE001 - any failure of an old or edited record: use the config
        logger.warning(
            "%s: cannot rebuild the training network (%s: %s); building it from this command's config",
            record,
            type(error).__name__,
            error,
        )
        return configured
    if type(network) is not type(configured):  # e.g. trained with a variant overlay this command lacks
        logger.info(
            "%s: the run trained a %s where this command's config builds a %s; using the run's",
            record,
            type(network).__name__,
            type(configured).__name__,
        )
    elif describe_mismatch(network.state_dict(), configured) is not None:
        logger.info("%s: the run was trained with other network options than this command's config", record)
    logger.info("network as trained, from %s", record)
    return network
