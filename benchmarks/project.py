"""The project side: the CT bundle's own pipelines, built from its config files with ``ConfigParser``.

Nothing here re-implements the pipelines: the trainer is ``train#trainer`` of ``bundles/ct/train.json``
and the inference is ``infer#evaluator`` of ``train.json`` + ``inference.json`` (as
``python -m monai.bundle run inference`` builds them), with overrides only for data and run folders,
sizes and the settings a comparison must hold equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser
from monai.data import Dataset
from monai.engines import SupervisedEvaluator, SupervisedTrainer

from app.paths import REPO_ROOT

__all__ = ["CT_BUNDLE", "bundle_parser", "project_evaluator", "project_trainer"]

CT_BUNDLE = REPO_ROOT / "bundles" / "ct"


def bundle_parser(config_files: Sequence[str], overrides: dict[str, Any]) -> ConfigParser:
    """``ConfigParser`` of CT bundle files (names in ``bundles/ct``) with its metadata and ``overrides``.

    Override values are config content (``"$..."`` expressions, references) or ready Python objects.
    """
    parser = ConfigParser()
    parser.read_config([str(CT_BUNDLE / name) for name in config_files])
    parser.read_meta(str(CT_BUNDLE / "metadata.json"))
    for key, value in overrides.items():
        parser[key] = value
    return parser


def _device_expression(device: torch.device) -> str:
    return f"$torch.device({str(device)!r})"


def project_trainer(
    dataset_dir: str | Path,
    run_dir: str | Path,
    device: torch.device,
    patch_size: Sequence[int],
    batch_size: int,
    num_samples: int,
    dataset: Dataset | None = None,
    overrides: dict[str, Any] | None = None,
) -> tuple[SupervisedTrainer, Dataset, list[dict] | None]:
    """The CT bundle's trainer for one epoch without validation, in a fresh ``run_dir``.

    Args:
        dataset_dir: MSD-layout CT set.
        run_dir: run folder (must not hold a checkpoint: the trainer would resume from it).
        device: where the network trains.
        patch_size, batch_size, num_samples: the sizes held equal with the baseline.
        dataset: the training ``CacheDataset`` of an earlier call, reused instead of caching again.
        overrides: further config overrides (e.g. a variant's ``network``).

    Returns:
        the trainer, its training dataset, and the training datalist (the bundle's own split; None when
        ``dataset`` is given).
    """
    config = {
        "dataset_dir": str(dataset_dir),
        "run_dir": str(run_dir),
        "device": _device_expression(device),
        "patch_size": list(patch_size),
        "batch_size": batch_size,
        "num_samples": num_samples,
        "epochs": 1,
        "val_interval": 2,  # after the only epoch: no validation in the measurement
        **(overrides or {}),
    }
    if dataset is not None:
        config["train#dataset"] = dataset
        config["validate#dataset"] = Dataset([])  # never run; an empty one skips caching it again
    parser = bundle_parser(["train.json"], config)
    parser.get_parsed_content("initialize")
    trainer = parser.get_parsed_content("train#trainer")
    datalist = None if dataset is not None else parser.get_parsed_content("datalist")["training"]
    return trainer, parser.get_parsed_content("train#dataset"), datalist


def project_evaluator(
    image: str | Path,
    output_dir: str | Path,
    model_path: str | Path,
    run_dir: str | Path,
    device: torch.device,
    roi_size: Sequence[int],
    sw_batch_size: int = 4,
    overlap: float = 0.5,
    blend_mode: str = "constant",
    overrides: dict[str, Any] | None = None,
) -> SupervisedEvaluator:
    """The CT bundle's inference of one image file with the weights in ``model_path``.

    ``roi_size``, ``sw_batch_size``, ``overlap`` and ``blend_mode`` override the bundle's sliding
    window (its default blending is Gaussian; the reference recipe's is constant). ``overrides`` set
    the bundle's inference choices (``inference_backend``, ``channels_last``, ``separable_inversion``).
    """
    config = {
        "run_dir": str(run_dir),
        "input_dir": str(image),
        "output_dir": str(output_dir),
        "model_path": str(model_path),
        "device": _device_expression(device),
        "patch_size": list(roi_size),
        "sw_batch_size": sw_batch_size,
        "sw_overlap": overlap,
        "validate#inferer#mode": blend_mode,
        **(overrides or {}),
    }
    parser = bundle_parser(["train.json", "inference.json"], config)
    parser.get_parsed_content("initialize")
    return parser.get_parsed_content("infer#evaluator")
