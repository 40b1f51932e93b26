"""DICOM SEG: round trip on the real CT series, dciodvfy, and the dcmqi reference SEG."""

from __future__ import annotations

import copy
import logging
import os
import shutil
import subprocess
import warnings

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from app.errors import InputError
from app.io.dicom_seg import read_dicom_seg, write_dicom_seg
from app.io.dicom_series import read_dicom_series
from app.io.segments import ANATOMICAL_STRUCTURE, SegmentInfo, segments_from_metadata

META = {
    "1": {
        "name": "spleen",
        "color": [157, 108, 162],
        "category": ["123037004", "SCT", "Anatomical Structure"],
        "type": ["78961009", "SCT", "Spleen"],
    },
    "3": {"name": "liver", "color": [221, 130, 101], "type": ["10200004", "SCT", "Liver"]},
    "7": {"name": "kidney", "color": [185, 102, 83], "type": ["64033007", "SCT", "Kidney"]},
}


def _labels(shape=(20, 512, 512)) -> np.ndarray:
    """Label 1: a sphere (r 20 mm), label 3: a smaller one; label 7 is declared but absent."""
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    labels = np.zeros(shape, dtype=np.uint8)
    labels[((z - 9) * 2.0) ** 2 + ((y - 300) * 0.977) ** 2 + ((x - 350) * 0.977) ** 2 < 20**2] = 1
    labels[((z - 4) * 2.0) ** 2 + ((y - 250) * 0.977) ** 2 + ((x - 150) * 0.977) ** 2 < 6**2] = 3
    return labels


@pytest.fixture(scope="module")
def written(ct_series, tmp_path_factory):
    """A SEG of :func:`_labels` on the real series, with a patient/study identity set on the sources."""
    image, datasets = ct_series
    datasets = copy.deepcopy(datasets)
    for ds in datasets:
        ds.PatientID, ds.PatientName = "ANON-0042", "Anonymous^Test"
    out = tmp_path_factory.mktemp("seg") / "out" / "seg.dcm"
    labels = _labels()
    path = write_dicom_seg(labels, datasets, segments_from_metadata(META), out, "unet-spleen", "0.1.0")
    return path, labels, image, datasets


def test_segments_from_metadata():
    segments = segments_from_metadata({"segments": META})
    assert list(segments) == [1, 3, 7]
    assert segments[1] == SegmentInfo(
        "spleen", (157, 108, 162), ("123037004", "SCT", "Anatomical Structure"), ("78961009", "SCT", "Spleen")
    )
    assert segments[3].category == ("123037004", "SCT", "Anatomical Structure")  # the default


@pytest.mark.parametrize(
    ("meta", "problem"),
    [
        ({"1": {"name": "spleen", "color": [1, 2, 3]}}, "segment '1': missing field 'type'"),
        ({"1": {"name": "x", "color": [1, 2, 300], "type": ["1", "SCT", "X"]}}, "rgb must be 3 integers"),
        ({"0": {"name": "x", "color": [1, 2, 3], "type": ["1", "SCT", "X"]}}, "label value must be in 1.."),
        ({}, "no segments"),
    ],
)
def test_segments_from_metadata_errors(meta, problem):
    with pytest.raises(InputError, match=problem) as info:
        segments_from_metadata(meta, source="bundle/metadata.json")
    assert info.value.path == "bundle/metadata.json"


def test_round_trip_same_masks_on_the_same_grid(written):
    path, labels, image, datasets = written
    masks, names = read_dicom_seg(path, reference=image)
    assert names == {1: "spleen", 2: "liver", 3: "kidney"}
    for number, value in ((1, 1), (2, 3), (3, 7)):
        mask = masks[number]
        assert mask.GetSize() == image.GetSize() and mask.GetOrigin() == image.GetOrigin()
        assert mask.GetSpacing() == image.GetSpacing() and mask.GetDirection() == image.GetDirection()
        np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), labels == value)
    own_grid, _ = read_dicom_seg(path)  # no reference: the SEG's own grid, the same physical voxels
    on_image = sitk.Resample(own_grid[1], image, sitk.Transform(), sitk.sitkNearestNeighbor)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(on_image), labels == 1)
    np.testing.assert_allclose(own_grid[1].GetSpacing(), image.GetSpacing(), atol=1e-6)


def test_round_trip_by_referenced_sop_instance(written):
    path, labels, _, datasets = written
    seg = hd.seg.segread(path)
    uids = [ds.SOPInstanceUID for ds in datasets]
    pixels = seg.get_pixels_by_source_instance(uids, segment_numbers=[1, 2, 3])
    for channel, value in enumerate((1, 3, 7)):
        np.testing.assert_array_equal(pixels[..., channel], labels == value)


