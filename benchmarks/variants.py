"""The U-Net family compared: cost per variant and quality after a fixed CPU training budget.

    python -m benchmarks.variants                                  # both parts, MRI and EM
    python -m benchmarks.variants --parts micro                    # cost only (no data needed)
    python -m benchmarks.variants --parts quality --budget-s 45 --datasets mri --variants plain,mobile
    python -m benchmarks.variants --quick --parts micro --out /tmp/v   # smoke test on tiny sizes

Every row is a network exactly as users select it: ``bundles/<bundle>/train.json`` merged with
``configs/variants/<overlay>.json`` (or the bundle's own ``network_def``, row ``default``), parsed with
``monai.bundle.ConfigParser``; the MONAI rows replace ``network_def`` with a MONAI class of comparable width.
MRI rows are 3D (1 input channel, 3 classes, patch 40 x 56 x 40), EM rows 2D (572 x 572 valid-padding tiles).

- **micro** (:mod:`benchmarks.variants_micro`, one fresh process per row): parameters; FLOPs per output voxel
  (``FlopCounterMode``, one eval forward at the patch, 2 per multiply-add, convolutions and matmuls only);
  a training step of the bundle (its loss, optimiser, batch 2 at the patch; 2 warm-ups then the median of 5,
  2 threads): wall and CPU seconds, and its memory (peak RSS minus RSS before the first step); inference
  throughput of the bundle's validation inferer over a fixed volume (eval, ``no_grad``); with
  ``--device cuda`` also the step on the GPU with AMP.
- **quality** (:mod:`benchmarks.variants_quality`): the bundle's training command on the real data with the
  overlay, stopped after ``--budget-s`` CPU seconds of training, then validated once on the final weights.
  Same seed, split, patch and budget for every variant.

Writes ``<out>/variants.json`` (every number, the commands and the hardware) and the markdown page:
``docs/variants_comparison.md`` when ``<out>`` is ``benchmarks/results`` (the default), else
``<out>/variants.md``. A run of some parts, datasets or variants keeps the other results already in
``variants.json`` and records which rows each command measured.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.paths import REPO_ROOT, shared_data_dir
from benchmarks.common import RESULTS_DIR, base_parser, hardware, results_dir
from benchmarks.variants_micro import WORKER_ENV
from benchmarks.variants_quality import train_with_budget

__all__ = ["NOT_APPLICABLE", "ROWS", "Row", "main", "render_markdown"]

logger = logging.getLogger(__name__)

DOCS_PAGE = REPO_ROOT / "docs" / "variants_comparison.md"
DATASETS = {"mri": "hippocampus", "em": "isbi2012"}
BUNDLE_TITLES = {
    "mri": "MRI bundle (3D, hippocampus, patch 40 x 56 x 40, depth 3)",
    "em": "EM bundle (2D, ISBI 2012, 572 x 572 valid-padding tiles, depth 4)",
}
# the validation metric shown next to the Dice: the EM challenge's adapted Rand error; HD95 for MRI
SECOND_METRIC = {"mri": ("val_hd95", "HD95 (mm)"), "em": ("val_rand_error", "adapted Rand error")}
OVERLAYS = sorted(p.stem for p in (REPO_ROOT / "configs" / "variants").glob("*.json"))

FULL = {
    "batch": 2,
    "warmup": 2,
    "repeats": 5,
    "infer_repeats": 2,
    "threads": 2,
    "budget_s": 45.0,
    # two sliding windows of the MRI patch (overlap 0.5); one ISBI slice (four 388 x 388 output tiles)
    "volume": {"mri": [60, 56, 40], "em": [512, 512]},
    "config": {"mri": {}, "em": {}},
}
QUICK = {
    **FULL,
    "warmup": 1,
    "repeats": 2,
    "infer_repeats": 1,
    "budget_s": 5.0,
    "volume": {"mri": [24, 16, 16], "em": [8, 8]},  # EM: 2 x 2 tiles of 4 x 4
    "config": {"mri": {"patch_size": [16, 16, 16]}, "em": {"tile_size": 188}},  # 188: smallest valid tile
}

_DS_LOSS = {"_target_": "monai.losses.DeepSupervisionLoss", "loss": "@loss", "weight_mode": "exp"}


@dataclass(frozen=True)
class Row:
    """One line of the comparison: a network as a bundle config builds it.

    Attributes:
        name: the row's name (an overlay's name, ``default``, or a MONAI class).
        overlay: ``configs/variants/<overlay>.json``, or None for the bundle's ``network_def``.
        overrides: config ids set after the overlay (a MONAI network, deep supervision keys).
        counterpart: the row this one is compared with (a MONAI class and its app variant).
        trained: whether the quality part trains it.
        note: what the row is, for the table.
        differences: for a MONAI row, what its class lacks or does differently from the app's composition.
    """

    name: str
    overlay: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    counterpart: str | None = None
    trained: bool = True
    note: str = ""
    differences: str = ""


def _monai_net(target: str, **kwargs: Any) -> dict[str, Any]:
    """A 3D MONAI network for the MRI bundle's ``network_def``, its channels read from the bundle."""
    return {
        "_target_": target,
        "spatial_dims": 3,
        "in_channels": "@in_channels",
        "out_channels": "@num_classes",
        **kwargs,
    }


