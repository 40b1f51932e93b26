"""Verdict rules on hand-made histories whose outcome is known: held, did not hold, inconclusive."""

from __future__ import annotations

import math

import pytest

from app.study.aggregate import RunResult, collect_results
from app.study.config import load_study, plan_study
from app.study.verdicts import (
    HELD,
    INCONCLUSIVE,
    NOT_HELD,
    OBSERVED,
    judge,
    loss_roughness,
    verdict_paragraph,
)


def _loss(noise: float, epochs: int = 10, phase: int = 0) -> list[float]:
    """A falling loss with an alternating wiggle of +-``noise``: its roughness is about (2 noise)^2."""
    return [1.0 / (e + 1) + noise * (-1) ** (e + phase) for e in range(epochs)]


def test_loss_roughness_is_the_variance_of_the_second_half_differences():
    rows = [{"epoch": e + 1, "train_loss": v} for e, v in enumerate([9.0, 7.0, 5.0, 3.0, 1.0, 2.0, 1.0, 2.0])]
    # second half 1, 2, 1, 2 -> differences 1, -1, 1 -> variance 1 - (1/3)^2
    assert loss_roughness(RunResult("a", 0, rows)) == pytest.approx(8 / 9)
    assert math.isnan(loss_roughness(RunResult("a", 0, rows[:7])))


SMOOTHER = {"rule": "smoother", "arm": "big", "than": "small", "claim": "larger tiles give smoother curves"}


@pytest.mark.parametrize(
    "big_noise, small_noise, status, words",
    [
        ((0.001, 0.002, 0.0015), (0.05, 0.06, 0.055), HELD, "the claim held"),
        ((0.05, 0.06, 0.055), (0.001, 0.002, 0.0015), NOT_HELD, "the claim did not hold"),
        (
            (0.01, 0.03, 0.02),
            (0.015, 0.025, 0.02),
            INCONCLUSIVE,
            "inconclusive (difference within seed spread)",
        ),
    ],
)
def test_smoother(make_plan, write_runs, curve, big_noise, small_noise, status, words):
    plan = make_plan(["small", "big"], [SMOOTHER])
    rows = {
        arm: [curve("val_iou", [0.8] * 10, loss=_loss(n, phase=i)) for i, n in enumerate(noise)]
        for arm, noise in (("big", big_noise), ("small", small_noise))
    }
    write_runs(plan, rows)
    (finding,) = judge(plan.study.verdict, collect_results(plan), plan.study.metrics)
    assert finding.status == status
    assert words in finding.text
    assert "\u201clarger tiles give smoother curves\u201d" in finding.text
    assert "3 seeds" in finding.text


def test_smoother_needs_eight_epochs_and_two_seeds(make_plan, write_runs, curve):
    plan = make_plan(["small", "big"], [SMOOTHER])
    write_runs(plan, {arm: [curve("val_iou", [0.8] * 7)] * 3 for arm in ("small", "big")})
    (finding,) = judge(plan.study.verdict, collect_results(plan), plan.study.metrics)
    assert (finding.status, "fewer than 8 epochs per run" in finding.text) == (INCONCLUSIVE, True)

    plan = make_plan(["small", "big"], [SMOOTHER], seeds=[0])
    write_runs(
        plan, {"big": [curve("val_iou", [0.8] * 10, _loss(0.001))], "small": [curve("val_iou", [0.8] * 10)]}
    )
    (finding,) = judge(plan.study.verdict, collect_results(plan), plan.study.metrics)
    assert finding.status == INCONCLUSIVE
    assert "one seed per arm: no spread to judge by" in finding.text


NO_GAIN = {
    "rule": "no_gain",
    "metric": "val_iou",
    "arm": "wmap",
    "than": "plain",
    "claim": "no clear IoU gain",
}


@pytest.mark.parametrize(
    "wmap, status, words",
    [
        ((0.80, 0.81, 0.82), HELD, "the claim held (difference within seed spread)"),
        ((0.90, 0.91, 0.92), NOT_HELD, "the claim did not hold (a clear gain)"),
        ((0.70, 0.71, 0.72), HELD, "the claim held (no gain: a clear loss)"),
    ],
)
def test_no_gain(make_plan, write_runs, curve, wmap, status, words):
    plan = make_plan(["plain", "wmap"], [NO_GAIN])
    plain = (0.805, 0.815, 0.825)
    write_runs(
        plan,
        {
            "plain": [curve("val_iou", [0.5, v]) for v in plain],
            "wmap": [curve("val_iou", [0.5, v]) for v in wmap],
        },
    )
    (finding,) = judge(plan.study.verdict, collect_results(plan), plan.study.metrics)
    assert finding.status == status
    assert words in finding.text
    assert f"{sum(wmap) / 3:.3g} ± 0.01 for wmap vs 0.815 ± 0.01 for plain" in finding.text


def test_better_on_an_error_metric_means_lower(make_plan, write_runs, curve):
    spec = {
        "rule": "better",
        "metric": "val_rand_error",
        "arm": "elastic",
        "than": "none",
        "claim": "elastic helps",
    }
    plan = make_plan(["none", "elastic"], [spec], seeds=[0, 1])
    write_runs(
        plan,
        {
            "none": [curve("val_rand_error", [0.5, 0.2]), curve("val_rand_error", [0.5, 0.25])],
            "elastic": [curve("val_rand_error", [0.5, 0.1]), curve("val_rand_error", [0.5, 0.12])],
        },
    )
    (finding,) = judge(plan.study.verdict, collect_results(plan), plan.study.metrics)
    assert finding.status == HELD
    assert "the final val_rand_error was 0.11 ± 0.014 for elastic vs 0.225 ± 0.035 for none" in finding.text


