"""The MONAI Deploy app end to end on the real JPEG 2000 CT series, checked against independent readers.

The main run uses a threshold "network" at the source spacing, so the expected mask is known exactly
(HU >= 53.5 on the source grid); a tiny random UNet checks the resampling path (1.5 x 1.5 x 2 mm).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import slicerio

from app.io import read_dicom_seg, read_dicom_series
from app.paths import REPO_ROOT

from .conftest import THRESHOLD_HU

BASE = "CT_Body_3.0"  # safe_filename of the series' SeriesDescription "CT Body 3.0"
EXPECTED = {f"{BASE}_seg.dcm", f"{BASE}.seg.nrrd", f"{BASE}_seg.nii.gz", "stl/1_spleen.stl"}


def _files(folder):
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def _gdcm_image(series_dir) -> sitk.Image:
    """The series read independently of app.io, by SimpleITK's GDCM ImageSeriesReader."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(series_dir)))
    return reader.Execute()


def _assert_same_geometry(image: sitk.Image, reference: sitk.Image) -> None:
    assert image.GetSize() == reference.GetSize()
    np.testing.assert_allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(image.GetSpacing(), reference.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(image.GetDirection(), reference.GetDirection(), atol=1e-4)


@pytest.fixture(scope="module")
def e2e(series_dir, threshold_bundle, tmp_path_factory):
    """``python -m app.deploy`` (Holoscan graph) on the real series with the threshold bundle and --stl."""
    out = tmp_path_factory.mktemp("e2e") / "out"
    cmd = [
        sys.executable,
        "-m",
        "app.deploy",
        "-i",
        str(series_dir),
        "-o",
        str(out),
        "-m",
        str(threshold_bundle),
    ]
    start = time.perf_counter()
    proc = subprocess.run(
        [*cmd, "--stl"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env=os.environ.copy()
    )
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"deploy app end to end (threshold bundle, 20 slices, CPU, with STL): {seconds:.1f} s")
    return out, proc


@pytest.mark.slow
def test_outputs_are_written_and_nothing_else(e2e):
    out, proc = e2e
    assert _files(out) == EXPECTED
    assert [p.name for p in out.parent.iterdir()] == ["out"]  # no staging folder left beside it
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_mask_is_the_thresholded_series_on_the_source_grid(e2e, series_dir):
    out, _ = e2e
    hu = sitk.GetArrayFromImage(_gdcm_image(series_dir))
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{BASE}_seg.nii.gz")))
    assert label.dtype == np.uint8
    np.testing.assert_array_equal(label, (hu >= THRESHOLD_HU).astype(np.uint8))
    assert 0 < label.mean() < 0.5


@pytest.mark.slow
def test_nifti_and_seg_nrrd_geometry_equal_gdcm(e2e, series_dir):
    out, _ = e2e
    gdcm = _gdcm_image(series_dir)
    nifti = sitk.ReadImage(str(out / f"{BASE}_seg.nii.gz"))
    _assert_same_geometry(nifti, gdcm)
    seg_nrrd = sitk.ReadImage(str(out / f"{BASE}.seg.nrrd"))
    _assert_same_geometry(seg_nrrd, gdcm)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(seg_nrrd), sitk.GetArrayFromImage(nifti))


@pytest.mark.slow
def test_seg_nrrd_has_the_bundle_segment(e2e):
    out, _ = e2e
    seg = slicerio.read_segmentation(str(out / f"{BASE}.seg.nrrd"))
    assert [(s["labelValue"], s["name"]) for s in seg["segments"]] == [(1, "spleen")]
    np.testing.assert_allclose(seg["segments"][0]["color"], np.array([157, 108, 162]) / 255, atol=1e-6)


@pytest.mark.slow
def test_dicom_seg_reads_back_on_the_source_grid(e2e, series_dir):
    out, _ = e2e
    image, datasets = read_dicom_series(series_dir)
    masks, names = read_dicom_seg(out / f"{BASE}_seg.dcm", reference=image)
    assert names == {1: "spleen"}
    nifti = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{BASE}_seg.nii.gz")))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(masks[1]), nifti)
    ds = pydicom.dcmread(out / f"{BASE}_seg.dcm", stop_before_pixels=True)
    assert ds.Modality == "SEG" and "not for clinical use" in ds.SeriesDescription
    assert ds.StudyInstanceUID == datasets[0].StudyInstanceUID  # the derived UIDs of the anonymised series
    referenced = {
        item.ReferencedSOPInstanceUID for item in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    }
    assert referenced == {d.SOPInstanceUID for d in datasets}


