"""Study files (``configs/studies/<name>.json``) and the training runs they plan.

A study trains one bundle several times with one factor changed (the *arms*) and the seed repeated.
Its file holds every choice; this module only reads, checks and expands it::

    {
      "title": "Weight maps on/off",
      "description": "what the study asks and how the verdict decides",
      "bundle": "bundles/em/train.json",
      "dataset_dir": "isbi2012",                       # relative to app.paths.shared_data_dir()
      "config_files": [],                              # overlays every arm merges after the bundle
      "overrides": {"validate#inferer#roi_size": [700, 700]},   # keys every arm sets
      "metrics": {"val_iou": "max", "val_rand_error": "min"},   # reported metrics, better direction
      "arms": {"plain_ce": {"description": "...", "config_files": [], "overrides": {"w0": 0.0}}, ...},
      "verdict": [{"rule": "no_gain", "metric": "val_iou", "arm": "weight_map", "than": "plain_ce",
                   "claim": "weight maps give no clear IoU gain"}],
      "presets": {
        "cpu":  {"seeds": [0, 1, 2], "overrides": {"epochs": 20}},
        "gpu":  {"seeds": [0, 1, 2, 3, 4], "overrides": {...}},
        "tiny": {"seeds": [0], "dataset_dir": null, "arms": ["plain_ce", "weight_map"],
                 "config_files": [...], "overrides": {...}, "arm_overrides": {"weight_map": {...}}}
      }
    }

Every run merges the bundle, the study's ``config_files``, the preset's ``config_files`` (e.g. a smaller
network for a CPU budget) and its arm's ``config_files``, in this order, so that the factor under study
comes last. Every run gets, in this order (a later one wins): the study's ``overrides``, its arm's
``overrides``, the preset's ``overrides``, the preset's ``arm_overrides`` for that arm. A preset may not
override a key an arm varies (that would erase the factor under study): it says so in ``arm_overrides``.
A preset's ``dataset_dir`` replaces the study's; ``null`` means the bundle's default (generated demo data).
``arms`` restricts a preset to some arms (the tiny preset keeps test time short).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.errors import InputError
from app.paths import REPO_ROOT, shared_data_dir

__all__ = [
    "STUDIES_DIR",
    "PRESETS",
    "Arm",
    "Preset",
    "Study",
    "StudyRun",
    "StudyPlan",
    "available_studies",
    "load_study",
    "plan_study",
    "default_runs_dir",
]

STUDIES_DIR = REPO_ROOT / "configs" / "studies"
PRESETS = ("cpu", "gpu", "tiny")
DIRECTIONS = ("max", "min")
RESERVED_KEYS = ("run_dir", "seed", "dataset_dir")
"""Keys the runner sets itself for every run; a study file may not override them."""

_STUDY_KEYS = {"title", "description", "bundle", "dataset_dir", "config_files", "overrides"}
_STUDY_KEYS |= {"metrics", "arms", "verdict", "presets"}
_ARM_KEYS = {"description", "config_files", "overrides"}
_PRESET_KEYS = {"seeds", "config_files", "overrides", "dataset_dir", "arms", "arm_overrides", "description"}


@dataclass(frozen=True)
class Arm:
    """One setting of the factor under study: overlays merged after the bundle plus key overrides."""

    name: str
    description: str = ""
    config_files: tuple[str, ...] = ()
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Preset:
    """A budget: seeds, overlays and overrides (network, epochs, sizes...), dataset and optionally a subset
    of the arms.

    ``dataset_dir`` is resolved: an absolute path, or None for the bundle's default demo data.
    """

    name: str
    seeds: tuple[int, ...]
    overrides: Mapping[str, Any]
    dataset_dir: Path | None
    arms: tuple[str, ...]
    arm_overrides: Mapping[str, Mapping[str, Any]]
    description: str = ""
    config_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Study:
    """A parsed and checked study file (see the module docstring)."""

    name: str
    path: Path
    title: str
    description: str
    bundle: str
    config_files: tuple[str, ...]
    overrides: Mapping[str, Any]
    metrics: Mapping[str, str]
    arms: Mapping[str, Arm]
    verdict: tuple[Mapping[str, Any], ...]
    presets: Mapping[str, Preset]


@dataclass(frozen=True)
class StudyRun:
    """One training run of a study: an arm at a seed, in its own run folder."""

    arm: str
    seed: int
    run_dir: Path
    config_files: tuple[str, ...]
    overrides: Mapping[str, Any]

    def command(self, python: str = sys.executable) -> list[str]:
        """The ``monai.bundle`` command line of this run (run from the repository root).

        Values are written as Python literals (``True``, ``[700, 700]``), which is how ``monai.bundle``'s
        command line (Python Fire) reads them back; strings are passed as they are.
        """
        files = self.config_files[0] if len(self.config_files) == 1 else str(list(self.config_files))
        cmd = [python, "-m", "monai.bundle", "run", "training", "--config_file", files]
        cmd += ["--run_dir", str(self.run_dir), "--seed", str(self.seed)]
        for key, value in self.overrides.items():
            cmd += [f"--{key}", value if isinstance(value, str) else repr(value)]
        return cmd


@dataclass(frozen=True)
class StudyPlan:
    """Every run of a study at one preset, arm by arm, seed by seed."""

    study: Study
    preset: Preset
    runs_dir: Path
    runs: tuple[StudyRun, ...]

    @property
    def arms(self) -> tuple[str, ...]:
        return self.preset.arms


def default_runs_dir() -> Path:
    """``runs/study`` under the current folder, where study runs go unless ``--runs-dir`` says otherwise."""
    return Path("runs", "study").resolve()


def available_studies(directory: str | Path = STUDIES_DIR) -> list[str]:
    """Names of the study files in ``directory``, sorted."""
    return sorted(p.stem for p in Path(directory).glob("*.json"))


def load_study(name: str, directory: str | Path = STUDIES_DIR) -> Study:
    """Read and check ``<directory>/<name>.json``.

    Raises:
        InputError: unknown study (the message lists the available ones) or an invalid study file (the
            message names the file and the offending entry).
    """
    path = Path(directory) / f"{name}.json"
    if not path.is_file():
        names = ", ".join(available_studies(directory)) or "none"
        raise InputError(path, f"unknown study {name!r}; available: {names}")
    try:
        raw = json.loads(path.read_text())
        return _parse_study(name, path, raw)
    except (ValueError, KeyError, TypeError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(path, f"invalid study file: {e}") from e


def plan_study(study: Study, preset: str = "cpu", runs_dir: str | Path | None = None) -> StudyPlan:
    """Expand ``study`` at ``preset`` into its runs, under ``<runs_dir>/<study>/<preset>/<arm>/seed<k>``.

    Raises:
        InputError: unknown preset (the message lists the study's presets).
    """
    if preset not in study.presets:
        raise InputError(study.path, f"no preset {preset!r}; valid: {', '.join(study.presets)}")
    chosen = study.presets[preset]
    root = Path(runs_dir).resolve() if runs_dir is not None else default_runs_dir()
    files = (study.bundle, *study.config_files, *chosen.config_files)
    runs = []
    for arm_name in chosen.arms:
        arm = study.arms[arm_name]
        overrides = {"dataset_dir": str(chosen.dataset_dir)} if chosen.dataset_dir is not None else {}
        for layer in (
            study.overrides,
            arm.overrides,
            chosen.overrides,
            chosen.arm_overrides.get(arm_name, {}),
        ):
            overrides.update(layer)
        for seed in chosen.seeds:
            run_dir = root / study.name / preset / arm_name / f"seed{seed}"
            runs.append(StudyRun(arm_name, seed, run_dir, (*files, *arm.config_files), overrides))
    return StudyPlan(study, chosen, root, tuple(runs))


def _parse_study(name: str, path: Path, raw: Mapping[str, Any]) -> Study:
    # imported here: the rules need numpy and the engine, and listing studies (CLI help) should not
    from app.study.verdicts import check_verdict_spec

    _check_keys("study", raw, _STUDY_KEYS, required=("title", "bundle", "metrics", "arms", "presets"))
    _check_file(raw["bundle"])
    metrics = dict(raw["metrics"])
    for metric, direction in metrics.items():
        if direction not in DIRECTIONS:
            raise ValueError(f"metric {metric!r}: direction must be one of {DIRECTIONS}, got {direction!r}")
    arms = {arm_name: _parse_arm(arm_name, spec) for arm_name, spec in raw["arms"].items()}
    if len(arms) < 2:
        raise ValueError("a study needs at least two arms")
    overrides = _parse_overrides("study overrides", raw.get("overrides", {}))
    study_dataset = raw.get("dataset_dir")
    presets = {
        preset: _parse_preset(preset, spec, arms, study_dataset) for preset, spec in raw["presets"].items()
    }
    missing = [p for p in PRESETS if p not in presets]
    if missing:
        raise ValueError(f"missing preset(s) {missing}; every study has {list(PRESETS)}")
    verdict = tuple(raw.get("verdict", ()))
    for spec in verdict:
        check_verdict_spec(spec, arms=arms, metrics=metrics)
    return Study(
        name=name,
        path=path,
        title=raw["title"],
        description=raw.get("description", ""),
        bundle=raw["bundle"],
        config_files=_config_files(raw),
        overrides=overrides,
        metrics=metrics,
        arms=arms,
        verdict=verdict,
        presets=presets,
    )


def _parse_arm(name: str, spec: Mapping[str, Any]) -> Arm:
    _check_keys(f"arm {name!r}", spec, _ARM_KEYS)
    overrides = _parse_overrides(f"arm {name!r}", spec.get("overrides", {}))
    return Arm(name, spec.get("description", ""), _config_files(spec), overrides)


def _parse_preset(
    name: str, spec: Mapping[str, Any], arms: Mapping[str, Arm], study_dataset: str | None
) -> Preset:
    _check_keys(f"preset {name!r}", spec, _PRESET_KEYS, required=("seeds",))
    seeds = tuple(int(s) for s in spec["seeds"])
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"preset {name!r}: seeds must be a non-empty list of distinct integers")
    chosen = tuple(spec.get("arms", arms))
    unknown = [a for a in chosen if a not in arms]
    if unknown or len(chosen) < 2:
        raise ValueError(f"preset {name!r}: arms must name at least two of {list(arms)}, got {list(chosen)}")
    overrides = _parse_overrides(f"preset {name!r}", spec.get("overrides", {}))
    clashes = sorted(key for key in overrides if any(key in arm.overrides for arm in arms.values()))
    if clashes:
        varying = [arm.name for arm in arms.values() if clashes[0] in arm.overrides]
        raise ValueError(
            f"preset {name!r} overrides {clashes}, which the arms vary ({', '.join(varying)} set "
            f"{clashes[0]!r}): set them per arm in the preset's arm_overrides"
        )
    arm_overrides = {}
    for arm_name, layer in spec.get("arm_overrides", {}).items():
        if arm_name not in arms:
            raise ValueError(f"preset {name!r}: arm_overrides names unknown arm {arm_name!r}")
        arm_overrides[arm_name] = _parse_overrides(f"preset {name!r} arm {arm_name!r}", layer)
    dataset = spec["dataset_dir"] if "dataset_dir" in spec else study_dataset
    dataset_dir = None if dataset is None else shared_data_dir() / dataset
    return Preset(
        name, seeds, overrides, dataset_dir, chosen, arm_overrides, spec.get("description", ""),
        _config_files(spec),
    )


def _parse_overrides(where: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    reserved = sorted(set(overrides) & set(RESERVED_KEYS))
    if reserved:
        raise ValueError(f"{where}: {reserved} are set by the study runner (run folder, seed, dataset_dir)")
    return dict(overrides)


def _check_keys(
    where: str, spec: Mapping[str, Any], allowed: set[str], required: tuple[str, ...] = ()
) -> None:
    if not isinstance(spec, Mapping):
        raise TypeError(f"{where} must be a JSON object, got {type(spec).__name__}")
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid: {sorted(allowed)}")
    missing = [k for k in required if k not in spec]
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}")


def _config_files(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """The ``config_files`` of a study, arm or preset, each checked to exist under the repository."""
    files = tuple(spec.get("config_files", ()))
    for file in files:
        _check_file(file)
    return files


def _check_file(file: str) -> None:
    if not (REPO_ROOT / file).is_file():
        raise ValueError(f"config file {file!r} not found under {REPO_ROOT}")
