"""`fastmotive transfer` (fastmotive/experiments/transfer.py): the paper's Table 3 built from runs' metrics, the
fine-tune runs' settings, and the command end to end on digits -> a synthetic CIFAR-100 at tiny budgets."""
import json
from pathlib import Path

import pytest
import yaml

from fastmotive.cli.experiments import _setting_value
from fastmotive.cli.main import main
from fastmotive.config.settings import TrainConfig
from fastmotive.experiments import transfer_summary, write_transfer_report
from fastmotive.experiments.transfer import finetune_config

pytestmark = pytest.mark.usefixtures("one_thread")


def write_metrics(path: Path, **metrics) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.json").write_text(json.dumps(metrics))


def test_table_from_the_papers_table3(tmp_path):
    """Table 3's CIFAR-10 column (3 runs): Res-50-Unmot 93.71 +- 0.04, Res-50-Mot 97.15 +- 0.03; sources 78.06 and
    78.40 (ImageNet)."""
    source, target = tmp_path / "src", tmp_path / "src" / "transfer-cifar10"
    for seed, (unmot, mot) in enumerate([(93.67, 97.12), (93.71, 97.15), (93.75, 97.18)]):
        write_metrics(source / f"X-C-s{seed}", base_top1=78.06)
        write_metrics(source / f"X-Y-s{seed}", base_top1=78.40, motivated_top1=79.0)
        write_metrics(target / f"Unmot-s{seed}", base_top1=unmot, base_top1_raw=unmot - 1)
        write_metrics(target / f"Mot-s{seed}", base_top1=mot, base_top1_raw=mot - 1)
    write_metrics(source / "X-C-s3", base_top1=50.0)   # a seed not asked for is left out
    summary = transfer_summary(source, target, [0, 1, 2], "cifar10")
    unmot, mot = summary["rows"]
    assert (unmot["row"], unmot["source_run"], mot["row"], mot["source_run"]) == ("Unmot", "X-C", "Mot", "X-Y")
    assert unmot["top1_mean"] == pytest.approx(93.71) and unmot["top1_sd"] == pytest.approx(0.04)
    assert mot["top1_mean"] == pytest.approx(97.15) and mot["top1_sd"] == pytest.approx(0.03)
    assert mot["top1_raw_mean"] == pytest.approx(96.15)
    assert (unmot["source_top1_mean"], mot["source_top1_mean"]) == (pytest.approx(78.06), pytest.approx(78.40))
    assert summary["difference"]["mean"] == pytest.approx(3.44) and summary["difference"]["seeds"] == [0, 1, 2]
    md = write_transfer_report(target, summary)
    assert "| Unmot | X-C | 78.06 ± 0.00 | 93.71 ± 0.04 | 3 | 92.71 ± 0.04 |" in md
    assert "| Mot | X-Y | 78.40 ± 0.00 | 97.15 ± 0.03 | 3 |" in md
    assert "Mot - Unmot: +3.44 ± 0.01 points (s0: +3.45, s1: +3.44, s2: +3.43)" in md
    assert (target / "transfer.md").read_text() == md
    assert json.loads((target / "transfer.json").read_text())["rows"][1]["top1"] == [97.12, 97.15, 97.18]
    assert (target / "transfer.csv").read_text().splitlines()[1].startswith("Unmot,X-C,3,")


def test_table_with_missing_runs(tmp_path):
    write_metrics(tmp_path / "X-C-s0", base_top1=70.0)
    write_metrics(tmp_path / "t" / "Unmot-s0", base_top1=60.0)
    write_metrics(tmp_path / "t" / "Mot-s0")                  # stopped before an evaluation
    summary = transfer_summary(tmp_path, tmp_path / "t", [0], "digits")
    unmot, mot = summary["rows"]
    assert unmot["top1"] == [60.0] and unmot["top1_sd"] is None and mot["top1"] == [] and mot["top1_mean"] is None
    assert summary["difference"]["per_seed"] == []
    md = write_transfer_report(tmp_path / "t", summary)
    assert "| Mot | X-Y | n/a | n/a | 0 | n/a |" in md and "Mot - Unmot" not in md


def test_finetune_runs_start_from_each_source_base():
    base = TrainConfig(arch="efficientnet_b0:b2", dataset="digits", num_classes=10, drop="0.2:0.3", epochs=7,
                       lr=1e-3, output="out", experiment="e", seed=5)
    finetune = {"lr": 0.01, "epochs": 2, "arch": "resnet50", "dataset": "cifar10"}   # the last two are ignored
    folder = Path("out/e")
    unmot = finetune_config(base, finetune, folder, "Unmot", 1, "cifar100", "/data/c100")
    mot = finetune_config(base, finetune, folder, "Mot", 1, "cifar100", "/data/c100")
    for run, source in ((unmot, "X-C-s1"), (mot, "X-Y-s1")):
        assert run.initial_checkpoint == f"{folder / source}:base"
        assert (run.arch, run.dataset, run.data_dir, run.num_classes) == ("efficientnet_b0", "cifar100", "/data/c100",
                                                                          None)
        assert (run.lr, run.epochs, run.seed, run.condition, run.drop) == (0.01, 2, 1, "never", "0.2")
        assert run.output == str(folder / "transfer-cifar100")
    assert (unmot.experiment, mot.experiment) == ("Unmot-s1", "Mot-s1")
    assert {k: v for k, v in vars(unmot).items() if k not in ("initial_checkpoint", "experiment")} == \
        {k: v for k, v in vars(mot).items() if k not in ("initial_checkpoint", "experiment")}   # one recipe


