"""fastmotive: motivation-aware training (Acheli & Gaaloul, "Motivation is Something You Need", arXiv 2602.21064)
on one flat arena, with a compiled weights map and a fused single-launch switch."""
from fastmotive import families, optim
from fastmotive.conditions import (Always, EmaStreak, GradNormRise, LossStreak, Never, RandomActivation,
                                   RandomMatched, Signal, ValLossStreak, parse_condition)
from fastmotive.config.settings import TrainConfig
from fastmotive.core.pair import MotivatedPair
from fastmotive.core.weights_map import MapEntry, WeightsMap
from fastmotive.errors import (ArchSpecError, ArenaError, CheckpointError, ConfigError, DataError,
                               ExperimentError, FastmotiveError, TrainingDivergedError, WeightsMapError)
from fastmotive.families import list_families, parse_arch
from fastmotive.optim import OPTIMIZERS, create_optimizer
from fastmotive.run import checkpoint
from fastmotive.training import calibration as bn_calibration
from fastmotive.training.calibration import Calibration, calibrate_bn
from fastmotive.training.evaluation import evaluate, evaluate_pair
from fastmotive.training.schedules import make_schedule
from fastmotive.training.step import StepResult
from fastmotive.training.trainer import History, Trainer

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