MONAI_ROWS = [
    Row(
        "MONAI AttentionUnet",
        overrides={"network_def": _monai_net("AttentionUnet", channels=[16, 32, 64, 128], strides=[2, 2, 2])},
        counterpart="attention",
        trained=False,
        note="16-128, batch norm (fixed in the class)",
        differences="MONAI's AttentionUnet gates each skip with the up-sampled decoder map and has batch "
        "normalisation and same padding only; the app's gate follows Oktay et al. (gating signal from the "
        "coarser level) and combines with any block (`attention_residual`), valid padding and `skip_norm`",
    ),
    Row(
        "MONAI BasicUNetPlusPlus",
        overrides={
            "network_def": _monai_net("BasicUNetPlusPlus", features=[16, 32, 64, 128, 256, 16]),
            # it returns a list even in eval mode; the loss gets the (only) output
            "train#trainer#loss_function": "$lambda pred, label: @loss(pred[0], label)",
        },
        counterpart="unetpp",
        trained=False,
        note="16-256: its depth is fixed at 4 (the MRI bundle's is 3)",
        differences="MONAI's BasicUNetPlusPlus has a fixed depth of 4 and same padding only, returns a list "
        "even in eval mode (main output last with deep supervision) and cannot be pruned; the app's `unetpp` "
        "follows the bundle's depth and padding, returns a tensor in eval mode and prunes",
    ),
    Row(
        "MONAI DynUNet (deep supervision)",
        overrides={
            "network_def": _monai_net(
                "DynUNet",
                kernel_size=[3, 3, 3, 3],
                strides=[1, 2, 2, 2],
                upsample_kernel_size=[2, 2, 2],
                filters=[16, 32, 64, 128],
                norm_name="instance",
                deep_supervision=True,
                deep_supr_num=2,
            ),
            "deep_supervision_loss": _DS_LOSS,
            # it stacks its heads, interpolated to full size, into one (B, 3, C, ...) tensor
            "train#trainer#loss_function": (
                "$lambda pred, label: @deep_supervision_loss(list(torch.unbind(pred, 1)), label)"
            ),
        },
        counterpart="plain + deep supervision",
        trained=False,
        note="16-128, 2 auxiliary heads",
        differences="MONAI's DynUNet stacks its heads, each interpolated to full size, into one tensor that "
        "the loss must unbind (an extra `$lambda` in the config); the app returns the list that "
        "DeepSupervisionLoss takes, each head at its own size, and supports valid padding",
    ),
]
ROWS: dict[str, list[Row]] = {
    "mri": [
        Row(
            "default",
            counterpart="residual",
            note="the bundle's network: MONAI DynUNet 8-24-48-96-192 (strides 1-2-2-2-1), residual blocks, "
            "2 deep-supervision heads",
            differences="The bundle's DynUNet down-samples with strided convolutions below one 8-channel "
            "full-resolution level (no pooling, no valid padding): cheaper per voxel than the app's residual "
            "variant, but it cannot express the 2015 geometry or the other variants",
        ),
        *(Row(name, overlay=name) for name in OVERLAYS),
        Row(
            "plain + deep supervision",
            overlay="plain",
            overrides={
                "network_def#deep_supervision": True,
                "deep_supervision_loss": _DS_LOSS,
                "train#trainer#loss_function": "@deep_supervision_loss",
            },
            counterpart="MONAI DynUNet (deep supervision)",
            trained=False,
            note="`plain` + the three keys of docs/variants.md (not an overlay)",
        ),
        *MONAI_ROWS,
    ],
    "em": [
        Row("default", note="the bundle's network: UNet2015 16-256, cpu preset"),
        *(Row(name, overlay=name) for name in OVERLAYS if name not in ("unetpp_ds", "cascade")),
    ],
}
NOT_APPLICABLE: dict[str, dict[str, str]] = {
    "mri": {},
    "em": {
        "unetpp_ds, cascade": "deep supervision: the EM trainer hands the loss (label, weight) pairs, which "
        "MONAI's DeepSupervisionLoss cannot resize; the cascade also needs same padding (docs/variants.md)",
        "MONAI rows": "same padding only: they cannot predict the EM bundle's 572 x 572 valid-padding tiles "
        "(output 388 x 388) that its overlap-tile inference and weight maps assume",
    },
}


