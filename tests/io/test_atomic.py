"""atomic_output: the final name appears only when writing succeeded."""

from __future__ import annotations

import pytest

from app.io.atomic import atomic_output


def test_success_renames_onto_the_target(tmp_path):
    out = tmp_path / "sub" / "label.nii.gz"
    with atomic_output(out) as tmp:
        assert tmp.parent == out.parent and tmp.name.endswith(".label.nii.gz") and tmp.name.startswith(".")
        tmp.write_bytes(b"new")
    assert out.read_bytes() == b"new"
    assert [p.name for p in out.parent.iterdir()] == ["label.nii.gz"]


def test_failure_leaves_nothing_and_keeps_an_old_file(tmp_path):
    out = tmp_path / "seg.dcm"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(out) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer crashed")
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["seg.dcm"]
