"""``tune-k``: the condition's k chosen as the paper chose it (Sec. 4), by stratified k-fold cross-validation on
the training set; the base model's held-out top-1 after motivated training decides. The validation split is
never used. Run folders OUTPUT/NAME/k{k}-f{fold}, reused and resumed as compare's are."""
from __future__ import annotations

from fastmotive.conditions import K_CONDITIONS
from fastmotive.config import settings
from fastmotive.errors import ExperimentError
from fastmotive.experiments.report import write_tune_k_report
from fastmotive.experiments.runs import check_settings, experiment_folder, train_one, write_settings
from fastmotive.experiments.stats import choose_k, k_result

RULES = K_CONDITIONS   # the conditions with a k
THIS = "this tune-k"                                # how a refusal names the command


def fold_loaders(raw, folds: int, fold: int, seed: int):
    """A function(config, device) -> (train, val, DatasetInfo): fold `fold` of a stratified `folds`-fold split of
    `raw`'s training set, in place of the dataset's loaders.

    Args:
        raw: an array dataset (`fastmotive.data.read_dataset`).
        seed: seeds the split (`StratifiedKFold(shuffle=True, random_state=seed)`); the loaders' own seed, batch
            size, flip and image size come from the run's config.

    Raises:
        ExperimentError: `raw` is a folder of image files, which are not split in memory.
    """
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    from fastmotive.data import TensorLoader
    from fastmotive.data.build import DatasetInfo, resize_images
    from fastmotive.data.datasets.readers import ArraySplit

    if not isinstance(raw.train, ArraySplit):
        raise ExperimentError(f"tune-k splits the training set in memory; dataset {raw.name!r} is a folder of files. "
                              f"Use an array dataset (digits, mnist, fashion_mnist, cifar10, cifar100)")
    train_idx, val_idx = list(StratifiedKFold(folds, shuffle=True, random_state=seed)
                              .split(np.zeros(len(raw.train.labels)), raw.train.labels))[fold]

    def make(config, device, rank: int = 0, world_size: int = 1):
        if world_size > 1:
            raise ExperimentError("tune-k's folds run in one process; drop --nproc / torchrun")
        images = raw.train.images
        if config.img_size and config.img_size != raw.img_size:
            images = resize_images(images, config.img_size)
        common = {"batch_size": config.batch_size, "seed": config.seed, "mean": raw.mean, "std": raw.std,
                  "device": device, "flip": raw.flip if not config.no_flip else False}
        info = DatasetInfo(raw.name, raw.num_classes, images.shape[-1], tuple(raw.mean), tuple(raw.std),   # the
                           len(raw.train.labels), len(raw.val.labels), "tensor")   # dataset's split sizes, as before
        return (TensorLoader(ArraySplit(images[train_idx], raw.train.labels[train_idx]), train=True, **common),
                TensorLoader(ArraySplit(images[val_idx], raw.train.labels[val_idx]), train=False, **common), info)
    return make


def tune_k(base, ks: list[int], folds: int = 5, rule: str = "streak") -> dict | None:
    """Cross-validate the condition `rule`:k for each k; the best mean held-out top-1 wins, ties to the smaller k.

    Args:
        base: the TrainConfig every run shares; its `seed` seeds the runs and the fold split, its `output` and
            `experiment` name the folder (default name tune-k-ARCH-DATASET). Its `condition` is unused.
        ks: the values of k to try.
        folds: cross-validation folds (>= 2).
        rule: one of `RULES`.

    Returns:
        The summary written to tune_k.json ({"results": one line per k, "chosen_k": k, ...}), or None when a
        run was interrupted (rerun to continue).

    Raises:
        ExperimentError: k < 1, fewer than 2 folds, an unknown rule, a dataset of files, or a run folder made
            with other settings.
    """
    from fastmotive.data import read_dataset
    ks = sorted(set(ks))
    if not ks or ks[0] < 1 or folds < 2:
        raise ExperimentError(f"--ks {','.join(map(str, ks))} --folds {folds}: need integers k >= 1 and at least "
                              "2 folds")
    if rule not in RULES:
        raise ExperimentError(f"--rule {rule!r}: tune-k tunes the k of {', '.join(RULES)}")
    raw = read_dataset(base.dataset, base.data_dir)
    _check_folds(raw, folds)
    folder = experiment_folder(base, "tune-k")
    runs = {(k, fold): (_config(base, folder, rule, k, fold), {"fold": fold, "folds": folds})
            for k in ks for fold in range(folds)}
    for config, extra in runs.values():   # refuse a folder of other settings before training anything
        check_settings(config, extra, THIS)
    write_settings(folder, "tune-k", {"ks": ks, "folds": folds, "rule": rule}, base, drop=("condition", "resume"))
    results = []
    for k in ks:
        fold_metrics = []
        for fold in range(folds):
            config, extra = runs[(k, fold)]
            metrics = train_one(config, fold_loaders(raw, folds, fold, base.seed), record_extra=extra, this=THIS)
            if metrics is None:
                return None
            fold_metrics.append(metrics)
        results.append(k_result(k, f"{rule}:{k}", fold_metrics))
    summary = {"folder": str(folder), "folds": folds, "seed": base.seed, "results": results,
               "chosen_k": choose_k(results)}
    print(write_tune_k_report(folder, summary), end="")
    return summary


def _check_folds(raw, folds: int) -> None:
    """Stratified folds need every class in every fold: at most as many folds as the rarest class has images."""
    import numpy as np
    labels = getattr(raw.train, "labels", None)
    if labels is None:
        return   # a folder of files: fold_loaders refuses it with its own message
    rarest = int(np.bincount(np.asarray(labels)).min())
    if folds > rarest:
        raise ExperimentError(f"--folds {folds}: the rarest class of {raw.name}'s training set has {rarest} images, "
                              f"so at most {rarest} stratified folds are possible")


def _config(base, folder, rule: str, k: int, fold: int):
    """The settings of run k{k}-f{fold} in `folder`."""
    return settings.replace(base, condition=f"{rule}:{k}", output=str(folder), experiment=f"k{k}-f{fold}")
