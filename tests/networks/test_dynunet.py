"""DeepSupervisionDynUNet: DynUNet's stacked deep-supervision output as the list the losses take."""

import torch
from monai.losses import DeepSupervisionLoss, DiceCELoss
from monai.networks.nets import DynUNet

from app.networks import DeepSupervisionDynUNet

_ARGS = (3, 1, 3, [3, 3, 3, 3], [1, 2, 2, 1], [2, 2, 1])
_KWARGS = {"filters": [4, 8, 16, 32], "res_block": True}


def _pair(deep_supervision: bool) -> tuple[DynUNet, DeepSupervisionDynUNet]:
    torch.manual_seed(0)
    plain = DynUNet(*_ARGS, **_KWARGS, deep_supervision=deep_supervision, deep_supr_num=1)
    ours = DeepSupervisionDynUNet(*_ARGS, **_KWARGS, deep_supervision=deep_supervision, deep_supr_num=1)
    ours.load_state_dict(plain.state_dict())
    return plain, ours


def test_training_output_is_the_unbound_stack_of_dynunet():
    plain, ours = _pair(deep_supervision=True)
    x = torch.rand(2, 1, 16, 16, 16)
    stacked = plain.train()(x)
    outs = ours.train()(x)
    assert stacked.shape == (2, 2, 3, 16, 16, 16)
    assert isinstance(outs, list) and len(outs) == 2
    for k, out in enumerate(outs):
        torch.testing.assert_close(out, stacked[:, k])


def test_eval_output_and_state_dict_are_dynunets():
    plain, ours = _pair(deep_supervision=True)
    assert list(ours.state_dict()) == list(plain.state_dict())
    x = torch.rand(1, 1, 16, 16, 16)
    with torch.no_grad():
        out = ours.eval()(x)
        torch.testing.assert_close(out, plain.eval()(x))
    assert out.shape == (1, 3, 16, 16, 16)


def test_without_deep_supervision_training_returns_one_tensor():
    _, ours = _pair(deep_supervision=False)
    out = ours.train()(torch.rand(1, 1, 16, 16, 16))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 3, 16, 16, 16)


def test_deep_supervision_loss_weights_the_heads():
    _, ours = _pair(deep_supervision=True)
    x = torch.rand(2, 1, 16, 16, 16)
    y = torch.randint(0, 3, (2, 1, 16, 16, 16)).float()
    base = DiceCELoss(to_onehot_y=True, softmax=True)
    outs = ours.train()(x)
    loss = DeepSupervisionLoss(base, weight_mode="exp")(outs, y)
    torch.testing.assert_close(loss, base(outs[0], y) + 0.5 * base(outs[1], y))


def test_traced_eval_network_takes_other_sizes():
    _, ours = _pair(deep_supervision=True)
    ours.eval()
    with torch.no_grad():
        traced = torch.jit.trace(ours, torch.rand(1, 1, 16, 16, 16))
        x = torch.rand(2, 1, 24, 32, 16)
        torch.testing.assert_close(traced(x), ours(x))