def test_references_the_source_and_copies_identity(written, series_dir):
    path, _, _, datasets = written
    seg = pydicom.dcmread(path)
    referenced = {
        item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    }
    on_disk = {
        pydicom.dcmread(p, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID
        for p in series_dir.iterdir()
    }
    assert referenced == {ds.SOPInstanceUID for ds in datasets} == on_disk
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == datasets[0].SeriesInstanceUID
    assert seg.PatientID == "ANON-0042" and seg.PatientName == "Anonymous^Test"
    assert seg.StudyInstanceUID == datasets[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == datasets[0].FrameOfReferenceUID
    assert seg.SeriesInstanceUID != datasets[0].SeriesInstanceUID
    assert "not for clinical use" in seg.SeriesDescription
    assert seg.SegmentationType == "BINARY" and seg.Modality == "SEG"


def test_segment_codes_colours_and_algorithm(written):
    seg = pydicom.dcmread(written[0])
    first, second = seg.SegmentSequence[0], seg.SegmentSequence[1]
    assert first.SegmentLabel == "spleen" and second.SegmentLabel == "liver"
    category = first.SegmentedPropertyCategoryCodeSequence[0]
    kind = first.SegmentedPropertyTypeCodeSequence[0]
    assert (category.CodeValue, category.CodingSchemeDesignator) == ("123037004", "SCT")
    assert (kind.CodeValue, kind.CodingSchemeDesignator, kind.CodeMeaning) == ("78961009", "SCT", "Spleen")
    assert second.SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"
    lab = [int(v) for v in first.RecommendedDisplayCIELabValue]
    rgb = hd.color.CIELabColor.from_dicom_value(lab).to_rgb()
    np.testing.assert_allclose(rgb, (157, 108, 162), atol=1)
    assert first.SegmentAlgorithmType == "AUTOMATIC" and first.SegmentAlgorithmName == "unet-spleen"
    family = first.SegmentationAlgorithmIdentificationSequence[0]
    assert family.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    assert family.AlgorithmVersion == "0.1.0"


def test_dciodvfy_finds_no_errors(written):
    exe = shutil.which("dciodvfy")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("dciodvfy (Debian package dicom3tools) is not on PATH in CI")
        pytest.skip("dciodvfy not installed (apt-get install dicom3tools)")
    result = subprocess.run([exe, str(written[0])], capture_output=True, text=True, timeout=120)
    report = result.stdout + result.stderr
    errors = [line for line in report.splitlines() if line.startswith("Error")]
    assert not errors, report


def test_only_the_final_file_is_left(written):
    assert [p.name for p in written[0].parent.iterdir()] == ["seg.dcm"]


def test_bad_masks_write_nothing(ct_series, tmp_path):
    image, datasets = ct_series
    segments = segments_from_metadata(META)
    out = tmp_path / "seg.dcm"
    with pytest.raises(ValueError, match=r"label values \[2\] have no SegmentInfo"):
        write_dicom_seg(np.full((20, 512, 512), 2, np.uint8), datasets, segments, out, "a", "1")
    with pytest.raises(ValueError, match="does not match the source series"):
        write_dicom_seg(np.zeros((19, 512, 512), bool), datasets, segments, out, "a", "1")
    shifted = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    shifted.CopyInformation(image)
    shifted.SetOrigin(np.add(image.GetOrigin(), (0, 0, 2.0)).tolist())
    with pytest.raises(ValueError, match="not on the source series grid"):
        write_dicom_seg(shifted, datasets, segments, out, "a", "1")
    assert list(tmp_path.iterdir()) == []


def test_mask_image_on_the_series_grid(ct_series, tmp_path):
    image, datasets = ct_series
    mask = sitk.GetImageFromArray((_labels() == 1).astype(np.uint8))
    mask.CopyInformation(image)
    segments = {1: segments_from_metadata(META)[1]}
    path = write_dicom_seg(mask, datasets, segments, tmp_path / "m.dcm", "a", "1")
    masks, _ = read_dicom_seg(path, reference=image)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(masks[1]), _labels() == 1)


@pytest.mark.parametrize("name", ["SECRET^PATIENT", "SECRETPATIENT"])
def test_no_patient_data_in_logs_or_warnings(ct_series, tmp_path, caplog, name):
    image, datasets = ct_series
    datasets = copy.deepcopy(datasets)
    for ds in datasets:
        ds.PatientName, ds.PatientID = name, "SECRETID42"
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = write_dicom_seg(
            _labels() == 1, datasets, {1: segments_from_metadata(META)[1]}, tmp_path / "s.dcm", "a", "1"
        )
        read_dicom_seg(path, reference=image)
    assert caplog.text and "SECRET" not in caplog.text
    assert not [w for w in caught if "SECRET" in str(w.message)]


def test_reference_seg_matches_dcmqi_label_maps(shared_data):
    folder = shared_data / "dicom_seg_ref"
    image, _ = read_dicom_series(folder / "ct-3slice")
    masks, names = read_dicom_seg(folder / "liver.dcm", reference=image)
    assert names == {1: "Liver"}
    expected = sitk.ReadImage(str(folder / "liver_seg.nrrd"))
    np.testing.assert_allclose(expected.GetOrigin(), image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(expected.GetSpacing(), image.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(expected.GetDirection(), image.GetDirection(), atol=1e-6)
    liver = sitk.GetArrayFromImage(masks[1])
    assert liver.sum() > 10000
    np.testing.assert_array_equal(liver, sitk.GetArrayFromImage(expected) == 1)
    both = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "liver_spine_seg.nrrd")))
    np.testing.assert_array_equal(liver, both == 1)
    own, _ = read_dicom_seg(folder / "liver.dcm")  # without a reference: the SEG's own grid is the same
    np.testing.assert_allclose(own[1].GetOrigin(), image.GetOrigin(), atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(own[1]), liver)


