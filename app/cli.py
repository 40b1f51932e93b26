"""Command line: ``python -m app <group> <command>``.

Examples::

    python -m app data demo --task ct --out /tmp/demo_ct
    python -m app data check /tmp/demo_ct
    python -m app data datalist ../shared/data/hippocampus --out runs/hippo/datalist.json --seed 0
    python -m app data fetch hippocampus --out /data
    python -m app report runs/em
    python -m app study weight_maps --preset cpu

Exit codes: 0 success, 1 bad input or failed check (one line per problem, naming the file),
2 wrong usage.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from app.errors import InputError, InputErrors

__all__ = ["main", "build_parser"]

logger = logging.getLogger("app")

STUDY_OUT = "docs/study"


def _labels(text: str) -> frozenset[int]:
    try:
        return frozenset(int(v) for v in text.split(","))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"labels must be comma-separated integers, got {text!r}") from e


def _cmd_demo(args: argparse.Namespace) -> int:
    from app.data.demo import make_demo

    out = make_demo(args.task, args.out, seed=args.seed)
    logger.info("%s demo data written to %s", args.task, out)
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from app.data.checks import CheckOptions, check_datalist, check_dataset, dataset_defaults
    from app.data.datalist import load_datalist

    if args.datalist:
        data = load_datalist(args.datalist)
        entries = data["training"] + data.get("validation", [])
        opt = dataset_defaults(args.dir) if args.dir else CheckOptions()
        problems = check_datalist(entries, _override(opt, args))
    elif args.dir:
        problems = check_dataset(args.dir, _override(dataset_defaults(args.dir), args))
    else:
        raise InputError(".", "give a dataset folder or --datalist")
    if problems:
        raise InputErrors(problems)
    logger.info("data check passed: no problems found")
    return 0


def _override(opt, args: argparse.Namespace):
    from dataclasses import replace

    if args.labels is not None:
        opt = replace(opt, label_values=args.labels)
    if args.dims is not None:
        opt = replace(opt, spatial_dims=args.dims)
    if args.allow_empty_label:
        opt = replace(opt, allow_empty_label=True)
    return opt


def _cmd_datalist(args: argparse.Namespace) -> int:
    from app.data.datalist import datalist_from_folder, kfold_datalist, split_datalist, write_datalist

    entries = datalist_from_folder(args.dir)
    if args.folds:
        data = kfold_datalist(entries, n_folds=args.folds, fold=args.fold, seed=args.seed)
    else:
        data = split_datalist(entries, val_fraction=args.val_fraction, seed=args.seed)
    write_datalist(data, args.out)
    logger.info(
        "%d training / %d validation cases -> %s", len(data["training"]), len(data["validation"]), args.out
    )
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    from app.data.fetch import fetch

    out = fetch(args.name, args.out, base_url=args.base_url)
    logger.info("%s is in %s", args.name, out)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from app.engine.run_report import write_run_report

    path = write_run_report(args.run_dir, key_metric=args.key_metric)
    logger.info("report written to %s", path)
    return 0


def _study_command(args: argparse.Namespace) -> str:
    """The ``python -m app study`` command line of ``args``, as the study report quotes it."""
    import shlex

    cmd = ["python", "-m", "app", "study", args.name, "--preset", args.preset]
    if args.runs_dir is not None:
        cmd += ["--runs-dir", args.runs_dir]
    if args.out != STUDY_OUT:
        cmd += ["--out", args.out]
    return shlex.join(cmd + (["--report-only"] if args.report_only else []))


def _cmd_study(args: argparse.Namespace) -> int:
    from app.study.aggregate import collect_results
    from app.study.config import load_study, plan_study
    from app.study.report import write_study_report
    from app.study.runner import StudyRunError, run_study

    plan = plan_study(load_study(args.name), args.preset, args.runs_dir)
    if not args.report_only:
        try:
            run_study(plan)
        except StudyRunError as e:
            logger.error("%s", e)
            return 1
    results = collect_results(plan)
    if not results.runs:
        folder = plan.runs_dir / args.name / args.preset
        raise InputError(folder, "no run has a history yet: run the study without --report-only")
    path = write_study_report(results, args.out, command=_study_command(args))
    logger.info("study report written to %s", path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m app`` (other command groups register here too)."""
    parser = argparse.ArgumentParser(prog="python -m app", description="U-Net segmentation app on MONAI")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    groups = parser.add_subparsers(dest="group", required=True)

    data = groups.add_parser("data", help="demo data, dataset checks, datalists, downloads")
    cmds = data.add_subparsers(dest="command", required=True)

    demo = cmds.add_parser("demo", help="generate a demo dataset (EM PNGs, CT or MRI NIfTI)")
    demo.add_argument("--task", required=True, choices=["em", "ct", "mri"])
    demo.add_argument("--out", required=True, help="output folder")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_cmd_demo)

    check = cmds.add_parser("check", help="check every image/label pair of a dataset; exit 1 on problems")
    check.add_argument("dir", nargs="?", help="dataset folder (MSD or ISBI layout)")
    check.add_argument("--datalist", help="check the cases of a datalist JSON instead")
    check.add_argument("--labels", type=_labels, help="declared label values, e.g. 0,1,2")
    check.add_argument("--dims", type=int, choices=[2, 3], help="expected spatial dimensions")
    check.add_argument("--allow-empty-label", action="store_true", help="accept labels without foreground")
    check.set_defaults(func=_cmd_check)

    dl = cmds.add_parser("datalist", help="write a datalist JSON with a seeded split or k folds")
    dl.add_argument("dir", help="dataset folder (MSD or ISBI layout)")
    dl.add_argument("--out", required=True, help="datalist JSON to write")
    dl.add_argument("--val-fraction", type=float, default=0.2)
    dl.add_argument("--seed", type=int, default=0)
    dl.add_argument("--folds", type=int, default=0, help="k for k-fold (0: one train/validation split)")
    dl.add_argument("--fold", type=int, default=0, help="which fold validates")
    dl.set_defaults(func=_cmd_datalist)

    fetch = cmds.add_parser("fetch", help="download a real dataset (MSD spleen, MSD hippocampus, ISBI 2012)")
    fetch.add_argument("name", choices=["spleen", "hippocampus", "isbi2012"])
    fetch.add_argument("--out", required=True, help="folder to download into")
    fetch.add_argument("--base-url", help="mirror to download from instead of the official host")
    fetch.set_defaults(func=_cmd_fetch)

    report = groups.add_parser(
        "report", help="rebuild a training run's curves.png / overlays.png and write its report.md"
    )
    report.add_argument("run_dir", help="run folder of a training run (holds history.csv)")
    report.add_argument(
        "--key-metric", default="val_mean_dice", help="validation metric (higher is better) of the best epoch"
    )
    report.set_defaults(func=_cmd_report)

    from app.study.config import PRESETS, available_studies

    study = groups.add_parser(
        "study", help="run a multi-seed study (configs/studies/<name>.json) and write its report"
    )
    study.add_argument("name", help=f"study to run: {', '.join(available_studies())}")
    study.add_argument("--preset", default="cpu", choices=PRESETS, help="budget: cpu (default), gpu or tiny")
    study.add_argument("--runs-dir", help="parent of the run folders (default: runs/study)")
    study.add_argument("--out", default=STUDY_OUT, help=f"folder of the report (default: {STUDY_OUT})")
    study.add_argument("--report-only", action="store_true", help="report the runs already made, start none")
    study.set_defaults(func=_cmd_study)

    from app.slicer_scene import add_parser as add_slicer_scene_parser

    add_slicer_scene_parser(groups)
    from app.io.onnx_export import add_parser as add_onnx_parser

    add_onnx_parser(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(message)s",
        stream=sys.stderr,
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except InputErrors as e:
        for err in e.errors:
            logger.error("%s", err)
        logger.error("%d problem(s) found", len(e.errors))
        return 1
    except (InputError, ValueError, OSError) as e:
        logger.error("%s", e)
        return 1
