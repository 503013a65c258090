"""Training runs (one task, one optimizer, resumable run files) on top of the optimizer."""

from qnewton.training.config import TrainConfig
from qnewton.training.loop import build_optimizer, train
from qnewton.training.optimizers import OPTIMIZERS, OptimizerSpec
from qnewton.training.run_dir import (
    RUN_FILES,
    RunDirError,
    RunState,
    TrainingError,
    check_run_dir,
    create_run_dir,
)

__all__ = [
    "OPTIMIZERS", "RUN_FILES", "OptimizerSpec", "RunDirError", "RunState", "TrainConfig",
    "TrainingError", "build_optimizer", "check_run_dir", "create_run_dir", "train",
]
