"""Datalists from every layout, seeded splits and k folds."""

from __future__ import annotations

import json

import pytest

from app.data.datalist import (
    datalist_from_folder,
    datalist_from_lists,
    detect_layout,
    kfold_datalist,
    load_datalist,
    split_datalist,
    write_datalist,
)
from app.errors import InputError


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_msd_with_dataset_json(tmp_path):
    for i in range(3):
        _touch(tmp_path / "imagesTr" / f"c_{i}.nii.gz")
        _touch(tmp_path / "labelsTr" / f"c_{i}.nii.gz")
    training = [{"image": f"./imagesTr/c_{i}.nii.gz", "label": f"./labelsTr/c_{i}.nii.gz"} for i in (2, 0)]
    (tmp_path / "dataset.json").write_text(json.dumps({"training": training}))
    entries = datalist_from_folder(tmp_path)
    assert entries == [
        {"image": str(tmp_path / "imagesTr/c_2.nii.gz"), "label": str(tmp_path / "labelsTr/c_2.nii.gz")},
        {"image": str(tmp_path / "imagesTr/c_0.nii.gz"), "label": str(tmp_path / "labelsTr/c_0.nii.gz")},
    ]


def test_msd_dataset_json_listing_missing_file(tmp_path):
    _touch(tmp_path / "imagesTr" / "a.nii.gz")
    (tmp_path / "dataset.json").write_text(
        json.dumps({"training": [{"image": "./imagesTr/a.nii.gz", "label": "./labelsTr/a.nii.gz"}]})
    )
    with pytest.raises(InputError, match="labelsTr/a.nii.gz: listed in .*dataset.json but missing"):
        datalist_from_folder(tmp_path)


def test_msd_without_dataset_json_groups_channels_and_skips_junk(tmp_path):
    for case in ("case_2", "case_10"):
        _touch(tmp_path / "imagesTr" / f"{case}_0000.nii.gz")
        _touch(tmp_path / "imagesTr" / f"{case}_0001.nii.gz")
        _touch(tmp_path / "labelsTr" / f"{case}.nii.gz")
    _touch(tmp_path / "imagesTr" / "._case_2_0000.nii.gz")
    entries = datalist_from_folder(tmp_path)
    assert [e["label"].split("/")[-1] for e in entries] == ["case_2.nii.gz", "case_10.nii.gz"]
    assert [p.split("/")[-1] for p in entries[0]["image"]] == ["case_2_0000.nii.gz", "case_2_0001.nii.gz"]


def test_msd_image_without_label(tmp_path):
    _touch(tmp_path / "imagesTr" / "a.nii.gz")
    _touch(tmp_path / "imagesTr" / "b.nii.gz")
    _touch(tmp_path / "labelsTr" / "a.nii.gz")
    with pytest.raises(InputError, match=r"imagesTr/b: no label"):
        datalist_from_folder(tmp_path)


def test_isbi_layout_png_and_tiff(tmp_path):
    for i in (0, 1, 10):
        _touch(tmp_path / "train" / "image" / f"{i}.png")
        _touch(tmp_path / "train" / "label" / f"{i}.png")
    assert detect_layout(tmp_path) == "isbi"
    entries = datalist_from_folder(tmp_path)
    assert [e["image"].split("/")[-1] for e in entries] == ["0.png", "1.png", "10.png"]
    flat = tmp_path / "flat"
    _touch(flat / "image" / "s.tif")
    _touch(flat / "label" / "s.tif")
    assert len(datalist_from_folder(flat)) == 1


def test_unknown_layout_and_missing_folder(tmp_path):
    with pytest.raises(InputError, match="unknown dataset layout"):
        detect_layout(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        detect_layout(tmp_path / "nope")


def test_lists_must_pair():
    with pytest.raises(ValueError, match="2 images but 1 labels"):
        datalist_from_lists(["a", "b"], ["a"])
    assert datalist_from_lists(["a"])[0].keys() == {"image"}


ENTRIES = [{"image": f"img{i}", "label": f"lbl{i}"} for i in range(10)]


def test_split_is_seeded_reproducible_and_disjoint():
    a, b, c = (
        split_datalist(ENTRIES, 0.2, seed=1),
        split_datalist(ENTRIES, 0.2, seed=1),
        split_datalist(ENTRIES, 0.2, 2),
    )
    assert a == b and a != c
    assert len(a["training"]) == 8 and len(a["validation"]) == 2
    names = {e["image"] for e in a["training"]} | {e["image"] for e in a["validation"]}
    assert names == {e["image"] for e in ENTRIES}
    assert a["split"] == {"seed": 1, "val_fraction": 0.2}


def test_split_keeps_one_case_each_side():
    two = split_datalist(ENTRIES[:2], 0.1, seed=0)
    assert len(two["training"]) == 1 and len(two["validation"]) == 1
    with pytest.raises(ValueError):
        split_datalist(ENTRIES, 1.0)


def test_kfold_covers_every_case_once():
    folds = [kfold_datalist(ENTRIES, 5, k, seed=3) for k in range(5)]
    val = [e["image"] for f in folds for e in f["validation"]]
    assert sorted(val) == sorted(e["image"] for e in ENTRIES)
    assert all(len(f["training"]) == 8 for f in folds)
    with pytest.raises(ValueError):
        kfold_datalist(ENTRIES, 5, 5)


def test_write_and_load_round_trip(tmp_path):
    data = split_datalist(ENTRIES, 0.3, seed=0)
    path = write_datalist(data, tmp_path / "run" / "datalist.json")
    assert load_datalist(path) == data
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        load_datalist(tmp_path / "bad.json")


@pytest.mark.parametrize(
    "name, n, layout", [("isbi2012", 24, "isbi"), ("hippocampus", 208, "msd"), ("spleen_ct", 1, "msd")]
)
def test_shared_layouts(shared_data, name, n, layout):
    assert detect_layout(shared_data / name) == layout
    entries = datalist_from_folder(shared_data / name)
    assert len(entries) == n
    assert all(e["image"].split("/")[-1] == e["label"].split("/")[-1] for e in entries)
