"""Where a trained EM model's pixel errors lie: near the label's boundaries or away from them.

The ISBI pixel error counts every pixel whose thresholded cell probability disagrees with the label. Errors
on pixels next to a membrane's edge (membrane a pixel too thick or too thin) are the annotation's own
uncertainty; errors far from any edge are missed or invented membranes, which more capacity or training
can fix. This reads a run folder of the EM bundle, predicts its slices with the bundle's own validation
inferer and the run's final weights, and reports per split (the run's validation slices, and its training
slices for comparison):

- the pixel error, split into cell-where-membrane and membrane-where-cell;
- the share of the pixel error at each distance from the label's cell/membrane boundary (1 px: the pixel
  touches the boundary);
- the pixel error when the cell probability is thresholded at 0.3 ... 0.7 instead of 0.5 (to read, not to
  pick a threshold: picking it on validation slices would tune to them).

    python -m benchmarks.em_errors --run_dir runs/isbi [--model model_final.pt] [--out benchmarks/results]

writes ``em_errors.json`` and ``em_errors.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

__all__ = ["boundary_distance", "error_profile", "threshold_sweep", "predict", "main"]

logger = logging.getLogger(__name__)

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "em"
THRESHOLDS = tuple(np.round(np.linspace(0.3, 0.7, 9), 2).tolist())


def boundary_distance(label: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel to the nearest pixel of the other class of a binary ``label``.

    Args:
        label: boolean array (any dimensionality), True for cells.

    Returns:
        float array of ``label``'s shape; 1 for pixels touching the other class along an axis.

    Raises:
        ValueError: if ``label`` holds one class only (no boundary to measure from).
    """
    label = np.asarray(label, dtype=bool)
    if label.all() or not label.any():
        raise ValueError("the label has one class only: no boundary to measure distances from")
    return np.where(label, ndimage.distance_transform_edt(label), ndimage.distance_transform_edt(~label))


def error_profile(pred: np.ndarray, label: np.ndarray, max_distance: int = 8) -> dict[str, object]:
    """Counts of the wrong pixels of ``pred`` against ``label``, in total and by boundary distance.

    Args:
        pred: boolean prediction, True for cells.
        label: boolean label of the same shape.
        max_distance: the last distance bin; it also holds every error further away.

    Returns:
        ``{"pixels", "errors", "cell_where_membrane", "membrane_where_cell", "by_distance"}`` where
        ``by_distance[k]`` counts the errors at distances in ``(k, k + 1]`` px (``k = 0`` touches the
        boundary), the last bin everything beyond ``max_distance - 1``.
    """
    pred, label = np.asarray(pred, dtype=bool), np.asarray(label, dtype=bool)
    if pred.shape != label.shape:
        raise ValueError(f"prediction {pred.shape} and label {label.shape} differ in shape")
    wrong = pred != label
    bins = np.clip(np.ceil(boundary_distance(label)[wrong]).astype(int), 1, max_distance) - 1
    return {
        "pixels": int(label.size),
        "errors": int(wrong.sum()),
        "cell_where_membrane": int((pred & ~label).sum()),
        "membrane_where_cell": int((~pred & label).sum()),
        "by_distance": np.bincount(bins, minlength=max_distance).tolist(),
    }


def threshold_sweep(
    prob: np.ndarray, label: np.ndarray, thresholds: Sequence[float] = THRESHOLDS
) -> list[int]:
    """Number of wrong pixels when ``prob`` (cell probability) is thresholded at each of ``thresholds``."""
    label = np.asarray(label, dtype=bool)
    return [int(((prob > t) != label).sum()) for t in thresholds]


