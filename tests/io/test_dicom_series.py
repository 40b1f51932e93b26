"""read_dicom_series on the real JPEG 2000 CT series, and every bad-input error on edited copies of it."""

from __future__ import annotations

import logging
import re

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import JPEG2000Lossless

from app.errors import InputError
from app.io.dicom_series import SeriesRules, read_dicom_series

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _affine(image: sitk.Image) -> np.ndarray:
    """4x4 index (x, y, z) -> LPS matrix of a SimpleITK image."""
    affine = np.eye(4)
    affine[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return affine


def _edit(path, **attributes):
    ds = pydicom.dcmread(path)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.save_as(path)


def _files(folder):
    return sorted(p for p in folder.iterdir())


def _raises(folder, pattern, **kwargs) -> InputError:
    """read_dicom_series(folder) raises InputError matching ``pattern``; the folder is left unchanged."""
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(InputError, match=pattern) as info:
        read_dicom_series(folder, **kwargs)
    assert sorted(p.name for p in folder.iterdir()) == before
    return info.value


def test_real_series_matches_gdcm(ct_series, series_dir):
    image, datasets = ct_series
    assert image.GetSize() == (512, 512, 20) and len(datasets) == 20
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(series_dir)))
    gdcm = reader.Execute()
    np.testing.assert_allclose(image.GetOrigin(), gdcm.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(image.GetSpacing(), gdcm.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(image.GetDirection(), gdcm.GetDirection(), atol=1e-4)
    np.testing.assert_allclose(image.GetSpacing(), (0.9765625, 0.9765625, 2.0))  # SliceThickness says 3
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(gdcm))


def test_real_series_is_in_hounsfield_units(ct_series):
    array = sitk.GetArrayFromImage(ct_series[0])
    assert array.dtype == np.int16
    air = array[:, 20:40, 236:276]  # in front of the patient, inside the field of view
    assert abs(float(air.mean()) + 1000) < 20
    assert -100 < float(np.median(array[:, 200:300, 200:300])) < 150  # soft tissue in the abdomen


def test_datasets_follow_the_slice_order(ct_series):
    image, datasets = ct_series
    for k, ds in enumerate(datasets):
        corner = image.TransformIndexToPhysicalPoint((0, 0, k))
        np.testing.assert_allclose(corner, [float(v) for v in ds.ImagePositionPatient], atol=1e-4)
        assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID  # filled from the file meta
    assert "PixelData" not in datasets[0]


def test_anonymised_series_gets_stable_derived_uids(ct_series, series_dir):
    _, datasets = ct_series
    raw = pydicom.dcmread(next(series_dir.iterdir()), stop_before_pixels=True)
    assert raw.SeriesInstanceUID == "" and raw.StudyInstanceUID == "" and raw.SOPInstanceUID == ""
    again = read_dicom_series(series_dir)[1]
    assert {ds.SeriesInstanceUID for ds in datasets} == {again[0].SeriesInstanceUID} != {""}
    assert again[0].StudyInstanceUID == datasets[0].StudyInstanceUID != ""


def test_model_seg_covers_the_same_voxels_with_rows_reversed(ct_series, shared_data):
    """The README's "same grid": same voxel centres, but the NIfTI stores the y axis reversed."""
    image, _ = ct_series
    path = shared_data / "ct_dicom_series" / "model_seg.nii.gz"
    nifti = nib.load(path)
    assert nifti.shape == image.GetSize()
    ras = LPS_TO_RAS @ _affine(image)
    assert not np.allclose(nifti.affine, ras, atol=1e-4)  # not index-for-index identical ...
    flip_y = np.eye(4)
    flip_y[1, 1], flip_y[1, 3] = -1.0, image.GetSize()[1] - 1
    np.testing.assert_allclose(nifti.affine, ras @ flip_y, atol=1e-4)  # ... but the same grid, y flipped
    labels = sitk.ReadImage(str(path))
    on_grid = sitk.GetArrayFromImage(sitk.Resample(labels, image, sitk.Transform(), sitk.sitkNearestNeighbor))
    np.testing.assert_array_equal(on_grid, np.flip(sitk.GetArrayFromImage(labels), axis=1))
    hu = sitk.GetArrayFromImage(image)
    assert (hu[on_grid > 0] > -500).mean() > 0.95  # organs on tissue, not air: the geometry is right


def test_selects_a_series_by_rules(copy_series):
    folder = copy_series(6)
    for path in _files(folder)[:2]:
        _edit(path, SeriesInstanceUID="1.2.3.4", SeriesDescription="Scout", Modality="MR")
    _raises(folder, "2 series found")
    image, datasets = read_dicom_series(folder, modality="CT")
    assert image.GetSize()[2] == 4 and {ds.Modality for ds in datasets} == {"CT"}
    image, _ = read_dicom_series(folder, series_rules=SeriesRules(description="^scout$"))
    assert image.GetSize()[2] == 2
    image, _ = read_dicom_series(folder, series_rules=SeriesRules(most_slices=True))
    assert image.GetSize()[2] == 4


def test_empty_folder(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    error = _raises(folder, "no files found")
    assert error.path == str(folder)


def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match="not a folder"):
        read_dicom_series(tmp_path / "nope")


def test_only_a_text_file(tmp_path, caplog):
    folder = tmp_path / "text"
    folder.mkdir()
    (folder / "notes.txt").write_text("not DICOM")
    with caplog.at_level(logging.DEBUG, logger="app.io"):
        error = _raises(folder, r"no DICOM files found \(1 file")
    assert error.path == str(folder)
    assert "notes.txt: not a DICOM file" in caplog.text


def test_non_dicom_files_are_skipped(copy_series):
    folder = copy_series(3)
    (folder / "README.txt").write_text("exported by a viewer")
    assert read_dicom_series(folder)[0].GetSize()[2] == 3


def test_mixed_series_lists_them_without_patient_data(copy_series):
    folder = copy_series(6)
    for path in _files(folder)[::2]:
        _edit(path, SeriesInstanceUID="1.2.3.4.5", PatientName="SECRET^PATIENT")
    error = _raises(folder, "2 series found and no rule selects exactly one")
    assert error.path == str(folder)
    assert "1.2.3.4.5 CT 'CT Body 3.0' (3 slices)" in str(error)
    assert "(no SeriesInstanceUID) CT 'CT Body 3.0' (3 slices)" in str(error)
    assert "SECRET" not in str(error)


def test_missing_slice(copy_series):
    folder = copy_series(6)
    gone = _files(folder)[2]
    gone.unlink()
    error = _raises(folder, r"missing slice: gap of 4 mm between .* \(median slice spacing 2 mm\)")
    assert error.path == str(folder)


def test_inconsistent_spacing(copy_series):
    folder = copy_series(6)
    path = _files(folder)[3]
    position = [float(v) for v in pydicom.dcmread(path).ImagePositionPatient]
    _edit(path, ImagePositionPatient=[position[0], position[1], position[2] + 0.5])
    _raises(folder, f"inconsistent slice spacing: 2.5 mm between .*{re.escape(path.name)}, median 2 mm")


def test_duplicate_slice_position(copy_series):
    folder = copy_series(4)
    first, second = _files(folder)[:2]
    _edit(second, ImagePositionPatient=pydicom.dcmread(first).ImagePositionPatient)
    _raises(folder, "at the same position")


def test_inconsistent_orientation(copy_series):
    folder = copy_series(4)
    path = _files(folder)[1]
    _edit(path, ImageOrientationPatient=[1, 0, 0, 0, 0.8, -0.6])
    error = _raises(folder, "inconsistent orientation")
    assert error.path == str(path)


def test_inconsistent_pixel_size(copy_series):
    folder = copy_series(4)
    path = _files(folder)[2]
    _edit(path, PixelSpacing=[0.8, 0.8])
    error = _raises(folder, "inconsistent pixel size")
    assert error.path == str(path)


def test_slices_not_stacked_along_the_normal(copy_series):
    folder = copy_series(4)
    path = _files(folder)[3]
    position = [float(v) for v in pydicom.dcmread(path).ImagePositionPatient]
    _edit(path, ImagePositionPatient=[position[0], position[1] + 3.0, position[2]])
    _raises(folder, "not stacked along the slice normal")


def test_corrupt_compressed_frame(copy_series):
    folder = copy_series(4)
    path = _files(folder)[1]
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2 & ~1]
    ds.save_as(path)
    error = _raises(folder, r"cannot decode pixel data \(transfer syntax JPEG 2000 Image Compression")
    assert error.path == str(path)