def test_finetune_setting_values_are_read_as_flags_are():
    assert _setting_value("lr=0.01") == ("lr", 0.01)
    assert _setting_value("epochs=3") == ("epochs", 3)
    assert _setting_value("no-flip=true") == ("no_flip", True)
    assert _setting_value("scale=0.5,1") == ("scale", (0.5, 1.0))
    assert _setting_value("drop_path=none") == ("drop_path", None)
    for bad in ("lr", "learning_rate=3", "epochs=three", "amp=maybe"):
        with pytest.raises(Exception, match="SETTING=VALUE|not a value"):
            _setting_value(bad)


def test_transfer_refuses_a_single_model_and_its_own_flags(tmp_path, capsys):
    assert main(["transfer", "--arch", "resnet20", "--to", "digits", "--output", str(tmp_path)]) == 2
    assert "BASE:MOTIVATED" in capsys.readouterr().err
    assert main(["transfer", "--to", "digits", "--seed", "1", "--output", str(tmp_path)]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert main(["transfer", "--to", "digits", "--finetune", "lr", "--output", str(tmp_path)]) == 2
    assert not any(tmp_path.iterdir())


TINY = ["--arch", "resnet20:resnet32", "--epochs", "1", "-b", "16", "--no-progress", "--warmup-epochs", "0",
        "--bn-calibrate", "32", "--opt", "sgd", "--lr", "0.05", "--epoch-batches", "3", "--val-batches", "1"]


@pytest.mark.parametrize("to, needle", [(["--to", "imagenet22k"], "--to imagenet22k: unknown dataset 'imagenet22k'"),
                                        (["--to", "folder"], "--to folder: dataset 'folder' needs --data-dir"),
                                        (["--to", "cifar10", "--to-data-dir", "nowhere"],
                                         "--to cifar10 --to-data-dir nowhere: nowhere: no such directory")])
def test_a_target_that_cannot_be_read_is_refused_before_any_training(tmp_path, capsys, to, needle):
    assert main(["transfer", *TINY, *to, "--seeds", "1", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1, err
    assert not any(tmp_path.iterdir())   # no source run trained, nothing written


def test_transfer_end_to_end_on_digits_then_cifar100(tmp_path, capsys):
    from fastmotive.testing import write_cifar100
    target = write_cifar100(tmp_path / "data", n_train=64, n_test=16).parent
    argv = ["transfer", *TINY, "--seeds", "1", "--to", "cifar100", "--to-data-dir", str(target),
            "--finetune", "lr=0.01", "--finetune", "epochs=2", "--output", str(tmp_path), "--experiment", "s"]
    assert main(argv) == 0
    folder, into = tmp_path / "s", tmp_path / "s" / "transfer-cifar100"
    for name in ("transfer.md", "transfer.csv", "transfer.json", "transfer.yaml"):
        assert (into / name).is_file(), name
    args = {r: yaml.safe_load((into / f"{r}-s0" / "args.yaml").read_text()) for r in ("Unmot", "Mot")}
    assert args["Unmot"]["initial_checkpoint"] == f"{folder / 'X-C-s0'}:base"
    assert args["Mot"]["initial_checkpoint"] == f"{folder / 'X-Y-s0'}:base"
    for a in args.values():
        assert (a["arch"], a["dataset"], a["lr"], a["epochs"], a["num_classes"]) == ("resnet20", "cifar100", 0.01, 2,
                                                                                    None)
    summary = json.loads((into / "transfer.json").read_text())
    assert [(r["row"], len(r["top1"]), len(r["source_top1"])) for r in summary["rows"]] == [("Unmot", 1, 1),
                                                                                           ("Mot", 1, 1)]
    for row, run in (("Unmot", "Unmot-s0"), ("Mot", "Mot-s0")):
        metrics = json.loads((into / run / "metrics.json").read_text())
        assert metrics["epochs"] == 2 and metrics["motivated_top1"] is None
        assert next(r for r in summary["rows"] if r["row"] == row)["top1"] == [metrics["base_top1"]]
    capsys.readouterr()
    assert main(argv) == 0                                           # everything reused
    assert capsys.readouterr().out.count("reusing") == 4
    changed = [a if a != "lr=0.01" else "lr=0.02" for a in argv]     # another fine-tune recipe: refused
    assert main(changed) == 2
    assert "lr: run has 0.01, this transfer 0.02" in capsys.readouterr().err
