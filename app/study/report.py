"""A study's report: ``<out>/<name>.md`` with its verdict, final-metric table, figures and provenance.

Files written: ``<name>.md``, ``<name>_curves.png`` (train loss and metrics per epoch, mean and
seed range per arm) and ``<name>_final.png`` (each seed's final value per arm).
"""

from __future__ import annotations

import math
import shlex
from datetime import datetime, timezone
from pathlib import Path

from app.io.atomic import atomic_output
from app.study.aggregate import StudyResults, summarize
from app.study.plots import plot_final_values, plot_study_curves
from app.study.verdicts import judge, verdict_paragraph

__all__ = ["write_study_report"]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if math.isfinite(seconds) else "n/a"


def _epochs(last: list[int]) -> str:
    """The runs' last epochs: ``"20"`` when they agree, ``"12-20"`` when some stopped early."""
    if not last:
        return "n/a"
    return str(min(last)) if min(last) == max(last) else f"{min(last)}-{max(last)}"


def _table(results: StudyResults) -> str:
    metrics = list(results.plan.study.metrics)
    head = ["arm", "seeds", *metrics, "final train loss", "epochs", "wall time per run", "wall time (arm)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm in results.arms:
        runs = results.of_arm(arm)
        walls = summarize([r.wall_s for r in runs])
        cells = [arm, str(len(runs))]
        cells += [summarize([r.final(m) for r in runs]).text() for m in metrics]
        cells.append(summarize([r.final("train_loss") for r in runs]).text())
        cells.append(_epochs([r.rows[-1]["epoch"] for r in runs]))
        cells += [_minutes(walls.mean), _minutes(sum(walls.values)) if walls.n else "n/a"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _arms(results: StudyResults) -> str:
    """Each arm's description, overlays and the keys that differ between arms, then the shared keys."""
    plan, study = results.plan, results.plan.study
    first = {arm: next(run for run in plan.runs if run.arm == arm) for arm in plan.arms}
    keys = list(dict.fromkeys(k for run in first.values() for k in run.overrides))
    factor = [k for k in keys if len({repr(run.overrides.get(k)) for run in first.values()}) > 1]
    lines = []
    for arm, run in first.items():
        spec = study.arms[arm]
        parts = [f"- **{arm}**: {spec.description}".rstrip()]
        if spec.config_files:
            parts.append("overlays " + ", ".join(f"`{f}`" for f in spec.config_files))
        values = [f"`{k}={run.overrides[k]!r}`" for k in factor if k in run.overrides]
        if values:
            parts.append("keys " + ", ".join(values))
        lines.append("; ".join(parts))
    skipped = [a for a in study.arms if a not in plan.arms]
    if skipped:
        lines.append(f"- not run at this preset: {', '.join(skipped)}")
    shared = next(iter(first.values()))
    common = [f"`{k}={shared.overrides[k]!r}`" for k in keys if k not in factor and k != "dataset_dir"]
    shared_files = 1 + len(study.config_files) + len(plan.preset.config_files)
    files = ", ".join(f"`{f}`" for f in shared.config_files[:shared_files])
    lines.append(f"\nEvery arm: {files}; {', '.join(common) or 'no key overrides'}.")
    if plan.preset.description:
        lines.append(f"Preset `{plan.preset.name}`: {plan.preset.description}.")
    return "\n".join(lines)


def _hardware(results: StudyResults) -> str:
    seen = []
    for run in results.runs:
        hw = run.record.get("hardware")
        if hw and hw not in seen:
            seen.append(hw)
    if not seen:
        return "not recorded (runs made outside `python -m app study`)"
    return "; ".join(
        f"{hw['cpu']}, {hw['cores']} usable cores, OMP_NUM_THREADS {hw['threads']}, GPU {hw['gpu']}, "
        f"torch {hw['torch']}"
        for hw in seen
    )


def _provenance(results: StudyResults, command: str) -> str:
    plan = results.plan
    example = shlex.join(["python", *plan.runs[0].command()[1:]])
    finished = sorted(str(r.record["finished_at"]) for r in results.runs if "finished_at" in r.record)
    total = sum(r.wall_s for r in results.runs if math.isfinite(r.wall_s))
    lines = [
        f"- Command (from the repository root): `{command}`",
        f"- Each run is a bundle training, e.g.: `{example}`",
        f"- Run folders: `{plan.runs_dir / plan.study.name / plan.preset.name}/<arm>/seed<k>`",
        f"- Seeds: {', '.join(str(s) for s in plan.preset.seeds)} (a seed sets the initialisation, the patch "
        "sampling, the augmentation and the train/validation split; arms with the same seed share the split)",
        f"- Dataset: `{plan.preset.dataset_dir or 'the bundle default (generated demo data)'}`",
        f"- Hardware: {_hardware(results)}",
        f"- Runs finished: {finished[0]} to {finished[-1]}" if finished else "- Runs finished: not recorded",
        f"- Total wall time of the runs: {_minutes(total)}",
        f"- Report written: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
    ]
    if results.missing:
        absent = ", ".join(f"{arm} seed {seed}" for arm, seed in results.missing)
        lines.append(f"- **Missing runs** (no history yet): {absent}")
    return "\n".join(lines)


def write_study_report(results: StudyResults, out_dir: str | Path, command: str) -> Path:
    """Draw the figures and write the markdown report of a study.

    Args:
        results: from :func:`app.study.aggregate.collect_results`.
        out_dir: folder of the report (created), e.g. ``docs/study``.
        command: the command line that produced the study, quoted in the report.

    Returns:
        the path of ``<out_dir>/<name>.md``.
    """
    study, plan = results.plan.study, results.plan
    out = Path(out_dir)
    metrics = list(study.metrics)
    curves = plot_study_curves(results, metrics, out / f"{study.name}_curves.png")
    finals = plot_final_values(results, metrics, out / f"{study.name}_final.png")
    findings = judge(study.verdict, results, study.metrics)
    sections = [
        f"# Study: {study.title}",
        f"`{study.name}`, preset `{plan.preset.name}`: {len(results.runs)} of {len(plan.runs)} runs "
        f"({len(plan.arms)} arms x {_count(len(plan.preset.seeds), 'seed')}). {study.description}".rstrip(),
        "## Verdict\n\n" + verdict_paragraph(findings),
        "## Final metrics\n\nMean ± standard deviation over seeds of each run's last validation.\n\n"
        + _table(results),
        "## Curves\n\nMean over seeds, band from the lowest to the highest seed.\n\n"
        f"![curves]({curves.name})\n\nFinal value of each seed (dots) and their mean (line).\n\n"
        f"![final values]({finals.name})",
        "## Arms\n\n" + _arms(results),
        "## How it was run\n\n" + _provenance(results, command),
    ]
    path = out / f"{study.name}.md"
    with atomic_output(path) as tmp:
        tmp.write_text("\n\n".join(sections) + "\n")
    return path
