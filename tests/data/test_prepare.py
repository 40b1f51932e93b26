"""Datalists of runs: the seeded split a training saves, and the cases an evaluation scores."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from app.data.demo import make_em_demo
from app.data.prepare import evaluation_datalist, evaluation_dir, prepare_datalist
from app.errors import InputError, InputErrors

EM_LABELS = {"0": "membrane", "1": "cell"}


@pytest.fixture
def trained_run(tmp_path):
    """A run folder whose saved split was made from a 6-slice EM set, and that set."""
    dataset = make_em_demo(tmp_path / "train_set", n_train=6, n_test=1, size=64)
    run_dir = tmp_path / "run"
    prepare_datalist(dataset, "em", run_dir, labels=EM_LABELS, val_fraction=0.5, seed=0)
    return run_dir, dataset


def test_without_a_folder_the_run_split_is_scored(trained_run):
    run_dir, _ = trained_run
    saved = json.loads((run_dir / "datalist.json").read_text())
    assert evaluation_datalist(None, "em", run_dir) == saved
    assert evaluation_dir(run_dir, None) == str(run_dir / "eval")


def test_a_labelled_folder_is_scored_whole_and_the_split_stays(trained_run, tmp_path, caplog):
    run_dir, _ = trained_run
    before = (run_dir / "datalist.json").read_text()
    test_set = make_em_demo(tmp_path / "held_out", n_train=3, n_test=1, size=64, seed=7)
    with caplog.at_level(logging.WARNING):
        data = evaluation_datalist(test_set, "em", run_dir, labels=EM_LABELS)
    assert data["training"] == [] and data["dataset_dir"] == str(test_set.resolve())
    assert [e["image"].rsplit("/", 1)[1] for e in data["validation"]] == ["0.png", "1.png", "2.png"]
    assert "training cases" not in caplog.text  # other content: no warning
    assert (run_dir / "datalist.json").read_text() == before
    assert sorted(p.name for p in run_dir.iterdir()) == ["datalist.json"]
    assert evaluation_dir(run_dir, test_set) == str(run_dir / "eval_held_out")


def test_training_cases_in_the_folder_are_named(trained_run, tmp_path, caplog):
    run_dir, dataset = trained_run
    copy = shutil.copytree(dataset / "train", tmp_path / "copied")  # a copy: other paths, same files
    trained = json.loads((run_dir / "datalist.json").read_text())["training"]
    with caplog.at_level(logging.WARNING):
        evaluation_datalist(copy, "em", run_dir, labels=EM_LABELS)
    assert f"{len(trained)} of the 6 cases in {copy} were training cases of {run_dir}" in caplog.text


def test_missing_unlabelled_or_bad_folders_are_errors(trained_run, tmp_path):
    run_dir, dataset = trained_run
    with pytest.raises(InputError, match="nowhere: eval_dataset_dir does not exist"):
        evaluation_datalist(tmp_path / "nowhere", "em", run_dir)
    with pytest.raises(InputError, match="unknown dataset layout"):
        evaluation_datalist(dataset / "test", "em", run_dir)  # images only: nothing to score against
    bad = shutil.copytree(dataset / "train", tmp_path / "bad")
    (bad / "label" / "0.png").write_bytes(b"not a png")
    with pytest.raises((InputError, InputErrors), match="0.png"):
        evaluation_datalist(bad, "em", run_dir, labels=EM_LABELS)
    with pytest.raises(InputError, match="datalist file does not exist"):
        evaluation_datalist(dataset, "em", tmp_path / "not_a_run")
