"""Training where fvcore is missing (the GPU image has none): the run trains, metrics.json says why it has no
FLOPs, and compare's table leaves the FLOPs columns empty with that reason."""
import json
import sys

import fastmotive.flops as flops
from fastmotive.cli.main import main
from fastmotive.experiments.report import compare_markdown
from fastmotive.experiments.stats import summarize


def hide_fvcore(monkeypatch):
    for name in [m for m in sys.modules if m == "fvcore" or m.startswith("fvcore.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fvcore", None)   # `import fvcore...` now raises ImportError
    monkeypatch.setitem(sys.modules, "fvcore.nn", None)


def test_fvcore_missing_is_reported_not_fatal(monkeypatch, tmp_path):
    hide_fvcore(monkeypatch)
    assert flops.fvcore_missing() is not None
    common = ["--epochs", "1", "--epoch-batches", "2", "--val-batches", "1", "-b", "16", "--no-progress",
              "--output", str(tmp_path)]
    assert main(["compare", "--arch", "resnet20:resnet32", "--seeds", "1", *common]) == 0
    runs = sorted(p for p in tmp_path.rglob("metrics.json"))
    assert len(runs) == 3
    for path in runs:
        metrics = json.loads(path.read_text())
        assert "fvcore" in metrics["flops_unavailable"] and "base_flops" not in metrics
    folder = runs[0].parent.parent
    summary = summarize(folder, [0])
    assert "fvcore" in summary["flops_unavailable"]
    assert "FLOPs unavailable: fvcore" in compare_markdown(folder.name, summary)


def test_fvcore_present_counts_flops():
    assert flops.fvcore_missing() is None   # the dev install has it: the test above really hid it
