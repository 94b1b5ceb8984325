"""benchmarks/vs_timm.py (issue 19): its parsing, plan and ratios on canned inputs; a one-command --tiny run
without timm's train.py (about 10 s), and the whole --tiny run, with timm when its train.py is there (slow:
six commands, each starting torch, timm and fastmotive)."""
import json
from types import SimpleNamespace

import pytest

from tests.helpers import load_benchmark

bench = load_benchmark("vs_timm")

TIMM_LOG = """\
Train: 0 [   0/8 ( 12%)]  Loss: 5.61 (5.61)  Time: 3.259s,    4.91/s  (3.259s,    4.91/s)  LR: 1.000e-05  Data: 0.439 (0.439)
Train: 0 [   7/8 (100%)]  Loss: 5.82 (6.50)  Time: 0.953s,   16.79/s  (1.355s,   11.81/s)  LR: 8.763e-04  Data: 0.018 (0.070)
Test: [   0/3]  Time: 0.533 (0.533)  Loss:   2.334 ( 2.334)  Acc@1:   0.000 (  0.000)  Acc@5:  75.000 ( 75.000)
Test: [   3/3]  Time: 0.222 (0.323)  Loss:   2.486 ( 2.336)  Acc@1:   0.000 (  7.812)  Acc@5:  25.000 ( 51.562)
Train: 1 [   7/8 (100%)]  Loss: 4.00 (4.50)  Time: 0.500s,   32.00/s  (0.500s,   32.00/s)  LR: 1.000e-04  Data: 0.010 (0.020)
Test: [   3/3]  Time: 0.200 (0.250)  Loss:   2.000 ( 2.100)  Acc@1:  10.000 ( 20.000)  Acc@5:  25.000 ( 51.562)
"""
FIGURES = ("wall_s", "peak_rss_mb", "peak_anon_mb", "train_images_per_sec", "step_images_per_sec", "data_s",
           "eval_s", "other_s", "top1")


def test_read_timm_parses_each_epochs_last_train_line(tmp_path):
    log, run = tmp_path / "t.log", tmp_path / "run"
    log.write_text(TIMM_LOG)
    run.mkdir()
    (run / "summary.csv").write_text("epoch,train_loss,eval_loss,eval_top1,eval_top5,lr\n0,6,2.3,7.8,51,0\n"
                                     "1,4.5,2.1,20.0,51,0\n")
    r = bench.read_timm(log, run, batch=16)
    assert r["images"] == 2 * 8 * 16 and r["top1"] == 20.0 and r["epochs_done"] == 2
    assert r["train_images_per_sec"] == pytest.approx(256 / (8 * 1.355 + 8 * 0.5))
    assert r["data_s"] == pytest.approx(8 * 0.07 + 8 * 0.02)
    assert r["eval_s"] == pytest.approx(4 * 0.323 + 4 * 0.25)


def test_read_fastmotive_falls_back_to_the_run_wide_rate(tmp_path):
    (tmp_path / "steps.csv").write_text("step,epoch,batch,active,loss,lr,images,switched\n0,0,0,base,1,1,16,False\n")
    (tmp_path / "metrics.json").write_text(json.dumps({"base_top1": 50.0, "images_per_sec": 7.0}))
    r = bench.read_fm(tmp_path)
    assert r["train_images_per_sec"] == 7.0 and "includes evaluation" in r["ips_source"] and r["top1"] == 50.0
    (tmp_path / "summary.csv").write_text("epoch,train_s,data_s\n0,1.5,0.5\n")
    r = bench.read_fm(tmp_path)
    assert r["train_images_per_sec"] == 8.0 and r["step_images_per_sec"] == pytest.approx(16 / 1.5)