@pytest.mark.slow
def test_geometry_equals_dcm2niix(e2e, series_dir, tmp_path):
    if shutil.which("dcm2niix") is None:
        if os.environ.get("CI"):
            pytest.fail("dcm2niix is not on PATH in CI (apt-get install dcm2niix)")
        pytest.skip("dcm2niix not on PATH (apt-get install dcm2niix)")
    out, _ = e2e
    proc = subprocess.run(
        ["dcm2niix", "-z", "y", "-b", "n", "-f", "ct", "-o", str(tmp_path), str(series_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Both are RAS NIfTI affines; dcm2niix may store the rows flipped: compare in the closest
    # canonical (RAS+) voxel order, where equal affines and shapes mean the same voxel grid.
    ct = nib.as_closest_canonical(nib.load(tmp_path / "ct.nii.gz"))
    ours = nib.as_closest_canonical(nib.load(out / f"{BASE}_seg.nii.gz"))
    assert ct.shape == ours.shape
    np.testing.assert_allclose(ours.affine, ct.affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(ours.dataobj), (ct.get_fdata() >= THRESHOLD_HU).astype(np.uint8))


@pytest.mark.slow
def test_dicom_seg_passes_dciodvfy(e2e):
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) not on PATH")
    out, _ = e2e
    proc = subprocess.run(
        ["dciodvfy", str(out / f"{BASE}_seg.dcm")], capture_output=True, text=True, timeout=120
    )
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]
    assert not errors, "\n".join(errors)


@pytest.mark.slow
def test_stl_is_a_binary_lps_mesh(e2e):
    stl = e2e[0] / "stl" / "1_spleen.stl"
    data = stl.read_bytes()
    assert data.startswith(b"SPACE=LPS")
    assert len(data) == 84 + 50 * int(np.frombuffer(data[80:84], "<u4")[0])


# ------------------------------------------------------------------------------------ in-process runs
def _main(argv):
    from app.deploy.app import main

    return main([str(a) for a in argv])


def test_tiny_unet_from_holoscan_env_vars_with_the_plain_engine(
    copy_series, unet_bundle, tmp_path, monkeypatch
):
    series = copy_series(6)
    out = tmp_path / "out"
    monkeypatch.setenv("HOLOSCAN_INPUT_PATH", str(series))
    monkeypatch.setenv("HOLOSCAN_OUTPUT_PATH", str(out))
    monkeypatch.setenv("HOLOSCAN_MODEL_PATH", str(unet_bundle.parent))  # a model folder, as in a MAP
    assert _main(["--engine", "plain"]) == 0
    assert _files(out) == EXPECTED - {"stl/1_spleen.stl"}
    image = read_dicom_series(series)[0]
    label = sitk.ReadImage(str(out / f"{BASE}_seg.nii.gz"))
    _assert_same_geometry(label, image)  # resampled to 1.5 x 1.5 x 2 mm and back: the source grid again
    assert set(np.unique(sitk.GetArrayFromImage(label))) <= {0, 1}


def test_series_description_rule_selects_one_of_two_series(copy_series, threshold_bundle, tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.{}"
    edits = {i: {"SeriesInstanceUID": uid.format(1), "SeriesDescription": "arterial"} for i in range(3)}
    edits |= {i: {"SeriesInstanceUID": uid.format(2), "SeriesDescription": "venous"} for i in range(3, 6)}
    series = copy_series(6, edit_files=edits)
    out = tmp_path / "out"
    assert _main(["-i", series, "-o", out, "-m", threshold_bundle]) == 1  # two series, no rule
    assert not out.exists()
    assert _main(["-i", series, "-o", out, "-m", threshold_bundle, "--series-description", "^ven"]) == 0
    assert {p.name for p in out.iterdir()} == {"venous_seg.dcm", "venous.seg.nrrd", "venous_seg.nii.gz"}
    assert sitk.ReadImage(str(out / "venous_seg.nii.gz")).GetSize() == (512, 512, 3)


def _empty(copy, tmp):
    (folder := tmp / "empty").mkdir()
    return folder


def _text_only(copy, tmp):
    (folder := tmp / "text").mkdir()
    (folder / "notes.txt").write_text("not DICOM")
    return folder


def _mixed(copy, tmp):
    return copy(
        4, edit_files={i: {"SeriesInstanceUID": f"1.2.826.0.1.3680043.8.498.{i % 2}"} for i in range(4)}
    )


def _mr(copy, tmp):
    return copy(4, edit={"Modality": "MR"})


def _missing_slice(copy, tmp):
    folder = copy(5)
    sorted(folder.iterdir())[2].unlink()
    return folder


def _unreadable_frame(copy, tmp):
    from pydicom.encaps import encapsulate

    folder = copy(4)
    path = sorted(folder.iterdir())[1]
    ds = pydicom.dcmread(path)
    ds.PixelData = encapsulate([b"\x00" * 64])
    ds.save_as(path)
    return folder


BAD_INPUTS = {
    "empty folder": (_empty, "no files found"),
    "text file only": (_text_only, "no DICOM files found"),
    "mixed series": (_mixed, "2 series found and no rule selects exactly one"),
    "non-CT modality": (_mr, "series modality is MR but the model expects CT"),
    "missing slice": (_missing_slice, "missing slice"),
    "unreadable frame": (_unreadable_frame, "cannot decode pixel data"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_fails_with_one_error_line_and_writes_nothing(
    case, copy_series, threshold_bundle, tmp_path, caplog
):
    make, message = BAD_INPUTS[case]

    def copy(n, **kw):  # every copy carries a patient name that must never reach the logs
        return copy_series(n, edit={"PatientName": "SECRET^NAME", **kw.pop("edit", {})}, **kw)

    folder = make(copy, tmp_path)
    out = tmp_path / "results" / "out"
    with caplog.at_level(logging.INFO):
        assert _main(["-i", folder, "-o", out, "-m", threshold_bundle]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and message in errors[0], errors
    assert not out.parent.exists()  # neither the output folder nor a staging folder was created
    assert "SECRET" not in caplog.text


def test_no_patient_name_in_logs_of_a_successful_run(copy_series, threshold_bundle, tmp_path, caplog, capfd):
    identity = {"PatientName": "SECRET^NAME", "PatientID": "SECRETID", "PatientBirthDate": "19010203"}
    series = copy_series(3, edit=identity)
    with caplog.at_level(logging.DEBUG):
        assert _main(["-i", series, "-o", tmp_path / "out", "-m", threshold_bundle, "--stl"]) == 0
    captured = capfd.readouterr()
    for text in [caplog.text + captured.out + captured.err, *(p.name for p in (tmp_path / "out").rglob("*"))]:
        assert "SECRET" not in text and "19010203" not in text
    seg = pydicom.dcmread(tmp_path / "out" / f"{BASE}_seg.dcm", stop_before_pixels=True)
    assert str(seg.PatientName) == "SECRET^NAME"  # the SEG itself keeps the patient's identity


def test_a_series_description_cannot_write_outside_the_output_folder(copy_series, threshold_bundle, tmp_path):
    series = copy_series(3, edit={"SeriesDescription": "../../escaped/x"})
    out = tmp_path / "results" / "out"
    assert _main(["-i", series, "-o", out, "-m", threshold_bundle]) == 0
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written and all(p.startswith("results/out/") or p.startswith("series/") for p in written), written
    assert not (tmp_path / "escaped").exists()


def test_failure_while_writing_leaves_the_output_folder_untouched(
    copy_series, threshold_bundle, tmp_path, monkeypatch
):
    import app.deploy.pipeline as pipeline

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pipeline, "write_label_nifti", broken)
    series = copy_series(3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier result")
    assert _main(["-i", series, "-o", out, "-m", threshold_bundle]) == 1
    assert _files(out) == {"keep.txt"}  # the SEG and .seg.nrrd already written were not moved in
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "series"]


def test_cli_error_is_one_line_on_stderr(tmp_path, threshold_bundle):
    (tmp_path / "empty").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "app.deploy", "-i", str(tmp_path / "empty"), "-o", str(tmp_path / "out")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HOLOSCAN_MODEL_PATH": str(threshold_bundle)},
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line or "error" in line.lower()]
    assert errors == [f"ERROR {tmp_path / 'empty'}: no files found (expected DICOM files of one series)"], (
        lines
    )
    assert "Traceback" not in proc.stderr and "stack size" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_missing_paths_are_a_usage_error(monkeypatch, capsys):
    for env in ("HOLOSCAN_INPUT_PATH", "HOLOSCAN_OUTPUT_PATH", "HOLOSCAN_MODEL_PATH"):
        monkeypatch.delenv(env, raising=False)
    with pytest.raises(SystemExit) as info:
        _main(["-o", "x", "-m", "y"])
    assert info.value.code == 2
    assert "give -i or set HOLOSCAN_INPUT_PATH" in capsys.readouterr().err
