"""fastmotive: motivation-aware training (Acheli & Gaaloul, "Motivation is Something You Need", arXiv 2602.21064)
on one flat arena, with a compiled weights map and a fused single-launch switch."""
from . import bn_calibration, checkpoint, families, optim
from .bn_calibration import Calibration, calibrate_bn
from .conditions import (Always, EmaStreak, GradNormRise, LossStreak, Never, RandomActivation, RandomMatched, Signal,
                         ValLossStreak, parse_condition)
from .evaluation import evaluate, evaluate_pair
from .errors import (ArchSpecError, ArenaError, CheckpointError, ConfigError, DataError, ExperimentError,
                     FastmotiveError, TrainingDivergedError, WeightsMapError)
from .families import list_families, parse_arch
from .optim import OPTIMIZERS, create_optimizer
from .pair import MotivatedPair
from .schedules import make_schedule
from .settings import TrainConfig
from .train_step import StepResult
from .trainer import History, Trainer
from .weights_map import MapEntry, WeightsMap

__all__ = [
    # the pair, its map and training
    "MotivatedPair", "WeightsMap", "MapEntry", "Trainer", "TrainConfig", "History", "StepResult", "list_families",
    "parse_arch",
    # BatchNorm calibration and evaluation
    "Calibration", "calibrate_bn", "evaluate", "evaluate_pair",
    # conditions
    "Always", "EmaStreak", "GradNormRise", "LossStreak", "Never", "RandomActivation", "RandomMatched", "Signal",
    "ValLossStreak", "parse_condition",
    # optimizers and schedules
    "OPTIMIZERS", "create_optimizer", "make_schedule",
    # errors
    "ArchSpecError", "ArenaError", "CheckpointError", "ConfigError", "DataError", "ExperimentError", "FastmotiveError",
    "TrainingDivergedError", "WeightsMapError",
    # submodules
    "bn_calibration", "checkpoint", "families", "optim",
]
__version__ = "0.1.0"