def test_missing_decoder(copy_series, monkeypatch):
    folder = copy_series(2)
    monkeypatch.setattr(get_decoder(JPEG2000Lossless), "_available", {})
    _raises(folder, r"cannot decode pixel data \(transfer syntax JPEG 2000 .*decoder is missing")


def test_wrong_modality(copy_series):
    folder = copy_series(3)
    for path in _files(folder):
        _edit(path, Modality="MR")
    error = _raises(folder, "series modality is MR but the model expects CT", modality="CT")
    assert error.path == str(folder)


def test_no_patient_data_in_logs(copy_series, caplog):
    folder = copy_series(4)
    secrets = {"PatientName": "SECRET^PATIENT", "PatientID": "SECRETID42", "PatientBirthDate": "19010203"}
    for path in _files(folder):
        _edit(path, **secrets)
    (folder / "junk.bin").write_bytes(b"\x00" * 10)
    with caplog.at_level(logging.DEBUG):
        _, datasets = read_dicom_series(folder, modality="CT")
        with pytest.raises(InputError) as info:
            read_dicom_series(folder, modality="MR")
    assert datasets[0].PatientName == "SECRET^PATIENT"  # it was read ...
    assert "selected series" in caplog.text  # ... and logging was on
    for value in ("SECRET", "PATIENT", "SECRETID42", "19010203"):
        assert value not in caplog.text and value not in str(info.value)
