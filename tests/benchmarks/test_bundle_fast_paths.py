"""The CT bundle's inference choices give the labels of its plain path (PyTorch, Invertd + argmax).

Built from ``bundles/ct/train.json`` + ``inference.json`` with ``ConfigParser`` (as ``monai.bundle run``
does) on a small generated CT volume with randomly initialised weights whose batch-norm statistics fit
the volume. Tolerance: at least 99.9 % of the voxels get the same label (the benchmark's Dice target),
with the same shape and affine; float rounding may flip voxels whose two class scores nearly tie.
bfloat16 arithmetic rounds every layer to an 8-bit mantissa: at least 99.5 % equal labels for it (these
random weights leave many near-ties; the benchmark reports its Dice on the large volume).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from benchmarks.data import ct_volume
from benchmarks.inference_e2e import calibrated_weights
from benchmarks.project import project_evaluator

ROI = (32, 32, 32)
PLAIN = {
    "inference_backend": "torch",
    "channels_last": False,
    "fold_batch_norm": False,
    "separable_inversion": False,
    "resample_dtype": "$torch.float64",
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    work = tmp_path_factory.mktemp("fast_paths")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("APP_DEMO_DIR", str(work / "demo"))  # the generated volume's cache
        image = ct_volume((56, 48, 24), spacing=(1.2, 1.2, 3.0))
    return image, calibrated_weights(image, ROI, work / "model.pt"), work


def _infer(case, name: str, overrides: dict) -> nib.Nifti1Image:
    image, weights, work = case
    out = work / name
    project_evaluator(image, out, weights, out / "run", torch.device("cpu"), ROI, overrides=overrides).run()
    (written,) = out.glob("*_seg.nii.gz")
    return nib.load(written)


@pytest.fixture(scope="module")
def plain(case):
    return _infer(case, "plain", PLAIN)


@pytest.mark.parametrize(
    ("overrides", "agreement"),
    [
        ({}, 0.999),  # the bundle defaults: channels-last, folded batch norm, float32 resampling, ...
        ({"channels_last": True}, 0.999),
        ({"separable_inversion": True}, 0.999),
        ({"resample_dtype": "$torch.float32"}, 0.999),
        ({"inference_backend": "onnxruntime"}, 0.999),
        ({"inference_precision": "bf16"}, 0.995),
    ],
    ids=["defaults", "channels_last", "separable_inversion", "float32_resampling", "onnxruntime", "bf16"],
)
def test_fast_choice_gives_the_plain_labels(case, plain, overrides, agreement):
    if overrides.get("inference_backend") == "onnxruntime":
        pytest.importorskip("onnxruntime")
    choice = {**PLAIN, **overrides} if overrides else {}
    fast = _infer(case, "-".join(overrides) or "defaults", choice)
    expected, labels = np.asanyarray(plain.dataobj), np.asanyarray(fast.dataobj)
    assert labels.shape == expected.shape == (56, 48, 24)
    np.testing.assert_allclose(fast.affine, plain.affine, atol=1e-6)
    assert 0.05 < (expected == 1).mean() < 0.95  # the check is not between two constant labels
    assert (labels == expected).mean() >= agreement
