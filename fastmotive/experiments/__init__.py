"""The paper's experiments (Acheli & Gaaloul, Sec. 4) built from TrainConfig objects: `compare` (X-C / X-Y / Y-C
and ablations A, B, with ACC/FLOPs) and `tune_k` (k by cross-validation); `commands` is their command line."""
from .compare import compare, matched_conditions
from .report import write_report, write_tune_k_report
from .runs import train_one
from .stats import summarize
from .tune_k import fold_loaders, tune_k

__all__ = ["compare", "fold_loaders", "matched_conditions", "summarize", "train_one", "tune_k", "write_report",
           "write_tune_k_report"]
