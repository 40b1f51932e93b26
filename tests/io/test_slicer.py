"""3D Slicer .seg.nrrd, NIfTI and STL outputs: read back with independent readers, same geometry."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from app.io.mesh import STL_HEADER, write_stl
from app.io.segments import ANATOMICAL_STRUCTURE, SegmentInfo, label_values
from app.io.slicer import ijk_to_lps, write_label_nifti, write_seg_nrrd

SEGMENTS = {
    1: SegmentInfo("spleen", (157, 108, 162), ANATOMICAL_STRUCTURE, ("78961009", "SCT", "Spleen")),
    2: SegmentInfo("left kidney", (185, 102, 83), ANATOMICAL_STRUCTURE, ("64033007", "SCT", "Kidney")),
    5: SegmentInfo("liver", (221, 130, 101), ANATOMICAL_STRUCTURE, ("10200004", "SCT", "Liver")),
    9: SegmentInfo("declared but empty", (0, 0, 255), ANATOMICAL_STRUCTURE, ("85756007", "SCT", "Tissue")),
}


@pytest.fixture
def label() -> sitk.Image:
    """A 40x30x12 oblique label map (labels 1, 2, 5) with anisotropic spacing and an odd origin."""
    z, y, x = np.ogrid[:12, :30, :40]
    array = np.zeros((12, 30, 40), dtype=np.uint8)
    array[(((z - 6) * 2.5) ** 2 + ((y - 15) * 0.7) ** 2 + ((x - 12) * 0.7) ** 2) < 8**2] = 1
    array[2:5, 3:9, 30:37] = 2
    array[8:11, 20:28, 25:38] = 5
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.7, 2.5))
    image.SetOrigin((-120.25, 33.5, -804.5))
    t = np.deg2rad(20)
    image.SetDirection(
        (np.cos(t), 0, np.sin(t), 0, -1, 0, np.sin(t), 0, -np.cos(t))
    )  # a flipped, tilted frame
    return image


def test_seg_nrrd_round_trip_through_slicerio(label, tmp_path):
    path = write_seg_nrrd(label, SEGMENTS, tmp_path / "out" / "case.seg.nrrd")
    assert [p.name for p in path.parent.iterdir()] == ["case.seg.nrrd"]
    seg = slicerio.read_segmentation(str(path))
    np.testing.assert_array_equal(seg["voxels"], sitk.GetArrayFromImage(label).transpose(2, 1, 0))
    np.testing.assert_allclose(seg["ijkToLPS"], ijk_to_lps(label), atol=1e-9)
    segments = {s["labelValue"]: s for s in seg["segments"]}
    assert sorted(segments) == [1, 2, 5, 9]
    for value, info in SEGMENTS.items():
        assert segments[value]["name"] == info.name
        np.testing.assert_allclose(segments[value]["color"], np.array(info.rgb) / 255, atol=1e-6)
        assert segments[value]["terminology"]["type"] == [info.type[1], info.type[0], info.type[2]]
    assert slicerio.segment_names(seg) == [info.name for info in SEGMENTS.values()]


def test_seg_nrrd_geometry_with_simpleitk(label, tmp_path):
    back = sitk.ReadImage(str(write_seg_nrrd(label, SEGMENTS, tmp_path / "case.seg.nrrd")))
    np.testing.assert_allclose(back.GetOrigin(), label.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(back.GetSpacing(), label.GetSpacing(), atol=1e-9)
    np.testing.assert_allclose(back.GetDirection(), label.GetDirection(), atol=1e-9)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(label))


def test_seg_nrrd_of_the_real_model_segmentation(shared_data, tmp_path):
    label = sitk.ReadImage(str(shared_data / "ct_dicom_series" / "model_seg.nii.gz"))
    values = np.unique(sitk.GetArrayViewFromImage(label))[1:]
    segments = {
        int(v): SegmentInfo(
            f"class {v}", (int(v), 100, 200), ANATOMICAL_STRUCTURE, ("85756007", "SCT", "Tissue")
        )
        for v in values
    }
    seg = slicerio.read_segmentation(str(write_seg_nrrd(label, segments, tmp_path / "model.seg.nrrd")))
    np.testing.assert_array_equal(seg["voxels"], sitk.GetArrayFromImage(label).transpose(2, 1, 0))
    np.testing.assert_allclose(seg["ijkToLPS"], ijk_to_lps(label), atol=1e-9)
    assert [s["labelValue"] for s in seg["segments"]] == [int(v) for v in values]


def test_undeclared_label_writes_nothing(label, tmp_path):
    with pytest.raises(ValueError, match=r"label values \[5\] have no SegmentInfo"):
        write_seg_nrrd(label, {1: SEGMENTS[1], 2: SEGMENTS[2]}, tmp_path / "x.seg.nrrd")
    assert list(tmp_path.iterdir()) == []


def test_label_nifti_keeps_the_geometry(label, tmp_path):
    path = write_label_nifti(label, tmp_path / "label.nii.gz")
    back = sitk.ReadImage(str(path))
    np.testing.assert_allclose(back.GetOrigin(), label.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(back.GetSpacing(), label.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(back.GetDirection(), label.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(label))
    nifti = nib.load(path)  # nibabel: RAS affine of the same grid
    np.testing.assert_allclose(nifti.affine, np.diag([-1, -1, 1, 1]) @ ijk_to_lps(label), atol=1e-4)
    with pytest.raises(ValueError, match="must end with .nii"):
        write_label_nifti(label, tmp_path / "label.nrrd")


def _read_stl(path):
    data = path.read_bytes()
    count = int(np.frombuffer(data[80:84], "<u4")[0])
    facets = np.frombuffer(
        data[84:], np.dtype([("normal", "<f4", (3,)), ("vertices", "<f4", (3, 3)), ("attribute", "<u2")])
    )
    assert len(facets) == count
    return data[:80], facets


def test_stl_meshes_in_lps(label, tmp_path):
    written = write_stl(label, SEGMENTS, tmp_path / "meshes")
    assert sorted(written) == [1, 2, 5]  # the empty segment 9 gets no mesh
    assert written[2].name == "2_left_kidney.stl"
    header, facets = _read_stl(written[1])
    assert header.startswith(STL_HEADER)
    triangles = facets["vertices"].astype(np.float64)
    volume = np.einsum("ij,ij->i", triangles[:, 0], np.cross(triangles[:, 1], triangles[:, 2])).sum() / 6
    voxels = (sitk.GetArrayViewFromImage(label) == 1).sum() * np.prod(label.GetSpacing())
    assert volume == pytest.approx(voxels, rel=0.1)  # closed, outward normals, physical mm^3
    centre = np.array(label.TransformContinuousIndexToPhysicalPoint((12.0, 15.0, 6.0)))
    np.testing.assert_allclose(triangles.reshape(-1, 3).mean(axis=0), centre, atol=0.5)
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    np.testing.assert_allclose(facets["normal"], normals, atol=1e-4)


@pytest.mark.parametrize(
    ("labels", "segments", "problem"),
    [
        (np.array([0, 1.0]), SEGMENTS, "boolean or non-negative integers"),
        (np.array([0, -1]), SEGMENTS, "boolean or non-negative integers"),
        (np.array([0, 70000]), SEGMENTS, "above 65535"),
        (np.array([0, 3]), SEGMENTS, r"label values \[3\] have no SegmentInfo"),
        (np.array([0, 1]), {0: SEGMENTS[1], 1: SEGMENTS[1]}, r"must be in 1..65535, got \[0\]"),
    ],
)
def test_label_values_errors(labels, segments, problem):
    with pytest.raises(ValueError, match=problem):
        label_values(labels, segments)


def test_label_values():
    assert label_values(np.array([[0, 2], [2, 1]], np.uint16), SEGMENTS) == [1, 2, 5, 9]
    assert label_values(np.array([True, False]), {1: SEGMENTS[1]}) == [1]