def test_plan_pairs_the_tools_and_swaps_cores(tmp_path):
    args = SimpleNamespace(repeats=2, models=["efficientnet_b0", "efficientnet_b2"], schedule="parallel", pin=True,
                           cores=[0, 1], batch_size=64, epochs=3, img_size=32, workers=1, fm_loader="auto",
                           fm_args="", fm_pair_args="--growth-init identity", timm_args="", channels_last="auto",
                           timm_train=tmp_path / "train.py")
    rounds = bench.plan(args, tmp_path, tmp_path, with_timm=True)
    assert [[(j["tool"], j["row"]) for j in r] for r in rounds[:3]] == [
        [("timm", "X-C"), ("fastmotive", "X-C")], [("timm", "Y-C"), ("fastmotive", "Y-C")],
        [("fastmotive", "X-Y"), ("fastmotive", "X-Y")]]
    growth = [("--growth-init" in j["cmd"]) for r in rounds[:3] for j in r]
    assert growth == [False, False, False, False, True, True]   # the pair's own flags on X-Y only
    layouts = [("--channels-last" in j["cmd"]) for r in rounds[:2] for j in r]
    assert layouts == [True] * 4   # efficientnet: channels-last in fastmotive (auto), so in timm too
    assert bench.round_cores(args, 2, 0) == [0, 1] and bench.round_cores(args, 2, 1) == [1, 0]
    args.schedule = "serial"
    rounds = bench.plan(args, tmp_path, tmp_path, with_timm=False)
    assert [r[0]["tool"] for r in rounds] == ["fastmotive"] * 6 and bench.round_cores(args, 1, 1) == [0]


def test_ratios_and_targets():
    def run(tool, row, wall, ips, rss, repeat=0):
        return {"tool": tool, "row": row, "model": row, "repeat": repeat, "wall_s": wall,
                "train_images_per_sec": ips, "peak_rss_mb": rss}
    runs = [run("timm", "X-C", 100, 100, 1000), run("fastmotive", "X-C", 101, 105, 1050),
            run("timm", "Y-C", 200, 50, 1100), run("fastmotive", "Y-C", 210, 49, 1300),
            run("fastmotive", "X-Y", 130, 80, 1500)]
    table = bench.summarize(runs)
    r = bench.ratios(runs, table)
    assert r["X-C"]["train_ips_vs_timm"] == pytest.approx(1.05) and r["Y-C"]["single_wall_vs_timm"] == 1.05
    assert r["X-Y"]["xy_wall_vs_timm_xc_yc"] == pytest.approx(130 / 300)
    assert r["X-Y"]["xy_wall_vs_fastmotive_xc_yc"] == pytest.approx(130 / 311)
    t = bench.targets(r)
    assert t["xy_wall_vs_timm_xc_yc"]["met"] and not t["train_ips_vs_timm"]["met"]
    assert t["single_wall_vs_timm"]["values"] == {"X-C": pytest.approx(1.01), "Y-C": pytest.approx(1.05)}


@pytest.mark.slow
def test_tiny_run_reports_every_figure(tmp_path):
    out = tmp_path / "r.json"
    skip_reason = bench.timm_skip_reason(bench.DEFAULT_TIMM_TRAIN)
    assert bench.main(["--tiny", "--work", str(tmp_path / "w"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["timm"]["skipped"] == skip_reason and result["data"]["train"] == 128
    tools = ["fastmotive"] + ([] if skip_reason else ["timm"])
    expected = {f"{t} {row}" for t in tools for row in ("X-C", "Y-C")} | {"fastmotive X-Y"}
    assert set(result["table"]) == expected
    for key, row in result["table"].items():
        assert all(row[f] is not None for f in FIGURES), (key, row)
    assert result["table"]["fastmotive X-Y"]["motivated_top1"] is not None
    assert result["ratios"]["X-Y"]["xy_wall_vs_fastmotive_xc_yc"] > 0
    for name, target in result["targets"].items():
        assert (target["met"] is None) == bool(skip_reason), name


def test_missing_timm_is_skipped_with_its_reason(tmp_path):
    out = tmp_path / "r.json"
    missing = tmp_path / "no" / "train.py"
    assert bench.main(["--tiny", "--images", "32", "--val-images", "16", "--models", "efficientnet_b0", "--schedule",
                       "serial", "--timm-train", str(missing), "--work", str(tmp_path / "w"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["data"]["train"] == 32 and result["config"]["batch_size"] == 16
    assert str(missing) in result["timm"]["skipped"] and set(result["table"]) == {"fastmotive X-C"}
    assert result["table"]["fastmotive X-C"]["train_images_per_sec"] > 0
    assert result["targets"]["train_ips_vs_timm"] == {"target": ">= 1.0", "values": {}, "met": None}
