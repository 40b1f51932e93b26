"""MONAI Deploy (Holoscan) operators of the CT segmentation application.

Graph (see :class:`app.deploy.app.UNetSegApp`)::

    DICOMSeriesLoaderOperator --image----> BundleSegmentationOperator --label--> SegmentationWriterOperator
                              --datasets-----------------------------------------^

Why not the SDK's own operators: ``DICOMDataLoaderOperator`` drops every instance of a series whose
datasets have empty Study/Series/SOP Instance UIDs (anonymised data such as the project's real test
series: "Error parsing SOP Instance", then "No study loaded"), and does not check for missing or
duplicate slices; ``MonaiBundleInferenceOperator`` needs a self-contained ``inference.json`` inside the
TorchScript file, while ours is a delta over ``train.json``. So the loader wraps
:func:`app.io.read_dicom_series` (series selection by modality / description regex / most slices,
JPEG 2000, checks) and the inference wraps :func:`app.deploy.pipeline.segment` (MONAI transforms,
Gaussian sliding window, ``Invertd``). Each operator is a thin shell over a function of
:mod:`app.deploy.pipeline`, which the Holoscan-free path runs too.
"""

from __future__ import annotations

import logging
from pathlib import Path

from monai.deploy.core import Fragment, Operator, OperatorSpec

from app.deploy.pipeline import BundleModel, load_series, segment, write_outputs
from app.io import SeriesRules

__all__ = ["DICOMSeriesLoaderOperator", "BundleSegmentationOperator", "SegmentationWriterOperator"]

logger = logging.getLogger(__name__)


class DICOMSeriesLoaderOperator(Operator):
    """Reads and selects one DICOM series of a folder into a volume.

    Outputs:
        image: ``SimpleITK.Image`` in modality units (HU for CT), LPS geometry.
        datasets: the slice headers (``pydicom.Dataset``, no pixel data) in the image's slice order,
            missing UIDs filled in; the DICOM SEG references them.
    """

    def __init__(
        self,
        fragment: Fragment,
        *args,
        input_folder: Path,
        modality: str,
        rules: SeriesRules | None = None,
        **kwargs,
    ) -> None:
        self.input_folder = Path(input_folder)
        self.modality = modality
        self.rules = rules or SeriesRules()
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.output("image")
        spec.output("datasets")

    def compute(self, op_input, op_output, context) -> None:
        image, datasets = load_series(self.input_folder, self.modality, self.rules)
        op_output.emit(image, "image")
        op_output.emit(datasets, "datasets")


class BundleSegmentationOperator(Operator):
    """Segments a volume with the TorchScript bundle and returns the label map on the source grid.

    Inputs:
        image: ``SimpleITK.Image`` (modality units).
    Outputs:
        label: ``SimpleITK.Image`` label map with exactly the input's geometry.
    """

    def __init__(
        self, fragment: Fragment, *args, model: BundleModel, sw_batch_size: int = 4, **kwargs
    ) -> None:
        self.model = model
        self.sw_batch_size = sw_batch_size
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("image")
        spec.output("label")

    def compute(self, op_input, op_output, context) -> None:
        image = op_input.receive("image")
        op_output.emit(segment(image, self.model, self.sw_batch_size), "label")


class SegmentationWriterOperator(Operator):
    """Writes the DICOM SEG, ``.seg.nrrd``, NIfTI label map and optional STL surfaces.

    Inputs:
        label: ``SimpleITK.Image`` label map on the source series grid.
        datasets: the source slice headers, in the label's slice order.
    """

    def __init__(
        self, fragment: Fragment, *args, model: BundleModel, output_folder: Path, stl: bool = False, **kwargs
    ) -> None:
        self.model = model
        self.output_folder = Path(output_folder)
        self.stl = stl
        self.written: list[Path] = []
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("label")
        spec.input("datasets")

    def compute(self, op_input, op_output, context) -> None:
        label = op_input.receive("label")
        datasets = op_input.receive("datasets")
        self.written = write_outputs(label, datasets, self.model, self.output_folder, stl=self.stl)
