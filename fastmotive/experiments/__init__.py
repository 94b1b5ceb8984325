"""The paper's experiments (Acheli & Gaaloul, Sec. 4) built from TrainConfig objects: `compare` (X-C / X-Y / Y-C
and ablations A, B, with ACC/FLOPs), `transfer` (Table 3: both bases fine-tuned on a second dataset) and `tune_k`
(k by cross-validation); `commands` is their command line."""
from fastmotive.experiments.compare import compare, matched_conditions
from fastmotive.experiments.report import write_report, write_transfer_report, write_tune_k_report
from fastmotive.experiments.runs import train_one
from fastmotive.experiments.stats import summarize, transfer_summary
from fastmotive.experiments.transfer import transfer
from fastmotive.experiments.tune_k import fold_loaders, tune_k

__all__ = ["compare", "fold_loaders", "matched_conditions", "summarize", "train_one", "transfer", "transfer_summary",
           "tune_k", "write_report", "write_transfer_report", "write_tune_k_report"]
