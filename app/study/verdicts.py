"""Verdict rules: a study's claims judged from its numbers, one sentence each.

A study file lists its checks under ``"verdict"``; each names a rule and its arguments::

    {"rule": "smoother", "arm": "1x572", "than": "16x284", "claim": "larger tiles give smoother curves"}
    {"rule": "better", "metric": "val_iou", "arm": "full", "than": "none", "claim": "augmentation helps"}
    {"rule": "no_gain", "metric": "val_iou", "arm": "weight_map", "than": "plain_ce", "claim": "..."}
    {"rule": "faster", "metric": "val_dice", "arm": "adam", "than": "sgd", "claim": "...", "fraction": 0.9}
    {"rule": "overfits_more", "metric": "val_dice", "arm": "adam", "than": "sgd", "claim": "..."}
    {"rule": "best", "metric": "val_iou"}

Every rule reduces each run to one number (below), then compares the two arms' values over seeds. A
difference counts only when the arms' seed ranges (min to max) do not overlap; with overlapping ranges
the claim is *inconclusive (difference within seed spread)*, with one seed per arm it is inconclusive
too (no spread to judge by). The exception is ``no_gain``, whose claim *is* "no clear difference": it
holds unless ``arm`` is clearly better.

Per-run numbers:

- ``smoother``: loss roughness, the variance of the epoch-to-epoch change of ``train_loss`` over the
  second half of the epochs (first-differencing removes the trend; the second half leaves out the
  initial fall, which would otherwise dominate). Needs at least 8 epochs.
- ``better`` / ``no_gain`` / ``best``: the final value of ``metric`` (its last validation).
- ``faster``: the first epoch at which ``metric`` reaches ``fraction`` (default 0.9) of the way from
  the worse arm's mean first validation to the best mean value either arm reached; a run that never
  gets there counts as one epoch after its last.
- ``overfits_more``: the validation decline, how far ``metric`` fell back from its best value by the
  end (train loss keeps falling in every arm, so a larger decline is a larger train/validation gap).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from app.study.aggregate import RunResult, Summary, arm_curve, summarize

if TYPE_CHECKING:
    from app.study.aggregate import StudyResults

__all__ = [
    "HELD",
    "NOT_HELD",
    "INCONCLUSIVE",
    "OBSERVED",
    "RULES",
    "Finding",
    "check_verdict_spec",
    "judge",
    "verdict_paragraph",
    "loss_roughness",
]

HELD = "held"
NOT_HELD = "did not hold"
INCONCLUSIVE = "inconclusive"
OBSERVED = "observed"
"""Status of a ``best`` finding, which states a ranking rather than judging a claim."""

MIN_ROUGHNESS_EPOCHS = 8


@dataclass(frozen=True)
class Finding:
    """The outcome of one verdict check: its status and the sentence stating it with the numbers."""

    status: str
    text: str


def loss_roughness(run: RunResult) -> float:
    """Variance of the epoch-to-epoch change of ``train_loss`` over the second half of the epochs.

    NaN when the run has fewer than ``MIN_ROUGHNESS_EPOCHS`` epochs (too few changes to estimate it).
    """
    loss = run.series("train_loss")[1]
    if loss.size < MIN_ROUGHNESS_EPOCHS:
        return math.nan
    return float(np.var(np.diff(loss[loss.size // 2 :])))


def _order(a: Summary, b: Summary) -> str:
    """Where ``a``'s seed range lies relative to ``b``'s: above, below, overlap, one seed or no data."""
    if a.n == 0 or b.n == 0:
        return "no data"
    if a.n < 2 or b.n < 2:
        return "one seed"
    if a.lo > b.hi:
        return "above"
    if a.hi < b.lo:
        return "below"
    return "overlap"


_REASONS = {
    "overlap": "inconclusive (difference within seed spread)",
    "one seed": "inconclusive (one seed per arm: no spread to judge by)",
}


def _claim(order: str, expected: str, no_data: str) -> tuple[str, str]:
    """Status and wording of a claim that ``arm``'s number lies ``expected`` (above / below) ``than``'s."""
    if order == expected:
        return HELD, "the claim held"
    if order in ("above", "below"):
        return NOT_HELD, "the claim did not hold"
    if order == "no data":
        return INCONCLUSIVE, f"inconclusive ({no_data})"
    return INCONCLUSIVE, _REASONS[order]


def _seeds(a: Summary, b: Summary) -> str:
    counts = f"{a.n} seed{'s' if a.n != 1 else ''}" if a.n == b.n else f"{a.n} and {b.n} seeds"
    order = _order(a, b)
    if order in ("above", "below"):
        return f"{counts}; the seed ranges do not overlap"
    if order == "overlap":
        return f"{counts}; the seed ranges overlap"
    return counts


def _sentence(
    spec: Mapping[str, Any], status: str, quantity: str, a: Summary, b: Summary, note: str = ""
) -> str:
    if a.n == 0 or b.n == 0:  # nothing to quote: the status says what is missing
        return f"Claim \u201c{spec['claim']}\u201d: {status}."
    return (
        f"Claim \u201c{spec['claim']}\u201d: {status}: {quantity} was {a.text()} for {spec['arm']} vs "
        f"{b.text()} for {spec['than']} ({_seeds(a, b)}){note}."
    )


def _no_data(results: StudyResults, spec: Mapping[str, Any], what: str) -> str:
    """Why a comparison has no numbers: an arm outside the preset, an arm without runs, else ``what``."""
    compared = (spec["arm"], spec["than"])
    skipped = [arm for arm in compared if arm not in results.arms]
    if skipped:
        return f"{', '.join(skipped)} not run at preset {results.plan.preset.name}"
    absent = [arm for arm in compared if not results.of_arm(arm)]
    return f"no finished run of {', '.join(absent)}" if absent else what


def _per_run(results: StudyResults, arm: str, value: Callable[[RunResult], float]) -> Summary:
    return summarize([value(run) for run in results.of_arm(arm)])


def _smoother(spec: Mapping[str, Any], results: StudyResults, metrics: Mapping[str, str]) -> Finding:
    a = _per_run(results, spec["arm"], loss_roughness)
    b = _per_run(results, spec["than"], loss_roughness)
    status, wording = _claim(
        _order(a, b), "below", _no_data(results, spec, f"fewer than {MIN_ROUGHNESS_EPOCHS} epochs per run")
    )
    quantity = "the loss roughness (variance of the epoch-to-epoch change of the train loss, second half)"
    return Finding(status, _sentence(spec, wording, quantity, a, b))


def _final(results: StudyResults, arm: str, metric: str) -> Summary:
    return _per_run(results, arm, lambda run: run.final(metric))


def _better(spec: Mapping[str, Any], results: StudyResults, metrics: Mapping[str, str]) -> Finding:
    metric = spec["metric"]
    a, b = _final(results, spec["arm"], metric), _final(results, spec["than"], metric)
    expected = "above" if metrics[metric] == "max" else "below"
    status, wording = _claim(_order(a, b), expected, _no_data(results, spec, f"{metric} never measured"))
    return Finding(status, _sentence(spec, wording, f"the final {metric}", a, b))


def _no_gain(spec: Mapping[str, Any], results: StudyResults, metrics: Mapping[str, str]) -> Finding:
    metric = spec["metric"]
    a, b = _final(results, spec["arm"], metric), _final(results, spec["than"], metric)
    order = _order(a, b)
    gain = "above" if metrics[metric] == "max" else "below"
    if order == gain:
        status, wording = NOT_HELD, "the claim did not hold (a clear gain)"
    elif order in ("above", "below"):
        status, wording = HELD, "the claim held (no gain: a clear loss)"
    elif order == "overlap":
        status, wording = HELD, "the claim held (difference within seed spread)"
    elif order == "one seed":
        status, wording = INCONCLUSIVE, _REASONS[order]
    else:
        status, wording = (
            INCONCLUSIVE,
            f"inconclusive ({_no_data(results, spec, f'{metric} never measured')})",
        )
    return Finding(status, _sentence(spec, wording, f"the final {metric}", a, b))


def _reached(run: RunResult, metric: str, target: float, direction: str) -> float:
    epochs, values = run.series(metric)
    hits = epochs[values >= target] if direction == "max" else epochs[values <= target]
    if hits.size:
        return float(hits[0])
    return float(run.rows[-1]["epoch"] + 1) if run.rows else math.nan


def _faster(spec: Mapping[str, Any], results: StudyResults, metrics: Mapping[str, str]) -> Finding:
    metric, direction = spec["metric"], metrics[spec["metric"]]
    fraction = float(spec.get("fraction", 0.9))
    curves = [arm_curve(results.of_arm(arm), metric) for arm in (spec["arm"], spec["than"])]
    if any(c.epochs.size == 0 for c in curves):
        a = b = summarize([])
        status, wording = (
            INCONCLUSIVE,
            f"inconclusive ({_no_data(results, spec, f'{metric} never measured')})",
        )
        return Finding(status, _sentence(spec, wording, "the epoch of reaching the target", a, b))
    pick = max if direction == "max" else min
    worst = min if direction == "max" else max
    start = worst(c.mean[0] for c in curves)
    best = pick(pick(c.mean) for c in curves)
    target = start + fraction * (best - start)
    a = _per_run(results, spec["arm"], lambda run: _reached(run, metric, target, direction))
    b = _per_run(results, spec["than"], lambda run: _reached(run, metric, target, direction))
    if best == start:
        status, wording = INCONCLUSIVE, f"inconclusive ({metric} did not improve)"
    else:
        status, wording = _claim(_order(a, b), "below", "no data")
    quantity = f"the first epoch with {metric} {fraction:.0%} of the way to the best ({target:.3g})"
    return Finding(status, _sentence(spec, wording, quantity, a, b))


def _decline(run: RunResult, metric: str, direction: str) -> float:
    best, final = run.best(metric, direction), run.final(metric)
    return best - final if direction == "max" else final - best


def _overfits_more(spec: Mapping[str, Any], results: StudyResults, metrics: Mapping[str, str]) -> Finding:
    metric, direction = spec["metric"], metrics[spec["metric"]]
    a = _per_run(results, spec["arm"], lambda run: _decline(run, metric, direction))
    b = _per_run(results, spec["than"], lambda run: _decline(run, metric, direction))
    status, wording = _claim(_order(a, b), "above", _no_data(results, spec, f"{metric} never measured"))
    losses = [
        _per_run(results, arm, lambda run: run.final("train_loss")) for arm in (spec["arm"], spec["than"])
    ]
    note = f"; final train loss {losses[0].text()} vs {losses[1].text()}"
    quantity = f"the validation decline (best minus final {metric})"
    return Finding(status, _sentence(spec, wording, quantity, a, b, note))


def _best(spec: Mapping[str, Any], results: StudyResults, metrics: Mapping[str, str]) -> Finding:
    metric, direction = spec["metric"], metrics[spec["metric"]]
    finals = {arm: _final(results, arm, metric) for arm in results.arms}
    finals = {arm: s for arm, s in finals.items() if s.n}
    if not finals:
        return Finding(INCONCLUSIVE, f"No final {metric} was measured.")
    choose = max if direction == "max" else min
    winner = choose(finals, key=lambda arm: finals[arm].mean)
    text = f"Best final {metric}: {winner} ({finals[winner].text()})"
    others = [arm for arm in finals if arm != winner]
    if not others:
        return Finding(OBSERVED, text + ".")
    if any(s.n < 2 for s in finals.values()):
        return Finding(OBSERVED, text + "; one seed per arm, so the differences are not judged.")
    clear = [arm for arm in others if _order(finals[winner], finals[arm]) in ("above", "below")]
    close = [arm for arm in others if arm not in clear]
    parts = []
    if clear:
        parts.append("clearly ahead of " + ", ".join(f"{a} ({finals[a].text()})" for a in clear))
    if close:
        parts.append("within seed spread of " + ", ".join(f"{a} ({finals[a].text()})" for a in close))
    return Finding(OBSERVED, f"{text}; {'; '.join(parts)}.")


_Rule = Callable[[Mapping[str, Any], "StudyResults", Mapping[str, str]], Finding]

RULES: dict[str, tuple[tuple[str, ...], _Rule]] = {
    "smoother": (("arm", "than", "claim"), _smoother),
    "better": (("metric", "arm", "than", "claim"), _better),
    "no_gain": (("metric", "arm", "than", "claim"), _no_gain),
    "faster": (("metric", "arm", "than", "claim"), _faster),
    "overfits_more": (("metric", "arm", "than", "claim"), _overfits_more),
    "best": (("metric",), _best),
}
"""Rule name -> (required keys, function)."""


def check_verdict_spec(spec: Mapping[str, Any], arms: Collection[str], metrics: Mapping[str, str]) -> None:
    """Check one verdict entry of a study file.

    Raises:
        ValueError: unknown rule, a missing key, or an arm or metric the study does not define.
    """
    rule = spec.get("rule")
    if rule not in RULES:
        raise ValueError(f"verdict rule {rule!r} unknown; valid: {', '.join(RULES)}")
    missing = [k for k in RULES[rule][0] if k not in spec]
    if missing:
        raise ValueError(f"verdict rule {rule!r} needs {missing}")
    for key in ("arm", "than"):
        if key in spec and spec[key] not in arms:
            raise ValueError(f"verdict rule {rule!r}: {key} {spec[key]!r} is not an arm ({', '.join(arms)})")
    if "metric" in spec and spec["metric"] not in metrics:
        raise ValueError(f"verdict rule {rule!r}: metric {spec['metric']!r} is not in the study's metrics")


def judge(
    specs: Sequence[Mapping[str, Any]], results: StudyResults, metrics: Mapping[str, str]
) -> list[Finding]:
    """Apply every verdict check of a study to its results, in order."""
    return [RULES[spec["rule"]][1](spec, results, metrics) for spec in specs]


def verdict_paragraph(findings: Sequence[Finding]) -> str:
    """The findings' sentences as one paragraph."""
    return " ".join(f.text for f in findings) if findings else "No verdict checks are defined for this study."
