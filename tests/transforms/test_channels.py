"""Tests of the input-channel helpers: counting, checking and grouping channel files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, LoadImaged

from app.data.demo import make_mri_demo
from app.errors import InputError
from app.transforms import CheckChannels, CheckChannelsd, check_channels, count_channels, group_channel_files

ONE = [{"image": "/d/a.nii.gz", "label": "/d/la.nii.gz"}, {"image": "/d/b.nii.gz", "label": "/d/lb.nii.gz"}]
TWO = [
    {"image": ["/d/a_0000.nii.gz", "/d/a_0001.nii.gz"], "label": "/d/la.nii.gz"},
    {"image": ["/d/b_0000.nii.gz", "/d/b_0001.nii.gz"], "label": "/d/lb.nii.gz"},
]


def test_count_channels_of_entries_and_split_datalists():
    assert count_channels(ONE) == 1
    assert count_channels(TWO) == 2
    assert count_channels({"training": TWO[:1], "validation": TWO[1:], "split": {"seed": 0}}) == 2


def test_count_channels_reads_a_datalist_file(tmp_path):
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": TWO, "validation": []}))
    assert count_channels(path) == 2
    assert count_channels(str(path)) == 2


def test_count_channels_missing_file_names_it(tmp_path):
    with pytest.raises(InputError, match="datalist.json: datalist file does not exist"):
        count_channels(tmp_path / "datalist.json")


def test_count_channels_refuses_mixed_channel_counts():
    with pytest.raises(InputError) as err:
        count_channels({"training": TWO[:1], "validation": ONE[1:]})
    assert err.value.path == "/d/b.nii.gz"
    assert "has 1 channel file(s) but /d/a_0000.nii.gz has 2" in err.value.problem


def test_count_channels_refuses_an_empty_datalist():
    with pytest.raises(InputError, match="no entries"):
        count_channels({"training": [], "validation": []})


def test_check_channels_passes_and_names_the_mismatch():
    assert check_channels(TWO, 2) == 2
    with pytest.raises(InputError) as err:
        check_channels(TWO, 1)
    expected = "/d/a_0000.nii.gz: has 2 channels but the network expects 1 (in_channels)"
    assert str(err.value).startswith(expected)


def test_check_channels_transform_uses_the_file_name():
    image = MetaTensor(torch.zeros(2, 4, 4, 4), meta={"filename_or_obj": "/d/case_0000.nii.gz"})
    assert CheckChannels(2)(image) is image
    with pytest.raises(InputError) as err:
        CheckChannels(3)(image)
    assert str(err.value).startswith("/d/case_0000.nii.gz: has 2 channels but the network expects 3")
    with pytest.raises(InputError, match="^image: has 1 channel but"):
        CheckChannels(2)(np.zeros((1, 4, 4, 4)))


def test_check_channels_dict_transform_passes_data_through():
    data = {"image": torch.zeros(1, 3, 3, 3), "label": torch.ones(1, 3, 3, 3)}
    out = CheckChannelsd(keys="image", expected=1)(data)
    assert out["image"] is data["image"] and out["label"] is data["label"]
    assert CheckChannelsd(keys="missing", expected=1, allow_missing_keys=True)(data).keys() == data.keys()
    with pytest.raises(InputError):
        CheckChannelsd(keys=["image", "label"], expected=2)(data)


def test_loaded_channel_files_stack_and_are_checked(tmp_path):
    """MONAI's LoadImaged stacks a list of channel files; the check sees every stacked channel."""
    make_mri_demo(tmp_path, n_cases=1, n_channels=2)
    entry = json.loads((tmp_path / "dataset.json").read_text())["training"][0]
    entry = {"image": [str(tmp_path / p) for p in entry["image"]], "label": str(tmp_path / entry["label"])}
    load = LoadImaged(keys=["image", "label"], ensure_channel_first=True, image_only=True)
    out = Compose([load, CheckChannelsd(keys="image", expected=2)])(dict(entry))
    assert out["image"].shape[0] == 2 and out["label"].shape[0] == 1
    assert out["image"].shape[1:] == out["label"].shape[1:]
    with pytest.raises(Exception) as err:  # Compose wraps the transform's error, the InputError is its cause
        Compose([load, CheckChannelsd(keys="image", expected=1)])(dict(entry))
    cause = err.value if isinstance(err.value, InputError) else err.value.__cause__
    assert isinstance(cause, InputError) and "has 2 channels but the network expects 1" in str(cause)


def test_group_channel_files_by_nnunet_names():
    files = [{"image": f"/in/{c}_{k:04d}.nii.gz"} for c in ("b", "a") for k in (1, 0)]
    assert group_channel_files(files, 2) == [
        {"image": ["/in/b_0000.nii.gz", "/in/b_0001.nii.gz"]},
        {"image": ["/in/a_0000.nii.gz", "/in/a_0001.nii.gz"]},
    ]
    # One channel: "img_0001" is a case of its own, nothing is grouped.
    assert group_channel_files(files, 1) == files


def test_group_channel_files_reports_missing_suffix_and_wrong_count():
    with pytest.raises(InputError, match="name channel files case_0000"):
        group_channel_files([{"image": "/in/a.nii.gz"}], 2)
    with pytest.raises(InputError) as err:
        group_channel_files([{"image": "/in/a_0000.nii.gz"}, {"image": "/in/b_0000.nii.gz"}], 2)
    assert "has 1 channel but the network expects 2" in str(err.value)