def test_write_on_the_dcmqi_series_reproduces_the_reference(shared_data, tmp_path):
    """Another real series (uncompressed, empty SpecificCharacterSet): write the liver, read it back."""
    folder = shared_data / "dicom_seg_ref"
    image, datasets = read_dicom_series(folder / "ct-3slice")
    liver = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "liver_seg.nrrd"))) == 1
    segments = {1: SegmentInfo("Liver", (221, 130, 101), ANATOMICAL_STRUCTURE, ("10200004", "SCT", "Liver"))}
    path = write_dicom_seg(liver, datasets, segments, tmp_path / "liver.dcm", "unet", "1")
    masks, names = read_dicom_seg(path, reference=image)
    assert names == {1: "Liver"}
    np.testing.assert_array_equal(sitk.GetArrayFromImage(masks[1]), liver)
    reference = pydicom.dcmread(folder / "liver.dcm")
    assert pydicom.dcmread(path).StudyInstanceUID == reference.StudyInstanceUID


def test_reference_on_another_grid_is_an_input_error(shared_data, ct_series):
    with pytest.raises(InputError, match="cannot be placed on the reference image grid"):
        read_dicom_seg(shared_data / "dicom_seg_ref" / "liver.dcm", reference=ct_series[0])


def test_not_a_seg_is_an_input_error(series_dir):
    path = next(series_dir.iterdir())
    with pytest.raises(InputError, match="cannot read as a DICOM Segmentation") as info:
        read_dicom_seg(path)
    assert info.value.path == str(path)


@pytest.mark.filterwarnings("ignore:.*represent the intended person name")
@pytest.mark.parametrize("segmentation_type", ["FRACTIONAL", "LABELMAP"])
def test_reads_fractional_and_labelmap_segs(shared_data, tmp_path, segmentation_type):
    image, datasets = read_dicom_series(shared_data / "dicom_seg_ref" / "ct-3slice")
    datasets = copy.deepcopy(datasets)
    for ds in datasets:
        del ds.SpecificCharacterSet  # empty here, which highdicom rejects
    labels = np.zeros((3, 512, 512), np.uint8)
    labels[0:2, 100:200, 150:260] = 1
    labels[1:3, 300:340, 300:420] = 2
    if segmentation_type == "FRACTIONAL":  # 0.4 must read as outside, 0.6 as inside
        pixels = np.stack([np.where(labels == v, 0.6, 0.0) for v in (1, 2)], axis=-1).astype(np.float32)
        pixels[0, 0:10, 0:10, 0] = 0.4
    else:
        pixels = labels
    segments = segments_from_metadata(META)
    algorithm = hd.AlgorithmIdentificationSequence(
        "a", hd.sr.CodedConcept("123109", "DCM", "Manual Processing"), "1"
    )
    descriptions = [
        hd.seg.SegmentDescription(
            n,
            segments[v].name,
            hd.sr.CodedConcept(*segments[v].category),
            hd.sr.CodedConcept(*segments[v].type),
            "MANUAL",
            algorithm,
        )
        for n, v in ((1, 1), (2, 3))
    ]
    seg = hd.seg.Segmentation(
        datasets, pixels, segmentation_type, descriptions, hd.UID(), 1, hd.UID(), 1, "m", "m", "1", "1"
    )
    seg.save_as(tmp_path / "seg.dcm")
    masks, names = read_dicom_seg(tmp_path / "seg.dcm", reference=image)
    assert names == {1: "spleen", 2: "liver"}
    for number in (1, 2):
        np.testing.assert_array_equal(sitk.GetArrayFromImage(masks[number]), labels == number)
