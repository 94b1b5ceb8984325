"""`fastmotive compare` and `fastmotive tune-k` (fastmotive/experiments/): end to end on digits, reuse and
resume, the ablations' matching, the table's formulas and its undefined cases."""
import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

from fastmotive.cli.main import main
from fastmotive.data.loaders.first_batches import FirstBatches
from fastmotive.experiments import matched_conditions, summarize, write_report
from fastmotive.flops import average_train_flops

TINY = ["--arch", "resnet20:resnet32", "--epochs", "1", "-b", "32", "--no-progress", "--warmup-epochs", "0", "--bn-calibrate", "128",
        "--opt", "sgd", "--lr", "0.05"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Trainings here are tiny: one intra-op thread. With two, a busy neighbour on a 2-core machine makes
    OpenMP's spinning threads 10-40x slower (measured: 38 s for this file alone, 7 min beside another job)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def read_steps(run: Path) -> list[dict]:
    with open(run / "steps.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """One seed of X-C, X-Y, Y-C, A and B: 1 epoch of 4 batches each, evaluated on 1 validation batch."""
    out = tmp_path_factory.mktemp("compare")
    argv = ["compare", *TINY, "--seeds", "1", "--condition", "streak:1", "--ablation", "random", "--epoch-batches",
            "4", "--val-batches", "1", "--output", str(out), "--experiment", "c"]
    assert main(argv) == 0
    return out / "c", argv


def test_compare_writes_table_plot_and_per_run_flops(compared):
    folder, _ = compared
    for name in ("compare.md", "compare.csv", "compare.json", "compare.png", "compare.yaml"):
        assert (folder / name).is_file(), name
    summary = json.loads((folder / "compare.json").read_text())
    rows = {r["row"]: r for r in summary["rows"]}
    assert list(rows) == ["X-C", "X-Y-B", "X-Y-M", "Y-C", "A-B", "A-M", "B-B", "B-M"]
    xc, xy, yc = (json.loads((folder / f"{r}-s0" / "metrics.json").read_text()) for r in ("X-C", "X-Y", "Y-C"))
    assert xc["steps"] == xy["steps"] == yc["steps"] == 4
    # X-C and Y-C train one model alone: its figures are the base_* ones
    args = {r: yaml.safe_load((folder / f"{r}-s0" / "args.yaml").read_text()) for r in ("X-C", "X-Y", "Y-C")}
    assert [(args[r]["arch"], args[r]["condition"]) for r in ("X-C", "X-Y", "Y-C")] == \
        [("resnet20", "never"), ("resnet20:resnet32", "streak:1"), ("resnet32", "never")]
    f_xc, f_yc = xc["base_flops"], yc["base_flops"]
    assert (f_xc, f_yc) == (40931968, 69472896)                 # resnet20 / resnet32 at 32 px
    assert (xy["base_flops"], xy["motivated_flops"]) == (f_xc, f_yc)
    assert (summary["base_gflops"], summary["motivated_gflops"]) == (f_xc / 1e9, f_yc / 1e9)
    assert xc["train_flops_per_image"] == f_xc and yc["train_flops_per_image"] == f_yc
    steps = read_steps(folder / "X-Y-s0")
    assert any(s["active"] == "motivated" for s in steps)
    assert xy["train_flops_per_image"] == pytest.approx(average_train_flops(steps, f_xc, f_yc))
    assert rows["X-Y-B"]["train_gflops_per_image"] == pytest.approx(xy["train_flops_per_image"] / 1e9)
    assert rows["X-C"]["top1"] == [xc["base_top1"]] and rows["Y-C"]["top1"] == [yc["base_top1"]]
    assert rows["X-C"]["motivated_fraction"] is None and rows["Y-C"]["motivated_fraction"] is None
    assert rows["X-Y-M"]["top1"] == [xy["motivated_top1"]]
    # the formulas on the table's own numbers
    acc = {r: rows[r]["top1_mean"] for r in rows}
    gf = {r: rows[r]["train_gflops_per_image"] for r in rows}
    slope_xy = (acc["X-Y-B"] - acc["X-C"]) / (gf["X-Y-B"] - gf["X-C"])
    slope_yc = (acc["Y-C"] - acc["X-C"]) / (gf["Y-C"] - gf["X-C"])
    assert rows["X-Y-B"]["acc_flops"]["value"] == pytest.approx(slope_xy)
    assert rows["Y-C"]["acc_flops"]["value"] == pytest.approx(slope_yc)
    if slope_yc > 0:
        assert rows["X-Y-B"]["acc_f_ratio"]["value"] == pytest.approx(slope_xy / slope_yc)
    else:
        assert rows["X-Y-B"]["acc_f_ratio"]["value"] is None and "did not beat" in rows["X-Y-B"]["acc_f_ratio"]["reason"]
    md = (folder / "compare.md").read_text()
    assert "1 fused multiply-add = 1 FLOP" in md and "| X-Y-B |" in md and "aten::pad" in md
    with open(folder / "compare.csv", newline="") as f:
        assert [r["row"] for r in csv.DictReader(f)] == list(rows)


def test_ablations_are_matched_to_the_xy_log(compared):
    folder, _ = compared
    match = matched_conditions(read_steps(folder / "X-Y-s0"))
    n_motivated = match["per_epoch"][0]
    assert match["batches_per_epoch"] == 4
    assert yaml.safe_load((folder / "A-s0" / "args.yaml").read_text())["condition"] == f"random:{n_motivated / 3:.6g}"
    assert yaml.safe_load((folder / "B-s0" / "args.yaml").read_text())["condition"] == f"matched:{n_motivated}"
    b_steps = read_steps(folder / "B-s0")
    assert sum(s["active"] == "motivated" for s in b_steps) == n_motivated   # exactly as many, at random batches
    summary = json.loads((folder / "compare.json").read_text())
    assert summary["ablation_matching"]["s0"]["per_epoch"] == [n_motivated]


def test_rerun_reuses_every_run(compared, capsys):
    folder, argv = compared
    stamps = {p: p.stat().st_mtime_ns for p in folder.glob("*-s0/last.pt")}
    before = json.loads((folder / "compare.json").read_text())
    assert main(argv) == 0
    assert capsys.readouterr().out.count("reusing") == 5
    assert stamps == {p: p.stat().st_mtime_ns for p in folder.glob("*-s0/last.pt")}   # nothing retrained
    assert json.loads((folder / "compare.json").read_text())["rows"] == before["rows"]


def test_rerun_with_other_settings_is_refused(compared, capsys):
    _folder, argv = compared
    changed = [a if a != "0.05" else "0.1" for a in argv]       # --lr 0.1
    assert main(changed) == 2
    err = capsys.readouterr().err
    assert "lr: run has 0.05, this comparison 0.1" in err and "--experiment" in err


def test_seed_flag_is_refused(tmp_path, capsys):
    assert main(["compare", *TINY, "--seed", "3", "--output", str(tmp_path)]) == 2
    assert "--seed" in capsys.readouterr().err and not any(tmp_path.iterdir())


def test_interrupted_by_max_steps_then_continued(tmp_path, capsys):
    argv = ["compare", *TINY, "--seeds", "1", "--condition", "streak:1", "--ablation", "random",
            "--epoch-batches", "3", "--val-batches", "1", "--output", str(tmp_path), "--experiment", "m"]
    assert main([*argv, "--max-steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "ablations for seed 0 skipped" in out
    summary = json.loads((tmp_path / "m" / "compare.json").read_text())
    assert {r["row"]: r["top1"] for r in summary["rows"]}["X-C"] == []   # no epoch finished: no accuracy
    assert "| X-C | n/a | 0 |" in (tmp_path / "m" / "compare.md").read_text()
    assert main(argv) == 0                                                # continues from the checkpoints
    out = capsys.readouterr().out
    assert out.count("resuming") == 3
    for run in ("X-C", "X-Y", "Y-C", "A", "B"):
        metrics = json.loads((tmp_path / "m" / f"{run}-s0" / "metrics.json").read_text())
        assert metrics["steps"] == 3 and metrics["epochs"] == 1, run
        assert len(read_steps(tmp_path / "m" / f"{run}-s0")) == 3


def test_summarize_on_the_papers_table2(tmp_path):
    """The table's formulas on hand-written metrics: ResNet-50-C / Res-50-101-B / ResNet-101-C (Table 2)."""
    runs = {"X-C": {"base_top1": 78.06, "train_flops_per_image": 3.8e9, "base_flops": 3.8e9},   # single-model
            "X-Y": {"base_top1": 78.40, "motivated_top1": 79.0, "train_flops_per_image": 3.84e9,
                    "base_flops": 3.8e9, "motivated_flops": 7.6e9, "motivated_image_fraction": 0.01},
            "Y-C": {"base_top1": 79.80, "train_flops_per_image": 7.6e9, "base_flops": 7.6e9}}      # single-model
    for label, m in runs.items():
        (tmp_path / f"{label}-s0").mkdir()
        (tmp_path / f"{label}-s0" / "metrics.json").write_text(json.dumps(m))
    summary = summarize(tmp_path, [0])
    assert (summary["base_gflops"], summary["motivated_gflops"]) == (3.8, 7.6)
    rows = {r["row"]: r for r in summary["rows"]}
    assert rows["Y-C"]["top1"] == [79.80] and rows["X-Y-B"]["motivated_fraction"] == 0.01
    assert rows["X-Y-B"]["acc_flops"]["value"] == pytest.approx(8.5)
    assert round(rows["Y-C"]["acc_flops"]["value"], 2) == 0.46
    assert rows["X-Y-B"]["acc_f_ratio"]["value"] == pytest.approx(18.56, abs=0.01)
    assert summary["per_seed"]["s0"]["ratio"]["value"] == pytest.approx(18.56, abs=0.01)
    # no motivated step: F_{X-Y} = F_{X-C}; the table says "undefined" with the reason, never inf
    (tmp_path / "X-Y-s0" / "metrics.json").write_text(json.dumps(
        {"base_top1": 78.30, "motivated_top1": 9.0, "train_flops_per_image": 3.8e9, "base_flops": 3.8e9}))
    summary = summarize(tmp_path, [0])
    assert (summary["base_gflops"], summary["motivated_gflops"]) == (3.8, 7.6)   # from X-C and Y-C
    write_report(tmp_path, summary)
    md = (tmp_path / "compare.md").read_text()
    assert "| X-Y-B | 78.30 | 1 | 3.8 | undefined (1) | undefined (1) |" in md
    assert "(1) undefined: X-Y-B vs X-C: FLOPs equal the reference's" in md and "inf" not in md


def test_classic_runs_train_one_model_alone():
    from fastmotive.config.settings import TrainConfig
    from fastmotive.experiments.compare import run_config
    base = TrainConfig(arch="efficientnet_b0:b2", condition="streak:3", drop="0.1:0.3", drop_path="auto", seed=9)
    xc, xy, yc, a = (run_config(base, Path("out"), label, 4, *extra) for label, *extra in
                     (("X-C",), ("X-Y",), ("Y-C",), ("A", "random:0.2")))
    assert (xc.arch, xc.condition, xc.drop, xc.drop_path) == ("efficientnet_b0", "never", "0.1", "auto")
    assert (yc.arch, yc.condition, yc.drop, yc.drop_path) == ("efficientnet_b2", "never", "0.3", "auto")
    assert (xy.arch, xy.condition, xy.drop) == ("efficientnet_b0:b2", "streak:3", "0.1:0.3")
    assert (a.condition, a.seed, a.output, a.experiment) == ("random:0.2", 4, "out", "A-s4")


def test_first_batches_wraps_a_loader():
    class Loader:
        def __len__(self):
            return 10

        def epoch_batches(self, epoch, start_batch=0):
            return iter(range(epoch * 100 + start_batch, epoch * 100 + 10))

    few = FirstBatches(Loader(), 3)
    assert len(few) == 3 and list(few.epoch_batches(2)) == [200, 201, 202]
    assert list(few.epoch_batches(1, start_batch=2)) == [102] and list(few) == [0, 1, 2]
    assert len(FirstBatches(Loader(), 50)) == 10


def test_matched_conditions_from_a_synthetic_log():
    active = [["base", "base", "motivated", "motivated", "base"], ["base", "motivated", "base", "base", "base"]]
    steps = [{"epoch": e, "batch": b, "active": a} for e, row in enumerate(active) for b, a in enumerate(row)]
    m = matched_conditions(steps)
    assert m["per_epoch"] == [2, 1] and m["batches_per_epoch"] == 5 and m["mean"] == 1.5
    assert m["A"] == "random:0.375" and m["B"] == "matched:2"   # P = 1.5 / (5 - 1); N = round(1.5)


def test_tune_k_cross_validates_on_the_training_set(tmp_path):
    argv = ["tune-k", *TINY, "--ks", "2,1", "--folds", "2", "--epoch-batches", "2", "--output", str(tmp_path),
            "--experiment", "t"]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "t" / "tune_k.json").read_text())
    assert [r["k"] for r in summary["results"]] == [1, 2]
    assert all(len(r["base_top1"]) == 2 for r in summary["results"])
    best = max(summary["results"], key=lambda r: (r["mean"], -r["k"]))
    assert summary["chosen_k"] == best["k"]
    args = yaml.safe_load((tmp_path / "t" / "k1-f1" / "args.yaml").read_text())
    assert (args["condition"], args["fold"], args["folds"]) == ("streak:1", 1, 2)
    assert "chosen k" in (tmp_path / "t" / "tune_k.md").read_text()
    assert main(argv) == 0 and json.loads((tmp_path / "t" / "tune_k.json").read_text()) == summary   # reused


def test_folds_split_the_training_set_not_the_validation_split():
    import numpy as np

    from fastmotive.config.settings import TrainConfig
    from fastmotive.data import read_dataset
    from fastmotive.experiments import fold_loaders
    raw = read_dataset("digits")
    config = TrainConfig(batch_size=32, seed=0, no_flip=False)
    sizes, held_out_labels = [], []
    for fold in range(3):
        train, val, info = fold_loaders(raw, 3, fold, 0)(config, "cpu")
        assert (info.name, info.num_classes, info.train_size) == ("digits", 10, 1437)
        sizes.append((train.dataset_size, val.dataset_size))
        held_out_labels.append(np.concatenate([y.numpy() for _, y in val.epoch_batches(0)]))
    assert all(t + v == len(raw.train.labels) == 1437 for t, v in sizes)
    assert sum(v for _, v in sizes) == 1437                                  # every image held out once
    assert all(abs(np.bincount(y, minlength=10) / len(y) - 0.1).max() < 0.02 for y in held_out_labels)  # stratified
