"""DICOM and 3D Slicer input/output: series reading, DICOM SEG, .seg.nrrd, NIfTI, STL, safe names."""

from app.io.atomic import atomic_output
from app.io.dicom_seg import read_dicom_seg, write_dicom_seg
from app.io.dicom_series import SeriesRules, read_dicom_series, select_series
from app.io.mesh import write_stl
from app.io.names import safe_filename
from app.io.segments import SegmentInfo, segments_from_metadata
from app.io.slicer import write_label_nifti, write_seg_nrrd

__all__ = [
    "atomic_output",
    "read_dicom_seg",
    "write_dicom_seg",
    "SeriesRules",
    "read_dicom_series",
    "select_series",
    "write_stl",
    "safe_filename",
    "SegmentInfo",
    "segments_from_metadata",
    "write_label_nifti",
    "write_seg_nrrd",
]
