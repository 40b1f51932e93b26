"""MONAI Deploy application: segment a DICOM CT series with the exported TorchScript bundle.

``python -m app.deploy -i DICOM_DIR -o OUT_DIR -m MODEL.ts [--stl]`` (see :mod:`app.deploy.app`).
The steps are plain functions in :mod:`app.deploy.pipeline`; :mod:`app.deploy.operators` wraps them as
MONAI Deploy (Holoscan) operators; :mod:`app.deploy.staging` makes the output folder all-or-nothing.
Packaging as a MAP: ``app.yaml`` and ``requirements.txt`` here, and ``docs/deploy.md``.
"""