def _micro_row(bundle: str, row: Row, settings: dict[str, Any], gpu: bool) -> dict[str, Any]:
    """Measure one row in a fresh process (see :mod:`benchmarks.variants_micro`)."""
    spec = {
        "bundle": bundle,
        "overlay": row.overlay,
        "overrides": {**settings["config"][bundle], **row.overrides},
        "volume": settings["volume"][bundle],
        "gpu": gpu,
        **{key: settings[key] for key in ("batch", "warmup", "repeats", "infer_repeats", "threads")},
    }
    env = {**os.environ, **WORKER_ENV}
    command = [sys.executable, "-m", "benchmarks.variants_micro", json.dumps(spec)]
    proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        logger.error("%s %s failed:\n%s", bundle, row.name, proc.stderr[-3000:])
        return {"error": proc.stderr[-3000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_micro(bundle: str, rows: list[str] | None, settings: dict[str, Any], gpu: bool) -> dict[str, Any]:
    """Cost of every row of ``bundle`` (or of the named ``rows``): ``{row: result}``."""
    results = {}
    for row in ROWS[bundle]:
        if rows is None or row.name in rows:
            logger.info("micro: %s %s", bundle, row.name)
            results[row.name] = _micro_row(bundle, row, settings, gpu)
    return results


def run_quality(
    bundle: str, rows: list[str] | None, settings: dict[str, Any], dataset_dir: Path, work_dir: Path
) -> dict[str, Any]:
    """Validation scores after the training budget for every trained row of ``bundle``: ``{row: result}``."""
    results = {}
    for row in ROWS[bundle]:
        if row.trained and (rows is None or row.name in rows):
            logger.info("quality: %s %s (%.0f CPU s)", bundle, row.name, settings["budget_s"])
            results[row.name] = train_with_budget(
                bundle,
                row.overlay,
                dataset_dir,
                work_dir / bundle / row.name,
                settings["budget_s"],
                settings["threads"],
            )
    return results


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}g}"


def _si(value: float) -> str:
    for scale, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _dice(quality: dict[str, Any]) -> float | None:
    return quality.get("metrics", {}).get("val_mean_dice")


