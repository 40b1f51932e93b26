"""The MONAI Deploy application: DICOM CT series in, DICOM SEG (+ .seg.nrrd, NIfTI, STL) out.

Run::

    python -m app.deploy -i DICOM_DIR -o OUT_DIR -m MODEL.ts [--stl] [--series-description REGEX]

Flags left out fall back to the Holoscan / MAP environment variables ``HOLOSCAN_INPUT_PATH``,
``HOLOSCAN_OUTPUT_PATH`` and ``HOLOSCAN_MODEL_PATH`` (a MAP sets them). Exit codes: 0 success,
1 bad input or failed run (one ``ERROR ...`` line naming the file and the problem; nothing is written
to the output folder), 2 wrong usage.

``--engine holoscan`` (default) runs the operator graph of :class:`UNetSegApp` on the Holoscan
executor; ``--engine plain`` runs the same functions (:func:`app.deploy.pipeline.run_pipeline`)
without it, e.g. where Holoscan is not installed.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from app.deploy.pipeline import BundleModel, DeployOptions, load_bundle, run_pipeline
from app.errors import InputError
from app.io import SeriesRules

__all__ = ["UNetSegApp", "build_parser", "options_from_args", "main"]

logger = logging.getLogger("app.deploy")

ENV_INPUT, ENV_OUTPUT, ENV_MODEL = "HOLOSCAN_INPUT_PATH", "HOLOSCAN_OUTPUT_PATH", "HOLOSCAN_MODEL_PATH"


STACK_SIZE = 32 * 1024 * 1024  # what Holoscan recommends (it warns on import below it)


def _raise_stack_limit() -> None:
    """Raise the soft stack-size limit to 32 MiB where the hard limit allows (threads started later,
    e.g. Holoscan's scheduler threads, get the larger stacks)."""
    with contextlib.suppress(ImportError, OSError, ValueError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
        if soft != resource.RLIM_INFINITY and soft < STACK_SIZE:
            target = STACK_SIZE if hard == resource.RLIM_INFINITY else min(STACK_SIZE, hard)
            resource.setrlimit(resource.RLIMIT_STACK, (target, hard))


def _holoscan_application():
    """The SDK's ``Application`` base class (Holoscan), or ``None`` where it cannot be imported."""
    _raise_stack_limit()
    try:
        from monai.deploy.core import Application
    except Exception as exc:  # ImportError, or a Holoscan binary that does not load on this machine
        logger.debug("MONAI Deploy / Holoscan unavailable: %s", exc)
        return None
    return Application


_Application = _holoscan_application() or object


class UNetSegApp(_Application):  # type: ignore[misc, valid-type]
    """MONAI Deploy application: series loader -> bundle segmentation -> SEG/NRRD/NIfTI writer.

    Args:
        options: what to run on; ``None`` reads the paths from the ``HOLOSCAN_*`` variables.
        model: an already loaded bundle (else loaded from ``options.model_path`` in :meth:`compose`).

    Attributes ``deploy_options`` and ``bundle_model`` hold them (Holoscan's ``Application`` already
    has an ``options`` property). After :meth:`run`, :attr:`written` lists the files written.
    """

    def __init__(self, options: DeployOptions | None = None, model: BundleModel | None = None, **kwargs):
        if _Application is object:
            raise RuntimeError("monai-deploy-app-sdk (Holoscan) is not available: use --engine plain")
        self.deploy_options = options or options_from_env(os.environ)
        self.bundle_model = model
        self._writer = None
        super().__init__([sys.argv[0]], **kwargs)  # our flags are parsed by build_parser, not Holoscan

    @property
    def written(self) -> list[Path]:
        return list(self._writer.written) if self._writer is not None else []

    def compose(self) -> None:
        from monai.deploy.conditions import CountCondition

        from app.deploy.operators import (
            BundleSegmentationOperator,
            DICOMSeriesLoaderOperator,
            SegmentationWriterOperator,
        )

        opts = self.deploy_options
        if self.bundle_model is None:
            self.bundle_model = load_bundle(opts.model_path, opts.device, opts.roi_size)
        loader = DICOMSeriesLoaderOperator(
            self,
            CountCondition(self, 1),
            input_folder=opts.input_dir,
            modality=self.bundle_model.modality,
            rules=opts.rules,
            name="series_loader",
        )
        inference = BundleSegmentationOperator(
            self, model=self.bundle_model, sw_batch_size=opts.sw_batch_size, name="bundle_segmentation"
        )
        writer = SegmentationWriterOperator(
            self,
            model=self.bundle_model,
            output_folder=opts.output_dir,
            stl=opts.stl,
            name="segmentation_writer",
        )
        self.add_flow(loader, inference, {("image", "image")})
        self.add_flow(loader, writer, {("datasets", "datasets")})
        self.add_flow(inference, writer, {("label", "label")})
        self._writer = writer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app.deploy",
        description="Segment a DICOM CT series with an exported TorchScript bundle (research use only, "
        "not for clinical use); writes a DICOM SEG, a 3D Slicer .seg.nrrd and a NIfTI label map.",
    )
    parser.add_argument("-i", "--input", help=f"folder of DICOM files (default: ${ENV_INPUT})")
    parser.add_argument("-o", "--output", help=f"output folder (default: ${ENV_OUTPUT})")
    parser.add_argument("-m", "--model", help=f"TorchScript bundle file or folder (default: ${ENV_MODEL})")
    parser.add_argument("--series-description", metavar="REGEX", help="choose the series by description")
    parser.add_argument(
        "--most-slices", action="store_true", help="if several series are left, take the longest"
    )
    parser.add_argument("--stl", action="store_true", help="also write one STL surface per segment")
    parser.add_argument("--roi-size", type=int, nargs=3, metavar=("X", "Y", "Z"), help="sliding-window patch")
    parser.add_argument("--sw-batch-size", type=int, default=4, help="windows per network call (default 4)")
    parser.add_argument("--device", help="torch device, e.g. cpu or cuda (default: cuda when available)")
    parser.add_argument(
        "--engine",
        choices=["holoscan", "plain"],
        default="holoscan",
        help="run the MONAI Deploy operator graph (default) or the same steps without Holoscan",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (also Holoscan's)")
    return parser


def options_from_args(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> DeployOptions:
    """Options from the parsed flags, with the ``HOLOSCAN_*`` variables for paths left out.

    Raises:
        ValueError: a path given neither as a flag nor in the environment, or a bad regex.
    """
    paths = {}
    for name, flag, env in (
        ("input", "-i", ENV_INPUT),
        ("output", "-o", ENV_OUTPUT),
        ("model", "-m", ENV_MODEL),
    ):
        value = getattr(args, name, None) or environ.get(env)
        if not value:
            raise ValueError(f"no {name} path: give {flag} or set {env}")
        paths[name] = Path(value)
    if args.series_description is not None:
        try:
            re.compile(args.series_description)
        except re.error as exc:
            raise ValueError(f"--series-description {args.series_description!r}: bad regex ({exc})") from exc
    return DeployOptions(
        input_dir=paths["input"],
        output_dir=paths["output"],
        model_path=paths["model"],
        rules=SeriesRules(description=args.series_description, most_slices=args.most_slices),
        stl=args.stl,
        roi_size=tuple(args.roi_size) if args.roi_size else None,
        sw_batch_size=args.sw_batch_size,
        device=args.device,
    )


def options_from_env(environ: Mapping[str, str] = os.environ) -> DeployOptions:
    """Options from the ``HOLOSCAN_*`` variables only (what a MAP provides)."""
    return options_from_args(build_parser().parse_args([]), environ)


def _quiet_holoscan(verbose: bool) -> None:
    """Holoscan logs every operator exception with its traceback and, on CPU-only machines, CUDA
    warnings: keep its log off (our own log says what failed) unless asked or set by the user."""
    if "HOLOSCAN_LOG_LEVEL" in os.environ:
        return
    from holoscan.logger import LogLevel, set_log_level

    set_log_level(LogLevel.DEBUG if verbose else LogLevel.OFF)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the application; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        options = options_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    start = time.perf_counter()
    with _quiet_libraries(args.verbose):
        return _run(args, options, start)


@contextlib.contextmanager
def _quiet_libraries(verbose: bool):
    """Keep library logs that would repeat our one error line out of the output (unless verbose):
    pydicom logs every failed decoder plugin with a traceback, highdicom every module it copies."""
    levels = {"pydicom": logging.CRITICAL, "highdicom": logging.WARNING}
    previous = {name: logging.getLogger(name).level for name in levels}
    if not verbose:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, level in previous.items():
            logging.getLogger(name).setLevel(level)


def _run(args: argparse.Namespace, options: DeployOptions, start: float) -> int:
    try:
        model = load_bundle(options.model_path, options.device, options.roi_size)
        if args.engine == "plain" or _Application is object:
            if args.engine != "plain":
                logger.warning("MONAI Deploy / Holoscan unavailable: running the plain pipeline")
            written = run_pipeline(options, model)
        else:
            _quiet_holoscan(args.verbose)
            application = UNetSegApp(options, model)
            application.run()
            written = application.written
    except InputError as exc:
        logger.error("%s", exc)
        return 1
    except Exception as exc:  # one line, not a traceback (the traceback under --verbose)
        logger.debug("failure", exc_info=True)
        logger.error("%s: %s", type(exc).__name__, " ".join(str(exc).split()))
        return 1
    logger.info(
        "%d file(s) written to %s in %.1f s", len(written), options.output_dir, time.perf_counter() - start
    )
    return 0
