"""Mean ensembles of trained networks: averaged probabilities, members from run folders, leakage refused."""

from __future__ import annotations

import json

import pytest
import torch
from monai.networks.nets import UNet

from app.errors import InputError
from app.networks import MeanEnsemble, ensemble_network


class _Constant(torch.nn.Module):
    """Logits ``log(probs)`` at every voxel, whatever the input."""

    def __init__(self, probs: list[float]) -> None:
        super().__init__()
        self.logits = torch.tensor(probs).log()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.view(1, -1, 1, 1).expand(x.shape[0], -1, *x.shape[2:])


def test_softmax_of_the_ensemble_is_the_mean_of_the_members_probabilities():
    ensemble = MeanEnsemble([_Constant([0.8, 0.2]), _Constant([0.4, 0.6])])
    probs = torch.softmax(ensemble(torch.zeros(2, 1, 3, 4)), dim=1)
    assert probs.shape == (2, 2, 3, 4)
    torch.testing.assert_close(probs[0, :, 0, 0], torch.tensor([0.6, 0.4]))
    # the argmax follows the mean, not a vote: 0.9/0.1 and 0.45/0.55 average to 0.675/0.325
    vote = MeanEnsemble([_Constant([0.9, 0.1]), _Constant([0.45, 0.55]), _Constant([0.45, 0.55])])
    assert torch.softmax(vote(torch.zeros(1, 1, 1, 1)), 1)[0, :, 0, 0].argmax() == 0
    with pytest.raises(ValueError, match="at least one network"):
        MeanEnsemble([])
    three = _Constant([0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match=r"outputs of different shapes \[\(1, 2, 3, 4\), \(1, 3, 3, 4\)\]"):
        MeanEnsemble([_Constant([0.8, 0.2]), three])(torch.zeros(1, 1, 3, 4))


def _trained_batch_norm_unets(n: int) -> list[torch.nn.Module]:
    """``n`` small 3D UNets with batch norm whose running statistics moved off their defaults."""
    torch.manual_seed(0)
    nets = []
    for _ in range(n):
        net = UNet(3, 1, 2, (4, 8), (2,), norm="batch").train()
        with torch.no_grad():
            for _ in range(3):
                net(torch.randn(2, 1, 16, 16, 16))
        nets.append(net.eval())
    return nets


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_the_inference_backends_run_an_ensemble_as_it_is(backend):
    """Batch-norm folding reaches into the members; ONNX Runtime exports the whole ensemble as one graph."""
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime")
    from app.inferers.backends import FoldedBatchNormNetwork, inference_network

    ensemble = MeanEnsemble(_trained_batch_norm_unets(2)).eval()
    x = torch.randn(1, 1, 16, 16, 16)
    wrapped = inference_network(ensemble, backend=backend, fold_batch_norm=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x), ensemble(x), atol=1e-5, rtol=1e-5)
    if backend == "torch":
        assert isinstance(wrapped, FoldedBatchNormNetwork)
        folded = wrapped.build(x)
        assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in folded.modules())


def _unet(seed: int) -> UNet:
    torch.manual_seed(seed)
    return UNet(3, 1, 3, channels=(4, 8), strides=(2,), num_res_units=1).eval()


def _run(tmp_path, name: str, seed: int, training: list[str], validation: list[str]):
    run = tmp_path / name
    run.mkdir()
    torch.save(_unet(seed).state_dict(), run / "model.pt")
    entries = {
        "training": [{"image": i, "label": i + ".label"} for i in training],
        "validation": [{"image": i, "label": i + ".label"} for i in validation],
    }
    (run / "datalist.json").write_text(json.dumps(entries))
    return run


def test_members_are_loaded_from_their_run_folders(tmp_path):
    this = _run(tmp_path, "a", 0, ["c1", "c2"], ["c3"])
    other = _run(tmp_path, "b", 1, ["c1", "c2"], ["c3"])
    network = _unet(0)
    assert ensemble_network(network, []) is network
    ensemble = ensemble_network(network, [other], datalist=this / "datalist.json").eval()
    assert isinstance(ensemble, MeanEnsemble) and ensemble.members[0] is network
    x = torch.rand(1, 1, 8, 8, 8)
    with torch.no_grad():
        expected = (torch.softmax(_unet(0)(x), 1) + torch.softmax(_unet(1)(x), 1)) / 2
        torch.testing.assert_close(torch.softmax(ensemble(x), 1), expected)


def test_a_member_trained_on_validation_cases_is_refused(tmp_path):
    this = _run(tmp_path, "a", 0, ["c1", "c2"], ["c3"])
    leaky = _run(tmp_path, "b", 1, ["c2", "c3"], ["c1"])
    with pytest.raises(
        InputError, match=r"b/datalist.json: ensemble member trained on 1 validation case\(s\)"
    ):
        ensemble_network(_unet(0), [leaky], datalist=this / "datalist.json")
    held_out = {"training": [], "validation": [{"image": "c2", "label": "c"}], "dataset_dir": "/test_set"}
    with pytest.raises(InputError, match=r"trained on 1 validation case\(s\) of /test_set"):
        ensemble_network(_unet(0), [leaky], datalist=held_out)  # an evaluation datalist of a held-out folder
    # without a reference split (inference on new images) there is nothing to leak
    assert isinstance(ensemble_network(_unet(0), [leaky]), MeanEnsemble)


def test_missing_or_mismatched_member_weights_name_the_file(tmp_path):
    with pytest.raises(InputError, match="nowhere/model.pt: ensemble member has no weights file"):
        ensemble_network(_unet(0), [tmp_path / "nowhere"])
    run = _run(tmp_path, "b", 1, [], [])
    torch.save(UNet(3, 1, 2, channels=(4, 8), strides=(2,)).state_dict(), run / "model.pt")
    with pytest.raises(InputError, match="b/model.pt: weights do not fit the configured network"):
        ensemble_network(_unet(0), [run])


def test_a_member_is_built_as_its_own_run_recorded_it(tmp_path):
    """A member trained wider than this command's network: built from its ``config.json``, not copied."""
    this = _run(tmp_path, "a", 0, ["c1"], ["c2"])
    wide = _run(tmp_path, "b", 1, ["c1"], ["c2"])
    spec = {
        "_target_": "UNet",
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": 3,
        "channels": [6, 12],
        "strides": [2],
        "num_res_units": 1,
    }
    torch.manual_seed(2)
    trained = UNet(**{k: v for k, v in spec.items() if k != "_target_"}).eval()
    torch.save(trained.state_dict(), wide / "model.pt")
    (wide / "config.json").write_text(json.dumps({"network_def": spec}))
    ensemble = ensemble_network(_unet(0), [wide], datalist=this / "datalist.json").eval()
    member = ensemble.members[1]
    assert [p.shape for p in member.parameters()] == [p.shape for p in trained.parameters()]
    x = torch.rand(1, 1, 8, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(member(x), trained(x))
