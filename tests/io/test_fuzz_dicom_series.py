"""Hypothesis fuzzing of DICOM series assembly: whatever mix of slices a folder holds, the reader
returns one consistent volume or raises an InputError naming the folder or one of its files."""

from __future__ import annotations

import numpy as np
import pydicom
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from app.errors import InputError
from app.io.dicom_series import read_dicom_series

N_SLICES, ROWS, COLS = 6, 8, 10
SERIES_UID = generate_uid(entropy_srcs=["fuzz series"])
STUDY_UID = generate_uid(entropy_srcs=["fuzz study"])


def ct_slice(
    i: int, z: float, *, series: str = SERIES_UID, iop=(1, 0, 0, 0, 1, 0), rows: int = ROWS
) -> pydicom.Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[series, str(i), str(z)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = STUDY_UID, series, "CT"
    ds.PatientName, ds.PatientID = "FUZZ^PATIENT", "FUZZ-ID"
    ds.InstanceNumber = i + 1
    ds.ImageOrientationPatient = list(iop)
    ds.ImagePositionPatient = [-50.0, -40.0, float(z)]
    ds.PixelSpacing = [0.8, 0.7]
    ds.SliceThickness = 2.5
    ds.Rows, ds.Columns = rows, COLS
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.PixelData = (np.arange(rows * COLS, dtype=np.int16) + i).tobytes()
    return ds


MUTATIONS = st.sampled_from(
    [
        "drop",
        "duplicate position",
        "jitter position",
        "tilt orientation",
        "other size",
        "junk file",
        "second series",
        "truncate file",
        "no position",
    ]
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mutations=st.lists(st.tuples(MUTATIONS, st.integers(0, N_SLICES - 1), st.floats(-3, 3)), max_size=3),
    order=st.permutations(list(range(N_SLICES))),
)
def test_any_folder_gives_one_volume_or_an_input_error(mutations, order, tmp_path_factory):
    folder = tmp_path_factory.mktemp("series")
    slices = {i: ct_slice(i, 2.5 * i) for i in range(N_SLICES)}
    extra_files: dict[str, bytes] = {}
    truncated: set[int] = set()
    for kind, i, amount in mutations:
        if i not in slices:
            continue
        if kind == "drop":
            del slices[i]
        elif kind == "duplicate position":
            neighbour = slices.get((i + 1) % N_SLICES)
            position = getattr(neighbour, "ImagePositionPatient", None)  # gone when dropped or removed
            slices[i].ImagePositionPatient = list(position) if position is not None else [-50.0, -40.0, 0.0]
        elif kind == "jitter position":
            slices[i].ImagePositionPatient = [-50.0, -40.0, 2.5 * i + amount]
        elif kind == "tilt orientation":
            c, s = np.cos(amount / 10), np.sin(amount / 10)
            slices[i].ImageOrientationPatient = [c, s, 0.0, -s, c, 0.0]
        elif kind == "other size":
            slices[i] = ct_slice(i, 2.5 * i, rows=ROWS + 2)
        elif kind == "junk file":
            extra_files[f"junk_{i}.txt"] = b"not a dicom file " * (i + 1)
        elif kind == "second series":
            slices[i] = ct_slice(i, 2.5 * i, series=generate_uid(entropy_srcs=["other series"]))
        elif kind == "truncate file":
            truncated.add(i)
        elif kind == "no position" and "ImagePositionPatient" in slices[i]:  # the same slice may come twice
            del slices[i].ImagePositionPatient
    for rank, i in enumerate(order):
        if i in slices:
            path = folder / f"IM{rank:04d}.dcm"
            slices[i].save_as(path, enforce_file_format=True)
            if i in truncated:
                path.write_bytes(path.read_bytes()[:300])
    for name, data in extra_files.items():
        (folder / name).write_bytes(data)
    try:
        image, datasets = read_dicom_series(folder, modality="CT")
    except InputError as e:
        assert str(folder) in e.path, e  # the folder or one of its files
        assert "FUZZ" not in str(e)  # no patient data in the message
        return
    size = image.GetSize()
    assert size == (COLS, ROWS, len(datasets)) and len(datasets) >= 1
    assert all(s > 0 for s in image.GetSpacing())
    z = [float(ds.ImagePositionPatient[2]) for ds in datasets]
    assert z == sorted(z)  # slices stacked in position order
