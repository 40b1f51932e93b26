"""The training engine every bundle shares: run folders, handlers, resumable checkpoints."""

from app.engine.batch import PrepareBatchWithWeight
from app.engine.checkpoint import ResumableCheckpoint, atomic_torch_save, safe_load
from app.engine.distributed import (
    finalize_distributed,
    init_distributed,
    local_device,
    other_ranks_wait,
    release_other_ranks,
)
from app.engine.handlers import EpochProgress, train_handlers, val_handlers
from app.engine.history import TrainingHistory, read_history
from app.engine.optim import make_optimizer
from app.engine.overlays import BestWorstCases
from app.engine.precision import AutocastNetwork, native_16bit, with_precision
from app.engine.report import write_summary_json
from app.engine.run import (
    check_compile,
    cpp_compiler,
    default_device,
    place_network,
    start_run,
    to_channels_last,
)
from app.engine.run_report import write_run_report
from app.engine.trained import recorded_network, trained_network
from app.engine.weights import WeightsLoader, check_weights_fit
from app.errors import install_excepthook

install_excepthook()

__all__ = [
    "WeightsLoader",
    "recorded_network",
    "trained_network",
    "check_weights_fit",
    "write_summary_json",
    "make_optimizer",
    "PrepareBatchWithWeight",
    "ResumableCheckpoint",
    "atomic_torch_save",
    "safe_load",
    "EpochProgress",
    "TrainingHistory",
    "read_history",
    "BestWorstCases",
    "AutocastNetwork",
    "native_16bit",
    "with_precision",
    "write_run_report",
    "train_handlers",
    "val_handlers",
    "default_device",
    "check_compile",
    "cpp_compiler",
    "place_network",
    "to_channels_last",
    "start_run",
    "init_distributed",
    "local_device",
    "other_ranks_wait",
    "release_other_ranks",
    "finalize_distributed",
]
