"""Run folders: seeding, the device choice, and a record of how the run was started."""

from __future__ import annotations

import ast
import importlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from monai.bundle import ConfigParser
from monai.utils import set_determinism

from app.engine.distributed import rank
from app.flags import as_bool

__all__ = [
    "bundle_cli_options",
    "start_run",
    "default_device",
    "merged_bundle_config",
    "place_network",
    "to_channels_last",
    "check_compile",
    "cpp_compiler",
]

logger = logging.getLogger(__name__)


def default_device() -> torch.device:
    """CUDA when present, else CPU (every bundle runs on CPU; AMP and GPU caching only on CUDA)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def place_network(
    network: torch.nn.Module, device: torch.device | str, channels_last: bool = False
) -> torch.nn.Module:
    """``network`` moved to ``device``, in place, and returned.

    Args:
        network: any module.
        device: where it trains or predicts.
        channels_last: (a bool, or a word :func:`app.flags.as_bool` reads) also store its weights in the
            channels-last memory format (``channels_last_3d`` for a network with 3-D convolutions,
            ``channels_last`` for 2-D), which oneDNN convolves on the CPU without reordering layouts
            around each convolution; the outputs are the same to float rounding, and checkpoints load into
            either format.
    """
    network = network.to(device)
    return to_channels_last(network) if as_bool(channels_last, "channels_last") else network


def to_channels_last(network: torch.nn.Module) -> torch.nn.Module:
    """``network`` with its weights in the channels-last memory format, in place, and returned:
    ``channels_last_3d`` when it has 3-D convolution weights, ``channels_last`` otherwise."""
    dims = {w.ndim for w in network.parameters()}
    return network.to(memory_format=torch.channels_last_3d if 5 in dims else torch.channels_last)


def cpp_compiler() -> str | None:
    """Path of the C++ compiler TorchInductor can use on the CPU (``$CXX``, g++, clang++, c++), or None."""
    for name in (os.environ.get("CXX", ""), "g++", "clang++", "c++"):
        if name and (path := shutil.which(name)):
            return path
    return None


def check_compile(enabled: bool, device: torch.device | str) -> bool:
    """``enabled``, after checking that ``torch.compile`` can build kernels for ``device``.

    A bundle's ``compile`` choice goes to ``SupervisedTrainer(compile=...)``, which compiles the training
    network (the evaluator and the checkpoints keep the eager module, whose weights it shares). On the CPU
    TorchInductor writes C++ kernels and needs a compiler; without one the first iteration would fail deep
    inside ``torch._inductor``, so this says so before training starts.

    Raises:
        RuntimeError: ``enabled`` on a CPU device and no C++ compiler (``$CXX``, ``g++``, ``clang++``,
            ``c++``) on ``PATH``.
    """
    enabled = as_bool(enabled, "compile")
    if not enabled or torch.device(device).type != "cpu":
        return enabled
    if cpp_compiler() is None:
        raise RuntimeError(
            "compile is true but no C++ compiler (g++, clang++ or $CXX) is on PATH: torch.compile needs one "
            "to build CPU kernels. Install one (e.g. apt install g++) or run with --compile false."
        )
    try:  # what TorchInductor imports to build CPU kernels, now rather than at the first iteration
        importlib.import_module("torch.utils.cpp_extension")
    except Exception as error:
        raise RuntimeError(
            f"compile is true but torch's C++ extension tools do not load ({type(error).__name__}: {error}); "
            "run with --compile false."
        ) from error
    return True


def bundle_cli_options(argv: Sequence[str]) -> dict[str, str]:
    """The options of a ``monai.bundle`` command line: ``{key: value}`` of ``--key value``, ``--key=value``.

    Keys lose their dashes; a bare ``--flag`` maps to ``""``; positional words (``run training``) are skipped.
    Example: ``bundle_cli_options(["run", "training", "--epochs", "3", "--tta=true"]) == {"epochs": "3",
    "tta": "true"}``.
    """
    options: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg, i = argv[i], i + 1
        if not arg.startswith("--"):
            continue
        key, eq, value = arg[2:].partition("=")
        if not eq and i < len(argv) and not argv[i].startswith("--"):
            value, i = argv[i], i + 1
        options[key] = value
    return options


def merged_bundle_config(argv: list[str] | None = None) -> dict | None:
    """The merged config (config files + command-line overrides) of a ``monai.bundle`` command line.

    Returns None when ``argv`` is not a ``monai.bundle`` command (e.g. the bundle runs from Python).
    """
    args = bundle_cli_options(sys.argv if argv is None else argv)
    if "config_file" not in args:
        return None
    parser = ConfigParser()
    config_file = args.pop("config_file")
    try:
        parser.read_config(ast.literal_eval(config_file) if config_file.startswith("[") else config_file)
    except (OSError, ValueError, SyntaxError) as e:
        logger.warning("could not re-read %s for the run record (%s)", config_file, e)
        return None
    for key in ("meta_file", "logging_file", "args_file", "init_id", "final_id", "tracking"):
        args.pop(key, None)
    for key, value in args.items():
        try:
            parser[key] = json.loads(value)
        except json.JSONDecodeError:
            parser[key] = value
    return parser.get()


def start_run(run_dir: str | Path, seed: int | None = 0, deterministic: bool = True) -> Path:
    """Create the run folder, seed every RNG, and save ``command.json`` + the merged ``config.json``.

    Args:
        run_dir: the run folder (created).
        seed: seed for torch, numpy, python and MONAI transforms; None leaves them unseeded.
        deterministic: ask cuDNN for deterministic kernels (on CUDA ``cudnn.benchmark`` is used otherwise).

    Returns:
        the run folder.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if seed is not None:
        set_determinism(seed=seed, use_deterministic_algorithms=None)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = not deterministic
    if rank() > 0:  # under torchrun rank 0 alone records the run
        return run_dir
    record = {"argv": sys.argv, "cwd": os.getcwd(), "seed": seed, "torch": torch.__version__}
    (run_dir / "command.json").write_text(json.dumps(record, indent=2))
    config = merged_bundle_config()
    if config is not None:
        (run_dir / "config.json").write_text(json.dumps(config, indent=2))
    logger.info("run folder %s (seed %s, device %s)", run_dir.resolve(), seed, default_device())
    return run_dir
