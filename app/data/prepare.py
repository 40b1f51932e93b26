"""What a bundle calls before training: resolve the dataset folder, split it, check it, save the split.

``prepare_datalist`` is the one entry point the bundle configs use::

    "datalist": "$app.data.prepare_datalist(@dataset_dir, 'ct', @run_dir, labels=@class_names)"
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

from app.data.checks import CheckOptions, assert_valid
from app.data.datalist import (
    datalist_from_folder,
    kfold_datalist,
    load_datalist,
    split_datalist,
    write_datalist,
)
from app.errors import InputError
from app.paths import demo_root

__all__ = ["resolve_dataset_dir", "prepare_datalist", "evaluation_datalist", "evaluation_dir"]

logger = logging.getLogger(__name__)

SPATIAL_DIMS = {"em": 2, "ct": 3, "mri": 3}


def resolve_dataset_dir(dataset_dir: str | Path, task: str) -> Path:
    """The dataset folder to use: the default demo folder is generated on first use; any other
    folder must exist (a user's path is never silently replaced by demo data).

    Raises:
        InputError: ``dataset_dir`` is not the demo folder and does not exist.
    """
    path = Path(dataset_dir).expanduser().resolve()
    if path == demo_root() / task:
        from app.data.demo import ensure_demo  # the generators load only when demo data is needed

        return ensure_demo(task)
    if not path.is_dir():
        raise InputError(
            path,
            "dataset_dir does not exist (give the folder holding imagesTr/labelsTr or "
            "train/image + train/label)",
        )
    return path


def prepare_datalist(
    dataset_dir: str | Path,
    task: str,
    run_dir: str | Path,
    labels: Mapping | Iterable[int] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    n_folds: int = 0,
    fold: int = 0,
    check: bool = True,
) -> dict:
    """Datalist for a run, saved as ``run_dir/datalist.json`` and reused when the run resumes.

    Args:
        dataset_dir: MSD or ISBI layout folder, or the task's demo folder.
        task: ``"em"``, ``"ct"`` or ``"mri"`` (sets the expected dimensionality).
        run_dir: the run folder.
        labels: declared classes (``{"0": "background", "1": "spleen"}`` or values); None skips the
            value check.
        val_fraction, seed: seeded random split (ignored when ``n_folds`` > 1).
        n_folds, fold: k-fold split, ``fold`` validates.
        check: run the input checks on every case first (training never starts on bad data).

    Returns:
        ``{"training": [...], "validation": [...], "split": {...}, "dataset_dir": str}``.

    Raises:
        InputError / InputErrors: missing folder or failed checks, naming each file.
    """
    if task not in SPATIAL_DIMS:
        raise ValueError(f"unknown task {task!r}; valid: {sorted(SPATIAL_DIMS)}")
    folder = resolve_dataset_dir(dataset_dir, task)
    saved = Path(run_dir) / "datalist.json"
    if saved.is_file():
        data = load_datalist(saved)
        if data.get("dataset_dir") == str(folder):
            logger.info("reusing the split saved in %s", saved)
            _check(data, task, labels, check)
            return data
        logger.warning(
            "%s was made for %s, not %s: making a new split", saved, data.get("dataset_dir"), folder
        )
    entries = datalist_from_folder(folder)
    if n_folds > 1:
        data = kfold_datalist(entries, n_folds=n_folds, fold=fold, seed=seed)
    else:
        data = split_datalist(entries, val_fraction=val_fraction, seed=seed)
    data["dataset_dir"] = str(folder)
    _check(data, task, labels, check)
    write_datalist(data, saved)
    logger.info(
        "%s: %d training / %d validation cases (seed %d)",
        folder,
        len(data["training"]),
        len(data["validation"]),
        seed,
    )
    return data


def evaluation_datalist(
    dataset_dir: str | Path | None,
    task: str,
    run_dir: str | Path,
    labels: Mapping | Iterable[int] | None = None,
) -> dict:
    """The cases an evaluation scores: the run's validation split, or every labelled case of ``dataset_dir``.

    With ``dataset_dir`` None this is the run's saved ``datalist.json`` (the validation cases it was split
    with). Given a labelled folder (MSD or ISBI layout, as for training; e.g. a held-out test set), every
    image/label pair in it is checked like training data and becomes a validation case (``training`` empty);
    nothing is written, the run's split stays as training saved it. A case whose image is one the run
    trained on (the same path, or the same file name and byte size: a copy) is named in a warning, since
    its scores would be inflated.

    Raises:
        InputError / InputErrors: the run has no readable ``datalist.json``; ``dataset_dir`` is missing,
            holds no pairs, or a case fails the checks (each file named).
    """
    saved = load_datalist(Path(run_dir) / "datalist.json")
    if dataset_dir is None:
        return saved
    if task not in SPATIAL_DIMS:
        raise ValueError(f"unknown task {task!r}; valid: {sorted(SPATIAL_DIMS)}")
    folder = Path(dataset_dir).expanduser().resolve()
    if not folder.is_dir():
        raise InputError(
            folder,
            "eval_dataset_dir does not exist (give a labelled folder: imagesTr/labelsTr or image/ + label/)",
        )
    data = {"training": [], "validation": datalist_from_folder(folder), "dataset_dir": str(folder)}
    _check(data, task, labels, check=True)
    seen = _image_files_of(saved.get("training", []))
    trained = [e for e in data["validation"] if _image_files_of([e]) & seen]
    if trained:
        logger.warning(
            "%d of the %d cases in %s were training cases of %s (e.g. %s): their scores are not a test",
            len(trained),
            len(data["validation"]),
            folder,
            run_dir,
            trained[0]["image"],
        )
    logger.info("evaluating the %d labelled cases of %s", len(data["validation"]), folder)
    return data


def evaluation_dir(run_dir: str | Path, dataset_dir: str | Path | None) -> str:
    """Where an evaluation writes: ``RUN_DIR/eval`` for the validation split, ``RUN_DIR/eval_NAME`` for the
    labelled folder ``NAME`` (``--eval_dataset_dir``): a test set's scores never replace the split's."""
    return str(
        Path(run_dir) / ("eval" if dataset_dir is None else f"eval_{Path(dataset_dir).resolve().name}")
    )


def _image_files_of(entries: Iterable[dict]) -> set:
    """Resolved paths and (file name, size) pairs of the entries' image files that exist."""
    keys: set = set()
    for entry in entries:
        images = entry["image"] if isinstance(entry["image"], list) else [entry["image"]]
        for image in map(Path, images):
            keys.add(str(image.resolve()))
            if image.is_file():
                keys.add((image.name, image.stat().st_size))
    return keys


def _check(data: dict, task: str, labels: Mapping | Iterable[int] | None, check: bool) -> None:
    if not check:
        return
    values = None if labels is None else frozenset(int(k) for k in labels)
    if task == "em" and values is not None:
        values = values | {255} if values <= {0, 1} else values
    opt = CheckOptions(spatial_dims=SPATIAL_DIMS[task], label_values=values)
    assert_valid(data["training"] + data["validation"], opt)