def _table(bundle: str, micro: dict[str, Any], quality: dict[str, Any], budget: float | None) -> list[str]:
    dice_header = f"Dice after {budget:.0f} CPU s" if budget else "Dice after the budget"
    extra = f" | {SECOND_METRIC[bundle][1]}"
    lines = [
        f"| Variant | Network | Params | FLOPs / output voxel | CPU step s (wall / CPU) | Step memory MiB "
        f"| Inference voxel/s | GPU step s (AMP) | GPU memory MiB | {dice_header}{extra} | Steps in budget |",
        "|" + "---|" * 12,
    ]
    for row in ROWS[bundle]:
        cost, score = micro.get(row.name, {}), quality.get(row.name, {})
        if not cost and not score:
            continue
        second = score.get("metrics", {}).get(SECOND_METRIC[bundle][0])
        cells = [f"`{row.name}`" if row.overlay == row.name else row.name]
        if "error" in cost:
            cells += ["failed"] + [""] * 7
        elif cost:
            gpu = cost["gpu_step_s"] is not None
            cells += [
                f"{cost['network']} ({cost['source']})",
                f"{cost['params'] / 1e6:.2f} M",
                _si(cost["flops_per_voxel"]),
                f"{cost['step_s']:.2f} / {cost['step_cpu_s']:.2f}",
                f"{cost['step_mem_mib']:.0f}",
                _si(cost["infer_voxels_per_s"]),
                _fmt(cost["gpu_step_s"]) if gpu else "not measured",
                f"{cost['gpu_step_mem_mib']:.0f}" if gpu else "not measured",
            ]
        else:
            cells += [""] * 8
        if "error" in score:
            cells += ["failed", "", ""]
        else:
            cells += [_fmt(_dice(score)), _fmt(second), str(score.get("iterations", ""))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x"


def _app_rows(bundle: str, measured: dict[str, Any]) -> dict[str, Any]:
    """The overlays' rows (the variants users select), without ``default`` and the comparison-only rows."""
    overlays = {row.name for row in ROWS[bundle] if row.overlay == row.name}
    return {name: r for name, r in measured.items() if name in overlays}


def _summary(bundle: str, micro: dict[str, Any], quality: dict[str, Any]) -> list[str]:
    """Sentences computed from the numbers: fastest, smallest, best Dice, and the MONAI comparisons."""
    measured = {name: r for name, r in micro.items() if "error" not in r}
    lines = []
    scopes = {"All rows": measured}
    if any(r["source"] == "MONAI" for r in measured.values()):
        scopes["The app's variants"] = _app_rows(bundle, measured)
    for scope, rows in scopes.items():
        if not rows:
            continue
        fastest = min(rows, key=lambda n: rows[n]["step_s"])
        smallest = min(rows, key=lambda n: rows[n]["params"])
        cheapest = min(rows, key=lambda n: rows[n]["flops_per_voxel"])
        throughput = max(rows, key=lambda n: rows[n]["infer_voxels_per_s"])
        lines.append(
            f"- {scope}: fastest training step {fastest} ({rows[fastest]['step_s']:.2f} s); "
            f"smallest {smallest} ({rows[smallest]['params'] / 1e6:.2f} M parameters); "
            f"fewest FLOPs per output voxel {cheapest} "
            f"({_si(rows[cheapest]['flops_per_voxel'])}); highest inference throughput {throughput} "
            f"({_si(rows[throughput]['infer_voxels_per_s'])} voxel/s)."
        )
    if measured:
        loads = [r["load_average"] for r in measured.values()]
        gpu = any(r["gpu_step_s"] is not None for r in measured.values())
        lines.append(
            f"- The machine's 1-minute load average during the steps was {min(loads):.1f}-{max(loads):.1f} "
            "(other jobs shared its cores): wall times are upper bounds; CPU seconds compare better."
            + (
                ""
                if gpu
                else " GPU columns: not measured (no GPU; `--device cuda` on a GPU machine adds them)."
            )
        )
    scored = {name: _dice(r) for name, r in quality.items() if _dice(r) is not None}
    if scored:
        best, worst = max(scored, key=scored.get), min(scored, key=scored.get)
        metric, label = SECOND_METRIC[bundle]
        errors = {name: r["metrics"][metric] for name, r in quality.items() if name in scored}
        lowest = min(errors, key=errors.get)
        lines.append(
            f"- Best validation Dice after the budget: {best} ({scored[best]:.3f}); lowest: {worst} "
            f"({scored[worst]:.3f}); median of {len(scored)} runs {statistics.median(scored.values()):.3f}; "
            f"lowest {label}: {lowest} ({errors[lowest]:.3g})."
        )
    for row in ROWS[bundle]:
        if not row.differences or row.counterpart not in measured or row.name not in measured:
            continue
        a, b = measured[row.name], measured[row.counterpart]
        lines.append(
            f"- {row.name} against {row.counterpart}: {_ratio(a['params'], b['params'])} the parameters, "
            f"{_ratio(a['flops_per_voxel'], b['flops_per_voxel'])} the FLOPs per voxel, "
            f"{_ratio(a['step_s'], b['step_s'])} the step time, "
            f"{_ratio(a['step_mem_mib'], b['step_mem_mib'])} the step memory. "
            f"{row.differences}."
        )
    return lines


def _run_lines(runs: dict[str, Any]) -> list[str]:
    """One line per recorded run: part, bundle, the rows it measured (unless all), command, machine, date."""
    lines = []
    for part in ("micro", "quality"):
        for bundle, records in runs.get(part, {}).items():
            everything = {row.name for row in ROWS[bundle] if part == "micro" or row.trained}
            for run in records:
                hw = run["hardware"]
                rows = "" if set(run["rows"]) == everything else f" ({', '.join(run['rows'])})"
                lines.append(
                    f"- {part}, {bundle.upper()}{rows}: `{run['command']}` on {hw['cpu']}, {hw['cpu_cores']} "
                    f"cores, {hw['memory_gib']} GiB, GPU {hw['gpu'] or 'none'}; torch {hw['torch']}, "
                    f"MONAI {hw['monai']}; {hw['date']}; load average {run['load_average']:.1f} at the start."
                )
    return lines


def render_markdown(results: dict[str, Any]) -> str:
    """The comparison page: command, hardware, method, one table and summary per bundle."""
    lines = ["# U-Net variants: measured comparison", ""]
    lines += ["Generated by `benchmarks/variants.py` (do not edit by hand). Commands and machines:", ""]
    lines += _run_lines(results.get("runs", {}))
    lines += ["", METHOD, ""]
    for bundle in ("mri", "em"):
        micro = results.get("micro", {}).get(bundle, {})
        quality = results.get("quality", {}).get(bundle, {})
        if not micro and not quality:
            continue
        budgets = {
            run["settings"]["budget_s"] for run in results.get("runs", {}).get("quality", {}).get(bundle, [])
        }
        budget = budgets.pop() if len(budgets) == 1 else None  # several budgets: the runs above say which
        lines += [f"## {BUNDLE_TITLES[bundle]}", ""]
        lines += _table(bundle, micro, quality, budget) + [""]
        notes = [
            f"{row.name}: {row.note}" + ("" if row.trained else ", cost only")
            for row in ROWS[bundle]
            if row.note and row.name in micro
        ]
        paragraphs = ["Rows: " + "; ".join(notes) + "."] if notes else []
        untrained = [
            row.name for row in ROWS[bundle] if row.trained and row.name in micro and row.name not in quality
        ]
        if quality and untrained:
            paragraphs.append(
                f"Not trained by the recorded quality runs: {', '.join(untrained)} "
                "(`python -m benchmarks.variants --parts quality` trains every variant)."
            )
        paragraphs += [
            f"Not applicable: {name}: {reason}." for name, reason in NOT_APPLICABLE[bundle].items()
        ]
        for paragraph in paragraphs:
            lines += [paragraph, ""]
        lines += [*_summary(bundle, micro, quality), ""]
    return "\n".join(lines).rstrip() + "\n"


METHOD = """\
How each column is measured (`benchmarks/variants.py`; one fresh process per row):
- **Network, Params**: `network_def` of the bundle's `train.json` merged with the overlay, as
  `monai.bundle.ConfigParser` builds it; "MONAI" rows replace `network_def` with a MONAI class.
- **FLOPs / output voxel**: `torch.utils.flop_counter.FlopCounterMode` over one eval-mode forward of one
  patch, 2 FLOPs per multiply-add, convolutions and matrix products only, divided by the voxels of the main
  output (388² for the 572² EM tiles).
- **CPU step**: one training step of the bundle (`train#trainer#loss_function`, `optimizer`, batch 2 of
  random patches; forward, loss, backward, optimiser step), 2 threads, 2 warm-ups, median of 5: wall-clock
  seconds and process CPU seconds (less sensitive to the other jobs on a shared machine). Every measured
  process runs with `OMP_WAIT_POLICY=PASSIVE`: on an oversubscribed CPU, OpenMP threads spinning at barriers
  made the same step 2-5x slower, by an amount that changed with the other jobs.
- **Step memory**: peak resident memory of the process (`getrusage` `ru_maxrss`) after the steps minus the
  resident memory just before the first step: activations, gradients, optimiser state and allocator slack on
  top of the built network (PyTorch's CPU allocator returns large blocks to the OS, hence the fresh process).
- **Inference**: voxels per second of the bundle's validation inferer (`validate#inferer`: sliding window,
  patch-sized windows, overlap 0.5, Gaussian blending for MRI; overlap-tile for EM) over a fixed random
  volume (MRI 60 x 56 x 40: two windows; EM one 512² slice: four tiles), eval mode, `no_grad`; median of 2
  after a warm-up.
- **GPU step, GPU memory**: the same step on CUDA with AMP and `torch.cuda.max_memory_allocated`; only with
  `--device cuda` on a machine with a GPU.
- **Dice after the budget**: the bundle's training command with the overlay on the real data
  (`../shared/data/hippocampus`, `../shared/data/isbi2012`), stopped after the budget of CPU seconds
  (process CPU time from the first iteration, so other jobs on the machine do not cut one variant's budget
  more than another's; the learning rate stays at its initial value), then the bundle's own validation on the
  final weights: mean foreground Dice (`val_mean_dice`; MRI: mean of anterior and posterior; EM: the cell
  class), HD95 (MRI) and adapted Rand error (EM). Same seed, split (20 % validation), patch and budget for
  every variant. **Steps in budget** is the number of training iterations reached: a costlier network sees
  fewer samples in the same budget, which is the trade-off this column measures. The trainer stops at the
  end of the first iteration past the budget, so a run can overrun it by up to one step (`cpu_s` in
  `benchmarks/results/variants.json`). One seed per variant and a few dozen steps: the Dice ranks how fast
  each variant starts to learn on CPU, not the quality it converges to."""


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def main(argv: list[str] | None = None) -> None:
    """Run the selected parts and write ``variants.json`` and the markdown page."""
    parser = base_parser("Compare the U-Net variants: cost per training step and quality after a budget.")
    parser.add_argument("--parts", default="micro,quality", help="comma-separated: micro, quality")
    parser.add_argument("--datasets", default="mri,em", help="comma-separated bundles: mri, em")
    parser.add_argument("--variants", default=None, help="comma-separated row names (default: all)")
    parser.add_argument("--budget-s", type=float, default=None, help="training budget, CPU s (default 45)")
    parser.add_argument(
        "--data-root", type=Path, default=shared_data_dir(), help="holds hippocampus, isbi2012"
    )
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / "runs" / "variants_bench")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    settings = dict(QUICK if args.quick else FULL)
    if args.repeats:
        settings["repeats"] = args.repeats
    if args.budget_s:
        settings["budget_s"] = args.budget_s
    parts, bundles = args.parts.split(","), args.datasets.split(",")
    unknown = (set(parts) - {"micro", "quality"}) | (set(bundles) - set(ROWS))
    if unknown:
        raise SystemExit(f"unknown parts or datasets {sorted(unknown)}: use micro,quality and mri,em")
    rows = args.variants.split(",") if args.variants else None
    known = {row.name for bundle in bundles for row in ROWS[bundle]}
    if rows is not None and set(rows) - known:
        raise SystemExit(f"unknown variants {sorted(set(rows) - known)}: use some of {sorted(known)}")
    out = results_dir(args)
    results = _load(out / "variants.json")
    command = shlex.join(["python", "-m", "benchmarks.variants", *(sys.argv[1:] if argv is None else argv)])
    for part in parts:
        for bundle in bundles:
            run = {
                "command": command,
                "hardware": hardware(args.device),
                "load_average": os.getloadavg()[0],
                "settings": settings,
            }
            if part == "micro":
                found = run_micro(bundle, rows, settings, gpu=args.device == "cuda")
            else:
                found = run_quality(bundle, rows, settings, args.data_root / DATASETS[bundle], args.work_dir)
            _record_run(results, part, bundle, run, list(found))
            results.setdefault(part, {}).setdefault(bundle, {}).update(found)
            _write(results, out)  # after every part and bundle: a long run that stops keeps what it measured


def _record_run(
    results: dict[str, Any], part: str, bundle: str, run: dict[str, Any], rows: list[str]
) -> None:
    """Add ``run`` (which measured ``rows``) to ``results["runs"][part][bundle]``; earlier runs keep only the
    rows it did not measure again, and are dropped when none is left."""
    records = results.setdefault("runs", {}).setdefault(part, {}).setdefault(bundle, [])
    for record in records:
        record["rows"] = [name for name in record["rows"] if name not in rows]
    records[:] = [record for record in records if record["rows"]] + [{**run, "rows": rows}]


def _write(results: dict[str, Any], out: Path) -> None:
    """``out/variants.json`` and the page: ``docs/variants_comparison.md`` for ``benchmarks/results``, else
    ``out/variants.md`` (a smoke test or a trial run leaves the docs alone)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "variants.json").write_text(json.dumps(results, indent=2) + "\n")
    page = DOCS_PAGE if out == RESULTS_DIR else out / "variants.md"
    page.write_text(render_markdown(results))
    logger.info("wrote %s and %s", out / "variants.json", page)


if __name__ == "__main__":
    main()
