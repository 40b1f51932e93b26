import json

import pytest
import torch
from ignite.engine import Engine
from torch import nn

from app.engine.weights import WeightsLoader, check_weights_fit, describe_mismatch, training_overrides
from app.errors import InputError


def _conv(out_channels: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, out_channels, 3))


def _command(folder, *options: str) -> None:
    argv = ["monai/bundle/__main__.py", "run", "training", "--config_file", "bundles/mri/train.json"]
    argv += options
    (folder / "command.json").write_text(json.dumps({"argv": argv, "seed": 0}))


def test_describe_mismatch_counts_and_shows_the_first_difference():
    assert describe_mismatch(_conv(8).state_dict(), _conv(8)) is None
    assert describe_mismatch(_conv(16).state_dict(), _conv(8)) == (
        "2 tensor(s) differ in shape (first: '0.weight' is [16, 1, 3, 3] in the file, "
        "[8, 1, 3, 3] in the network)"
    )
    other = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Conv2d(8, 8, 1))
    assert describe_mismatch(other.state_dict(), _conv(8)) == (
        "2 tensor(s) in the file the network does not have (first: '1.weight')"
    )
    assert describe_mismatch(_conv(8).state_dict(), other) == (
        "2 network tensor(s) missing from the file (first: '1.weight')"
    )


def test_training_overrides_keep_only_options_that_can_shape_the_network(tmp_path):
    assert training_overrides(tmp_path) is None
    _command(tmp_path, "--dataset_dir", "d", "--run_dir", "runs/a", "--epochs", "30", "--precision", "bf16",
             "--network_def#filters", "[16,32]", "--features=32", "--res_block")
    assert training_overrides(tmp_path) == ["--network_def#filters '[16,32]'", "--features 32", "--res_block"]
    _command(tmp_path, "--dataset_dir", "d", "--epochs", "30")
    assert training_overrides(tmp_path) == []


def test_check_weights_fit_names_the_file_and_the_training_overrides(tmp_path):
    check_weights_fit(_conv(8).state_dict(), _conv(8), tmp_path / "model.pt")
    with pytest.raises(InputError, match="settings these weights were trained with"):
        check_weights_fit(_conv(16).state_dict(), _conv(8), tmp_path / "model.pt")
    _command(tmp_path, "--epochs", "3", "--network_def#filters", "[16,32]")
    with pytest.raises(InputError) as err:
        check_weights_fit(_conv(16).state_dict(), _conv(8), tmp_path / "model.pt")
    expected = f"{tmp_path / 'model.pt'}: weights do not fit the configured network: 2 tensor(s) differ"
    assert str(err.value).startswith(expected)
    assert "its run was trained with --network_def#filters '[16,32]': repeat" in str(err.value)
    _command(tmp_path, "--epochs", "3")
    with pytest.raises(InputError, match="trained with the bundle defaults: drop the network options"):
        check_weights_fit(_conv(16).state_dict(), _conv(8), tmp_path / "model.pt")


def test_weights_loader_loads_fitting_weights_and_explains_the_others(tmp_path):
    engine = Engine(lambda e, b: None)
    source, target = _conv(8), _conv(8)
    torch.save(source.state_dict(), tmp_path / "model.pt")
    WeightsLoader(str(tmp_path / "model.pt"), {"model": target})(engine)
    assert torch.equal(target[0].weight, source[0].weight)

    torch.save(_conv(16).state_dict(), tmp_path / "wide.pt")
    with pytest.raises(InputError, match=r"wide.pt: weights do not fit the configured network: 2 tensor"):
        WeightsLoader(str(tmp_path / "wide.pt"), {"model": _conv(8)})(engine)
    with pytest.raises(InputError, match="missing.pt: no such weights file"):
        WeightsLoader(str(tmp_path / "missing.pt"), {"model": _conv(8)})(engine)
