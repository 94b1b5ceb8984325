"""fastmotive: motivation-aware training (Acheli & Gaaloul, "Motivation is Something You Need", arXiv 2602.21064)
on one flat arena, with a compiled weights map and a fused single-launch switch."""
from . import checkpoint, families, optim
from .conditions import (
                         Always,
                         EmaStreak,
                         GradNormRise,
                         LossStreak,
                         Never,
                         RandomActivation,
                         RandomMatched,
                         Signal,
                         ValLossStreak,
                         parse_condition,
)
from .errors import ArchSpecError, ArenaError, FastmotiveError, WeightsMapError
from .families import list_families, parse_arch
from .optim import OPTIMIZERS, create_optimizer
from .pair import MotivatedPair
from .schedules import make_schedule
from .trainer import History, Trainer, TrainingDivergedError
from .weights_map import MapEntry, WeightsMap

__all__ = [
                         "OPTIMIZERS",
                         "Always",
                         "ArchSpecError",
                         "ArenaError",
                         "EmaStreak",
                         "FastmotiveError",
                         "GradNormRise",
                         "History",
                         "LossStreak",
                         "MapEntry",
                         "MotivatedPair",
                         "Never",
                         "RandomActivation",
                         "RandomMatched",
                         "Signal",
                         "Trainer",
                         "TrainingDivergedError",
                         "ValLossStreak",
                         "WeightsMap",
                         "WeightsMapError",
                         "checkpoint",
                         "create_optimizer",
                         "families",
                         "list_families",
                         "make_schedule",
                         "optim",
                         "parse_arch",
                         "parse_condition",
]
__version__ = "0.1.0"