def test_a_claim_about_an_arm_without_runs_is_inconclusive(make_plan, write_runs, curve):
    spec = {
        "rule": "better",
        "metric": "val_iou",
        "arm": "full",
        "than": "none",
        "claim": "augmentation helps",
    }
    plan = make_plan(["none", "full"], [spec])
    write_runs(plan, {"none": [curve("val_iou", [0.8])] * 3})
    results = collect_results(plan)
    assert results.missing == (("full", 0), ("full", 1), ("full", 2))
    (finding,) = judge(plan.study.verdict, results, plan.study.metrics)
    assert finding.status == INCONCLUSIVE
    assert finding.text == "Claim \u201caugmentation helps\u201d: inconclusive (no finished run of full)."


def test_faster_counts_epochs_to_ninety_percent_of_the_way(make_plan, write_runs, curve):
    spec = {"rule": "faster", "metric": "val_iou", "arm": "adam", "than": "sgd", "claim": "Adam is faster"}
    plan = make_plan(["sgd", "adam"], [spec], seeds=[0, 1])
    sgd = [0.5, 0.6, 0.7, 0.8, 0.85, 0.87, 0.88, 0.9]  # reaches the target 0.86 at epoch 6
    adam = [0.5, 0.88, 0.89, 0.9, 0.9, 0.9, 0.9, 0.9]  # at epoch 2
    never = [0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]  # never: counts as epoch 9
    write_runs(
        plan, {"sgd": [curve("val_iou", sgd), curve("val_iou", never)], "adam": [curve("val_iou", adam)] * 2}
    )
    (finding,) = judge(plan.study.verdict, collect_results(plan), plan.study.metrics)
    # start 0.5 (first validation), best mean 0.9 (adam) -> target 0.5 + 0.9 * 0.4 = 0.86
    assert "(0.86)" in finding.text
    assert "was 2 ± 0 for adam vs 7.5 ± 2.1 for sgd" in finding.text
    assert finding.status == HELD


def test_overfits_more_compares_the_fall_from_the_best(make_plan, write_runs, curve):
    spec = {
        "rule": "overfits_more",
        "metric": "val_iou",
        "arm": "adam",
        "than": "sgd",
        "claim": "Adam over-fits",
    }
    plan = make_plan(["sgd", "adam"], [spec], seeds=[0, 1])
    write_runs(
        plan,
        {
            "sgd": [curve("val_iou", [0.6, 0.8, 0.85]), curve("val_iou", [0.6, 0.8, 0.84])],
            "adam": [curve("val_iou", [0.8, 0.9, 0.8]), curve("val_iou", [0.8, 0.9, 0.78])],
        },
    )
    (finding,) = judge(plan.study.verdict, collect_results(plan), plan.study.metrics)
    assert finding.status == HELD
    assert "was 0.11 ± 0.014 for adam vs 0 ± 0 for sgd" in finding.text
    assert "final train loss 0.333 ± 0 vs 0.333 ± 0" in finding.text


def test_best_names_the_winner_and_what_it_clearly_beats(make_plan, write_runs, curve):
    plan = make_plan(["bce", "dice", "dicece"], [{"rule": "best", "metric": "val_iou"}], seeds=[0, 1])
    write_runs(
        plan,
        {
            "bce": [curve("val_iou", [0.85]), curve("val_iou", [0.86])],
            "dice": [curve("val_iou", [0.895]), curve("val_iou", [0.905])],
            "dicece": [curve("val_iou", [0.9]), curve("val_iou", [0.91])],
        },
    )
    findings = judge(plan.study.verdict, collect_results(plan), plan.study.metrics)
    assert findings[0].status == OBSERVED
    assert findings[0].text == (
        "Best final val_iou: dicece (0.905 ± 0.0071); clearly ahead of bce (0.855 ± 0.0071); "
        "within seed spread of dice (0.9 ± 0.0071)."
    )
    assert verdict_paragraph(findings) == findings[0].text


def test_best_of_an_error_metric_is_the_lowest(make_plan, write_runs, curve):
    plan = make_plan(["a", "b"], [{"rule": "best", "metric": "val_rand_error"}], seeds=[0])
    write_runs(plan, {"a": [curve("val_rand_error", [0.3])], "b": [curve("val_rand_error", [0.2])]})
    (finding,) = judge(plan.study.verdict, collect_results(plan), plan.study.metrics)
    assert (
        finding.text
        == "Best final val_rand_error: b (0.2); one seed per arm, so the differences are not judged."
    )


def test_a_claim_about_an_arm_outside_the_preset_says_so(tmp_path, write_runs, curve):
    plan = plan_study(load_study("optimizers"), "tiny", tmp_path)  # sgd_0.99 and adam only
    write_runs(plan, {"sgd_0.99": [curve("val_dice", [0.8, 0.85])], "adam": [curve("val_dice", [0.8, 0.9])]})
    findings = judge(plan.study.verdict, collect_results(plan), plan.study.metrics)
    assert [f.status for f in findings] == [INCONCLUSIVE] * 5
    assert "one seed per arm" in findings[0].text
    for finding, arm, schedule in zip(
        findings[2:4], ("adam_cosine", "adam_plateau"), ("cosine", "ReduceLROnPlateau"), strict=True
    ):
        claim = f"Claim \u201can adaptive learning rate ({schedule}) helps Adam\u201d"
        assert finding.text == f"{claim}: inconclusive ({arm} not run at preset tiny)."
    assert findings[4].text == "No final val_rand_error was measured."
