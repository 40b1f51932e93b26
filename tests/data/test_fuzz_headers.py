"""Hypothesis fuzzing of the NIfTI header checks: any header, however broken, gives a list of problems
naming the file (never another exception, never a huge allocation)."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.data.checks import MAX_VOXELS, CheckOptions, check_entry
from app.errors import InputError

DATATYPES = [2, 4, 8, 16, 64, 256, 512, 768, 0, 1, 32, 2304, 9999]  # valid codes, unsupported, invalid
SPACINGS = st.one_of(
    st.floats(min_value=-10, max_value=10, allow_nan=False),
    st.sampled_from([0.0, -1.0, float("nan"), float("inf"), 1e-30, 1e30]),
)


@st.composite
def nifti_files(draw):
    nifti2 = draw(st.booleans())
    header = nib.Nifti2Header() if nifti2 else nib.Nifti1Header()
    ndim = draw(st.integers(0, 8))
    top = 2**40 if nifti2 else 32767
    sizes = draw(st.lists(st.one_of(st.integers(0, 40), st.integers(-5, top)), min_size=7, max_size=7))
    header["dim"] = [ndim, *sizes]
    header["pixdim"] = [
        draw(st.sampled_from([1.0, -1.0, 0.0])),
        *draw(st.lists(SPACINGS, min_size=7, max_size=7)),
    ]
    header["datatype"] = draw(st.sampled_from(DATATYPES))
    header["bitpix"] = draw(st.sampled_from([8, 16, 32, 64, 0]))
    header["vox_offset"] = draw(st.sampled_from([header.single_vox_offset, 0, 10**6]))
    payload = draw(st.binary(min_size=0, max_size=2048))
    raw = header.binaryblock + b"\0" * 4 + payload
    cut = draw(st.one_of(st.none(), st.integers(0, len(raw))))  # a truncated file now and then
    return (raw if cut is None else raw[:cut]), draw(st.booleans())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=nifti_files())
def test_any_header_gives_problems_not_exceptions(case, tmp_path):
    raw, compressed = case
    path = tmp_path / ("fuzz.nii.gz" if compressed else "fuzz.nii")
    path.write_bytes(gzip.compress(raw) if compressed else raw)
    problems = check_entry({"image": str(path)}, CheckOptions(spatial_dims=3))
    assert all(isinstance(p, InputError) and p.path == str(path) for p in problems)
    if not problems:  # accepted: then it is a sane 3D image
        image = nib.load(str(path))
        assert len(image.shape) == 3 and 0 < np.prod(image.shape) <= MAX_VOXELS
        assert all(z > 0 for z in image.header.get_zooms()[:3])
