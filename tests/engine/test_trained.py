import json
import logging

import pytest
import torch
from monai.bundle import ConfigParser
from torch import nn

from app.engine.trained import recorded_network, trained_network
from app.networks import UNet2015


def _record(run_dir, bundle: str, **overrides) -> dict:
    """Write the merged config a training of ``bundle`` with ``overrides`` records; return its metadata."""
    parser = ConfigParser()
    parser.read_config(f"bundles/{bundle}/train.json")
    for key, value in overrides.items():
        parser[key] = value
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(parser.get()))
    return json.loads(open(f"bundles/{bundle}/metadata.json").read())


def _shapes(network: nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in network.state_dict().items()}


def test_recorded_network_is_the_trained_one_and_redoes_nothing_of_the_run(tmp_path):
    run_dir = tmp_path / "run"
    meta = _record(run_dir, "em", features=4, depth=2, preset="unet2015")
    state = torch.get_rng_state()
    network = recorded_network(run_dir, meta)
    assert torch.equal(torch.get_rng_state(), state)  # weights drawn from a forked generator
    expected = UNet2015(2, 1, 2, features=4, depth=2, dropout=0.5, norm=None)
    assert _shapes(network) == _shapes(expected)
    assert network.dropout.p == 0.5  # the preset's dropout, resolved through the record's expressions
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json"]  # no new command.json, no datalist


def test_recorded_network_counts_channels_from_the_saved_split_without_reading_data(tmp_path):
    run_dir = tmp_path / "run"
    meta = _record(run_dir, "mri", **{"network_def#filters": [4, 8, 8, 8, 8]})
    case = {"image": ["/nowhere/a_0000.nii.gz", "/nowhere/a_0001.nii.gz"], "label": "/nowhere/a.nii.gz"}
    (run_dir / "datalist.json").write_text(json.dumps({"training": [case], "validation": [case]}))
    network = recorded_network(run_dir, meta)
    first = next(v for k, v in network.state_dict().items() if v.ndim == 5)
    assert tuple(first.shape)[:2] == (4, 2)  # 4 filters of the override, 2 channels of the split


def test_trained_network_falls_back_to_the_configured_one(tmp_path, caplog):
    configured = nn.Conv2d(1, 2, 3)
    weights = tmp_path / "model.pt"
    assert trained_network(configured, weights) is configured  # no record: weights from elsewhere
    (tmp_path / "config.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="app.engine.trained"):
        assert trained_network(configured, weights) is configured
    assert f"{tmp_path / 'config.json'}: cannot rebuild the training network (JSONDecodeError" in caplog.text
    (tmp_path / "config.json").write_text(json.dumps({"network_def": {"_target_": "app.networks.NoSuchNet"}}))
    assert trained_network(configured, weights) is configured


def test_trained_network_prefers_the_record_to_this_commands_config(tmp_path, caplog):
    meta = _record(tmp_path, "em", features=4, depth=2)
    configured = UNet2015(2, 1, 2, features=8, depth=2)
    with caplog.at_level(logging.INFO, logger="app.engine.trained"):
        network = trained_network(configured, tmp_path / "model_final.pt", meta)
    assert _shapes(network) == _shapes(UNet2015(2, 1, 2, features=4, depth=2, norm="instance"))
    assert "trained with other network options than this command's config" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="app.engine.trained"):
        network = trained_network(nn.Conv2d(1, 2, 3), tmp_path / "model_final.pt", meta)
    assert "the run trained a UNet2015 where this command's config builds a Conv2d" in caplog.text
    assert isinstance(network, UNet2015)


@pytest.mark.parametrize("record", [[1, 2], {"network": 1}])
def test_a_record_without_a_network_definition_is_not_used(tmp_path, record):
    (tmp_path / "config.json").write_text(json.dumps(record))
    with pytest.raises(ValueError):
        recorded_network(tmp_path)