def predict(run_dir: Path, model: str, split: str) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, cell probability, label)`` of each slice of ``split`` in ``run_dir``'s saved datalist.

    The network, preprocessing and inferer are the EM bundle's (``train.json`` + ``evaluate.json``, the
    run's ``config.json`` choices for preset, width and depth), the weights ``run_dir / model``.
    """
    from monai.bundle import ConfigParser
    from monai.data import Dataset

    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "train.json"), str(BUNDLE / "evaluate.json")])
    parser.read_meta(str(BUNDLE / "metadata.json"))
    saved = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").exists() else {}
    for key in ("preset", "features", "depth", "norm", "tile_size", "flip_axes", "rotate90"):
        if key in saved:
            parser[key] = saved[key]
    parser["run_dir"] = str(run_dir)
    network = parser.get_parsed_content("network")
    network.load_state_dict(torch.load(run_dir / model, map_location="cpu", weights_only=True))
    network.eval()
    inferer = parser.get_parsed_content("validate#inferer")
    items = parser.get_parsed_content("datalist")[split]
    for item in Dataset(items, parser.get_parsed_content("validate#preprocessing")):
        with torch.no_grad():
            prob = torch.softmax(inferer(item["image"][None].float(), network), 1)[0, 1]
        yield (
            Path(str(item["image"].meta["filename_or_obj"])).name,
            prob.numpy(),
            item["label"][0].numpy() > 0.5,
        )


def _summary(profiles: list[dict], sweeps: list[list[int]]) -> dict[str, object]:
    pixels = sum(p["pixels"] for p in profiles)
    by_distance = np.sum([p["by_distance"] for p in profiles], axis=0)
    return {
        "slices": len(profiles),
        "pixel_error": sum(p["errors"] for p in profiles) / pixels,
        "cell_where_membrane": sum(p["cell_where_membrane"] for p in profiles) / pixels,
        "membrane_where_cell": sum(p["membrane_where_cell"] for p in profiles) / pixels,
        "error_by_distance": (by_distance / pixels).tolist(),
        "pixel_error_by_threshold": {
            str(t): v for t, v in zip(THRESHOLDS, (np.sum(sweeps, 0) / pixels).tolist(), strict=True)
        },
    }


def _markdown(record: dict) -> str:
    lines = [f"EM pixel errors of {record['run_dir']} ({record['model']})", ""]
    for split, s in record["splits"].items():
        shares = np.array(s["error_by_distance"]) / s["pixel_error"]
        lines += [
            f"**{split}** ({s['slices']} slice{'s' if s['slices'] != 1 else ''}): "
            f"pixel error {s['pixel_error']:.4f} (cell where membrane {s['cell_where_membrane']:.4f}, "
            f"membrane where cell {s['membrane_where_cell']:.4f})",
            "",
            "| distance to the label boundary, px | " + " | ".join(_bins(len(shares))) + " |",
            "|---|" + "---|" * len(shares),
            "| share of the errors | " + " | ".join(f"{v:.3f}" for v in shares) + " |",
            "| pixel error | " + " | ".join(f"{v:.4f}" for v in s["error_by_distance"]) + " |",
            "",
            "| cell probability threshold | " + " | ".join(s["pixel_error_by_threshold"]) + " |",
            "|---|" + "---|" * len(s["pixel_error_by_threshold"]),
            "| pixel error | "
            + " | ".join(f"{v:.4f}" for v in s["pixel_error_by_threshold"].values())
            + " |",
            "",
        ]
    return "\n".join(lines)


def _bins(n: int) -> list[str]:
    return [str(k + 1) for k in range(n - 1)] + [f"> {n - 1}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run_dir", type=Path, required=True, help="a run folder of the EM bundle")
    parser.add_argument("--model", default="model_final.pt", help="weights file in the run folder")
    parser.add_argument("--splits", default="validation,training")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for needed in ("datalist.json", args.model):
        if not (args.run_dir / needed).is_file():
            logger.error(
                "ERROR %s: not found (a run folder of the EM bundle holds it)", args.run_dir / needed
            )
            return 2
    record: dict[str, object] = {"run_dir": str(args.run_dir), "model": args.model, "splits": {}}
    for split in args.splits.split(","):
        profiles, sweeps = [], []
        for name, prob, label in predict(args.run_dir, args.model, split):
            profiles.append(error_profile(prob > 0.5, label))
            sweeps.append(threshold_sweep(prob, label))
            logger.info("%s %s: pixel error %.4f", split, name, profiles[-1]["errors"] / label.size)
        record["splits"][split] = _summary(profiles, sweeps)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "em_errors.json").write_text(json.dumps(record, indent=2) + "\n")
    page = _markdown(record)
    (args.out / "em_errors.md").write_text(page)
    logger.info("%s", page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
