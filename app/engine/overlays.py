"""The best and worst validation cases by Dice: ``run_dir/overlays.npz`` and ``overlays.png``.

Only 2D views are kept: a 2D case ``(C, H, W)`` is one view; a 3D case ``(C, H, W, D)`` is the three
orthogonal planes through the centre of mass of its ground-truth foreground (the volume centre when
it has none). Planes are named for the RAS orientation the 3D bundles resample to (axis 0 sagittal,
1 coronal, 2 axial) and stored turned so that ``imshow`` shows the second in-plane axis upwards.

``overlays.npz`` (read back with :func:`load_cases`) holds, for ``role`` in ``best``/``worst`` and
view ``i``: ``{role}_{i}_image`` (float32, first image channel), ``{role}_{i}_label`` and
``{role}_{i}_pred`` (uint8 class maps), plus ``meta``: a JSON string
``[{"role", "name", "dice", "planes": [...]}, ...]``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data import decollate_batch
from monai.metrics import compute_dice
from monai.utils import convert_to_numpy

from app.engine.plots import plot_overlays

__all__ = [
    "OVERLAYS_NAME",
    "OVERLAYS_DATA_NAME",
    "CaseView",
    "OverlayCase",
    "BestWorstCases",
    "case_dice",
    "case_views",
    "save_cases",
    "load_cases",
]

logger = logging.getLogger(__name__)

OVERLAYS_NAME = "overlays.png"
OVERLAYS_DATA_NAME = "overlays.npz"
PLANE_NAMES = ("sagittal", "coronal", "axial")


@dataclass
class CaseView:
    """One 2D view of a case: ``image`` (H, W) float, ``label`` and ``pred`` (H, W) class maps."""

    plane: str
    image: np.ndarray
    label: np.ndarray
    pred: np.ndarray


@dataclass
class OverlayCase:
    """A validation case reduced to its views; ``role`` is ``"best"`` or ``"worst"``."""

    role: str
    name: str
    dice: float
    views: list[CaseView]


def _class_map(x: torch.Tensor) -> torch.Tensor:
    """``(C, *spatial)`` one-hot (C > 1) or ``(1, *spatial)`` class map -> ``(*spatial)`` class map."""
    return x.argmax(0) if x.shape[0] > 1 else x[0].round().long()


def case_dice(pred: torch.Tensor, label: torch.Tensor) -> float:
    """Mean foreground Dice of one case.

    Args:
        pred, label: ``(C, *spatial)`` one-hot, or ``(1, *spatial)`` class maps.

    An empty ground truth scores 1 with an empty prediction and 0 otherwise (MONAI's
    ``ignore_empty=False``), so every case can be ranked.
    """
    if pred.shape[0] > 1:
        y_pred, y, num_classes = pred[None], label[None], None
    else:
        y_pred, y = pred[None].round().long(), label[None].round().long()
        num_classes = max(int(y_pred.max()), int(y.max()), 1) + 1
    dice = compute_dice(y_pred, y, include_background=False, ignore_empty=False, num_classes=num_classes)
    return float(dice.float().nanmean())


def case_views(image: torch.Tensor, label: torch.Tensor, pred: torch.Tensor) -> list[CaseView]:
    """The 2D views of one case (see the module docstring).

    Args:
        image: ``(C, H, W)`` or ``(C, H, W, D)``; channel 0 is shown.
        label, pred: one-hot ``(C, *spatial)`` or class maps ``(1, *spatial)`` on the image grid.
    """
    img = convert_to_numpy(image[0], dtype=np.float32)
    lab = convert_to_numpy(_class_map(label), dtype=np.uint8)
    prd = convert_to_numpy(_class_map(pred), dtype=np.uint8)
    if img.ndim == 2:
        return [CaseView("2D", img, lab, prd)]
    foreground = np.argwhere(lab > 0)
    centre = foreground.mean(0) if len(foreground) else (np.array(lab.shape) - 1) / 2
    views = []
    for axis, plane in enumerate(PLANE_NAMES):
        index = int(round(centre[axis]))
        turn = [np.flipud(np.take(a, index, axis=axis).T) for a in (img, lab, prd)]
        views.append(CaseView(f"{plane} {index}", *turn))
    return views


def save_cases(cases: list[OverlayCase], path: str | Path) -> Path:
    """Write ``cases`` to an ``.npz`` file (format in the module docstring), atomically."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    meta = []
    for case in cases:
        meta.append(
            {"role": case.role, "name": case.name, "dice": case.dice, "planes": [v.plane for v in case.views]}
        )
        for i, view in enumerate(case.views):
            prefix = f"{case.role}_{i}"
            arrays.update(
                {f"{prefix}_image": view.image, f"{prefix}_label": view.label, f"{prefix}_pred": view.pred}
            )
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, meta=np.array(json.dumps(meta)), **arrays)
    os.replace(tmp, path)
    return path


def load_cases(path: str | Path) -> list[OverlayCase]:
    """Read what :func:`save_cases` wrote."""
    with np.load(path, allow_pickle=False) as data:
        cases = []
        for m in json.loads(str(data["meta"])):
            views = [
                CaseView(plane, *(data[f"{m['role']}_{i}_{key}"] for key in ("image", "label", "pred")))
                for i, plane in enumerate(m["planes"])
            ]
            cases.append(OverlayCase(m["role"], m["name"], m["dice"], views))
    return cases


def _case_name(item: dict, index: int) -> str:
    meta = getattr(item.get("image"), "meta", None) or {}
    source = meta.get("filename_or_obj")
    return Path(str(source)).name if source else f"case {index}"


class BestWorstCases:
    """Evaluator handler: after each validation run, plot the best and worst case by Dice.

    Expects the evaluator's post-processed outputs: a decollated list of dicts (a batched dict is
    decollated) with ``image`` ``(C, *spatial)`` and ``pred``/``label`` one-hot or class maps on the
    image grid, 2D or 3D. Only the current best and worst case are kept, already reduced to their 2D
    views, so memory does not grow with the validation set. Under ``torch.distributed`` each rank
    sees its own share of the cases; attach it on rank 0 only.

    Args:
        run_dir: folder for ``overlays.npz`` and ``overlays.png``.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.best: OverlayCase | None = None
        self.worst: OverlayCase | None = None
        self._seen = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._on_iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._on_epoch_completed)

    def _reset(self, engine: Engine) -> None:
        self.best = self.worst = None
        self._seen = 0

    def _on_iteration(self, engine: Engine) -> None:
        output = engine.state.output
        for item in output if isinstance(output, list) else decollate_batch(output):
            dice = case_dice(item["pred"], item["label"])
            name = _case_name(item, self._seen)
            self._seen += 1
            is_best = self.best is None or dice > self.best.dice
            is_worst = self.worst is None or dice < self.worst.dice
            if not (is_best or is_worst):
                continue
            views = case_views(item["image"], item["label"], item["pred"])
            if is_best:
                self.best = OverlayCase("best", name, dice, views)
            if is_worst:
                self.worst = OverlayCase("worst", name, dice, views)

    def _on_epoch_completed(self, engine: Engine) -> None:
        if self.best is None or self.worst is None:
            return
        cases = [self.best, self.worst]
        save_cases(cases, self.run_dir / OVERLAYS_DATA_NAME)
        plot_overlays(cases, self.run_dir / OVERLAYS_NAME)
        logger.debug(
            "overlays of %s (best) and %s (worst) -> %s", self.best.name, self.worst.name, self.run_dir
        )
