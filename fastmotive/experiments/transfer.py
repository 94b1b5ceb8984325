"""``transfer``: the paper's Table 3 (Acheli & Gaaloul, Sec. 4) on your data. The base model trained classically
(X-C) and the base trained with its motivated model (X-Y-B) are each fine-tuned on a second dataset with the same
recipe and seeds; the table sets their fine-tuned accuracies side by side.

    OUTPUT/NAME/X-C-s0, X-Y-s0          the source runs, named and made as compare's (a compare folder of the same
                                        settings is reused: pass its --experiment)
                transfer-TARGET/Unmot-s0   X-C's model fine-tuned on TARGET      -> the Unmot row
                                Mot-s0     X-Y's base fine-tuned on TARGET       -> the Mot row
                                transfer.md / .csv / .json, transfer.yaml (the settings)

A fine-tune run is a single-model run of the base: ``arch`` the base's name, ``initial_checkpoint`` RUN_DIR:base of
its source run, ``dataset`` TARGET, ``num_classes`` the target's (the classifier is dropped when the count differs).
Its settings are the source settings with the fine-tune config's keys on top (``--finetune-config``, then
``--finetune KEY=VALUE``), so budgets such as --epoch-batches carry over unless the config sets them.
"""
from __future__ import annotations

from pathlib import Path

from fastmotive.config import settings
from fastmotive.errors import ExperimentError
from fastmotive.experiments.compare import member_rate, run_config
from fastmotive.experiments.report import write_transfer_report
from fastmotive.experiments.runs import check_settings, experiment_folder, finished, train_one, write_settings
from fastmotive.experiments.stats import TRANSFER_ROWS, transfer_summary
from fastmotive.families import parse_arch
from fastmotive.run.recipe import run_dir_for

# fine-tune settings the command sets per run; a fine-tune config's values for them are ignored (the shipped
# paper-transfer recipe names resnet50 and cifar10, for `fastmotive train -c paper-transfer`)
FINETUNE_OWN = ("arch", "dataset", "data_dir", "initial_checkpoint", "num_classes", "seed", "condition", "output",
                "experiment", "resume")
THIS = "this transfer"


def target_folder(folder: Path, target: str) -> Path:
    """Where the fine-tune runs of `target` go inside the source folder."""
    return Path(folder) / f"transfer-{target}"


def finetune_config(base, finetune: dict, folder: Path, row: str, seed: int, target: str, target_dir: str | None):
    """The settings of fine-tune run ROW-sSEED (ROW "Unmot" or "Mot"): the base member alone, started from the
    base of its source run (X-C or X-Y of the same seed), on `target`."""
    source = dict(TRANSFER_ROWS)[row]
    source_dir = run_dir_for(run_config(base, folder, source, seed))
    own = {k: v for k, v in finetune.items() if k not in FINETUNE_OWN}
    config = settings.replace(base, **{k: member_rate(getattr(base, k), 0) for k in ("drop", "drop_path")})
    return settings.replace(config, **own, arch=parse_arch(base.arch).base, dataset=target, data_dir=target_dir,
                            num_classes=None, initial_checkpoint=f"{source_dir}:base", seed=seed, **settings.ALONE,
                            output=str(target_folder(folder, target)), experiment=f"{row}-s{seed}", resume=None)


def check_target(config) -> None:
    """Read the fine-tune dataset once, before any training: an unknown --to, or a --to-data-dir that does not hold
    it, is refused now, not after the source runs have trained for hours."""
    from fastmotive.data import DataError, read_dataset
    try:
        read_dataset(config.dataset, config.data_dir, config.skip_bad_images)
    except DataError as exc:
        given = f" --to-data-dir {config.data_dir}" if config.data_dir else ""
        raise ExperimentError(f"--to {config.dataset}{given}: {exc}") from exc


def transfer(base, seeds: list[int], target: str, target_dir: str | None = None,
             finetune: dict | None = None) -> dict | None:
    """Train (or reuse, or resume) the source runs X-C and X-Y of each seed, fine-tune both bases on `target`,
    then write the table.

    Args:
        base: the source runs' TrainConfig (as compare's); its `output` and `experiment` name the folder (default
            compare-ARCH-DATASET, so a finished comparison's runs are reused). Its `seed` is unused.
        seeds: one X-C, X-Y, Unmot and Mot run per seed.
        target, target_dir: the second dataset (a `--dataset` name) and its `--data-dir`.
        finetune: settings the fine-tune runs change (a `settings.read_yaml` mapping); the keys in
            `FINETUNE_OWN` are set by this command and ignored.

    Returns:
        The summary written to transfer.json, or None when a run was interrupted (rerun to continue).

    Raises:
        ExperimentError: no seeds, a pair arch missing, a run folder made with other settings, or a target dataset
            that cannot be read (before anything is trained).
    """
    if not seeds:
        raise ExperimentError("transfer needs at least one seed (--seeds N with N >= 1)")
    if parse_arch(base.arch).motivated is None:
        raise ExperimentError(f"--arch {base.arch}: transfer compares a base trained alone with one trained with its "
                              "motivated model; give BASE:MOTIVATED, e.g. resnet20:resnet32")
    finetune = dict(finetune or {})
    ignored = sorted(k for k in finetune if k in FINETUNE_OWN)
    if ignored:
        print(f"fine-tune settings set by transfer for each run, ignored from the config: {', '.join(ignored)}")
    folder = experiment_folder(base, "compare")
    into = target_folder(folder, target)
    runs = {seed: {"X-C": run_config(base, folder, "X-C", seed), "X-Y": run_config(base, folder, "X-Y", seed),
                   **{row: finetune_config(base, finetune, folder, row, seed, target, target_dir)
                      for row, _ in TRANSFER_ROWS}} for seed in seeds}
    for configs in runs.values():   # refuse a folder of other settings before training anything
        for config in configs.values():
            check_settings(config, this=THIS)
    check_target(runs[seeds[0]]["Mot"])
    source_settings = {k: v for k, v in settings.record(base).items() if k not in ("seed", "resume")}
    write_settings(into, "transfer", {"seeds": list(seeds), "target": target, "target_data_dir": target_dir,
                                      "source_folder": str(folder), "source_settings": source_settings},
                   runs[seeds[0]]["Mot"], drop=("seed", "resume", "initial_checkpoint", "experiment"))
    for seed, configs in runs.items():
        sources = {}
        for label in ("X-C", "X-Y"):
            sources[label] = train_one(configs[label], this=THIS)
            if sources[label] is None:
                return None
        unfinished = [label for label, metrics in sources.items() if not finished(metrics, configs[label])]
        if unfinished:
            print(f"fine-tuning for seed {seed} skipped: {', '.join(f'{u}-s{seed}' for u in unfinished)} stopped "
                  "before its last epoch (--max-steps); fine-tuning starts from finished runs")
            continue
        for row, _ in TRANSFER_ROWS:
            if train_one(configs[row], this=THIS) is None:
                return None
    summary = transfer_summary(folder, into, list(seeds), target)
    text = write_transfer_report(into, summary)
    print(f"wrote {into / 'transfer.md'} (and .csv, .json)")
    print(text, end="")
    return summary
