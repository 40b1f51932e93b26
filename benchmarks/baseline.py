"""The reference recipe: MONAI model-zoo ``spleen_ct_segmentation``, re-implemented from its facts.

- network: ``UNet(3, 1, 2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2,
  norm="batch")``, eager, fp32 on CPU (AMP on CUDA only, as the recipe's ``amp=True`` is a GPU setting);
- pre-processing: ``LoadImaged`` -> ``EnsureChannelFirstd`` -> ``Orientationd("RAS")`` ->
  ``Spacingd(1.5, 1.5, 2.0)`` -> ``ScaleIntensityRanged(-57, 164 -> 0, 1, clip)``;
- training: ``RandCropByPosNegLabeld`` 96^3, pos 1, neg 1, 4 samples; ``CacheDataset(cache_rate=1.0)``
  + ``DataLoader(batch_size=2, shuffle=True, num_workers=4)``; ``DiceCELoss``; ``Novograd(lr=2e-3)``;
  ``SupervisedTrainer``;
- inference: ``SlidingWindowInferer(96^3, sw_batch_size=4, overlap=0.5)`` (constant blending) ->
  softmax -> ``Invertd`` -> argmax -> ``SaveImaged``.

The inference loader reads in the main process (``num_workers=0``): with one volume, loader workers
overlap nothing, and the per-stage timers need the stages in this process.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader, Dataset
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.inferers import SimpleInferer, SlidingWindowInferer
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from monai.optimizers import Novograd
from monai.transforms import (
    Activationsd,
    AsDiscreted,
    Compose,
    EnsureChannelFirstd,
    Invertd,
    LoadImaged,
    Orientationd,
    RandCropByPosNegLabeld,
    SaveImaged,
    ScaleIntensityRanged,
    Spacingd,
)

__all__ = [
    "PIXDIM",
    "ROI_SIZE",
    "reference_evaluator",
    "reference_network",
    "reference_preprocessing",
    "reference_trainer",
]

PIXDIM = (1.5, 1.5, 2.0)
ROI_SIZE = (96, 96, 96)


def reference_network() -> UNet:
    """The recipe's 3-D U-Net (random initialisation)."""
    return UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=2,
        channels=(16, 32, 64, 128, 256),
        strides=(2, 2, 2, 2),
        num_res_units=2,
        norm="batch",
    )


def _deterministic(keys: Sequence[str], modes: Sequence[str]) -> list:
    return [
        LoadImaged(keys=keys),
        EnsureChannelFirstd(keys=keys),
        Orientationd(keys=keys, axcodes="RAS"),
        Spacingd(keys=keys, pixdim=PIXDIM, mode=modes),
        ScaleIntensityRanged(keys="image", a_min=-57, a_max=164, b_min=0.0, b_max=1.0, clip=True),
    ]


def reference_preprocessing() -> Compose:
    """The recipe's inference pre-processing of ``{"image": path}``."""
    return Compose(_deterministic(["image"], ["bilinear"]))


def reference_trainer(
    datalist: list[dict],
    device: torch.device,
    patch_size: Sequence[int] = ROI_SIZE,
    batch_size: int = 2,
    num_samples: int = 4,
    num_workers: int = 4,
    epoch_length: int | None = None,
    dataset: CacheDataset | None = None,
) -> tuple[SupervisedTrainer, CacheDataset]:
    """A one-epoch trainer of the recipe; pass ``dataset`` to reuse a cache built by an earlier call.

    ``epoch_length`` caps the steps of the epoch (default: the whole dataset).

    Returns:
        the trainer and its ``CacheDataset``.
    """
    if dataset is None:
        transform = Compose(
            _deterministic(["image", "label"], ["bilinear", "nearest"])
            + [
                RandCropByPosNegLabeld(
                    keys=["image", "label"],
                    label_key="label",
                    spatial_size=patch_size,
                    pos=1,
                    neg=1,
                    num_samples=num_samples,
                    image_key="image",
                    image_threshold=0,
                )
            ]
        )
        dataset = CacheDataset(datalist, transform, cache_rate=1.0, num_workers=num_workers)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers)
    network = reference_network().to(device)
    trainer = SupervisedTrainer(
        device=device,
        max_epochs=1,
        epoch_length=epoch_length,
        train_data_loader=loader,
        network=network,
        optimizer=Novograd(network.parameters(), lr=2e-3),
        loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
        inferer=SimpleInferer(),
        amp=device.type == "cuda",
    )
    return trainer, dataset


def reference_evaluator(
    image: str | Path,
    output_dir: str | Path,
    network: torch.nn.Module,
    device: torch.device,
    roi_size: Sequence[int] = ROI_SIZE,
    sw_batch_size: int = 4,
    overlap: float = 0.5,
) -> SupervisedEvaluator:
    """The recipe's inference of one image file: writes ``<output_dir>/<name>_seg.nii.gz``."""
    preprocessing = reference_preprocessing()
    loader = DataLoader(Dataset([{"image": str(image)}], preprocessing), batch_size=1, num_workers=0)
    postprocessing = Compose(
        [
            Activationsd(keys="pred", softmax=True),
            Invertd(
                keys="pred",
                transform=preprocessing,
                orig_keys="image",
                nearest_interp=False,
                to_tensor=True,
                device="cpu",
            ),
            AsDiscreted(keys="pred", argmax=True),
            SaveImaged(
                keys="pred",
                output_dir=str(output_dir),
                output_postfix="seg",
                output_dtype=np.uint8,
                resample=False,
                separate_folder=False,
                print_log=False,
            ),
        ]
    )
    return SupervisedEvaluator(
        device=device,
        val_data_loader=loader,
        network=network,
        inferer=SlidingWindowInferer(roi_size=roi_size, sw_batch_size=sw_batch_size, overlap=overlap),
        postprocessing=postprocessing,
        amp=device.type == "cuda",
    )
