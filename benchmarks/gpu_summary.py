"""One summary table of a `benchmarks/gpu_check.sh` run, from the JSON files it wrote into one folder.

    python benchmarks/gpu_summary.py OUTDIR        # prints the table, writes OUTDIR/summary.json

Targets (issue 5) checked here: the Triton switch within 1.5x of the device copy floor and at least 50x
faster than naive (efficientnet_b0:b2); the CUDA-graph (`reduce-overhead`) base-alone training at least 2x
the images/sec of eager plain timm training at 32 px; base-alone eager at least 0.97x the plain loop; the
alternating run at most 1.01x the sum of its steps; no dynamo recompilation after warm-up.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def load(folder: Path, name: str):
    path = folder / name
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def rows_of(folder: Path) -> tuple[list[tuple[str, str, str, str]], dict]:
    """(what, value, target, verdict) rows and the machine-readable summary."""
    rows, summary = [], {"steps": {}, "targets": []}

    def target(what: str, value: float | None, want: str, ok: bool | None, fmt: str = "{:.3f}") -> None:
        shown = "-" if value is None else fmt.format(value)
        verdict = "n/a" if ok is None else ("met" if ok else "MISSED")
        rows.append((what, shown, want, verdict))
        summary["targets"].append({"target": what, "value": value, "want": want, "met": ok})

    status = load(folder, "steps.json") or {}
    summary["steps"] = status
    for step, s in status.items():
        s = s if isinstance(s, dict) else {"rc": s}   # older files: {step: exit code}
        rc, shown = s["rc"], f"{s.get('seconds', 0):.0f} s"
        verdict = "" if rc == 0 else "SKIPPED" if rc == 125 else "STOPPED" if rc == 124 else "FAILED"
        rows.append((f"step: {step}", f"ok, {shown}" if rc == 0 else f"exit {rc}, {shown}", "",
                     f"{verdict} {s.get('note', '')}".strip()))

    latency = load(folder, "switch_latency.json") or {}
    switch = latency.get("switches", []) if isinstance(latency, dict) else latency   # older files: a list
    by = {(r["pair"], r["backend"]): r for r in switch}
    for pair in dict.fromkeys(r["pair"] for r in switch):
        tri, naive = by.get((pair, "triton")), by.get((pair, "naive"))
        if tri:
            rows.append((f"switch {pair} triton", f"{tri['median_us']:.1f} us, {tri['gb_per_s']:.0f} GB/s",
                         f"floor {tri['copy_floor_us']:.1f} us", ""))
            strict = pair == "efficientnet_b0:b2"
            target(f"switch {pair}: triton / copy floor", tri["ratio_to_floor"], "<= 1.5",
                   tri["ratio_to_floor"] <= 1.5 if strict else None)
            if "device_us" in tri:   # the device's share against the floor, and the host's
                target(f"switch {pair}: triton device time / copy floor", tri["device_ratio_to_floor"], "<= 1.5",
                       tri["device_ratio_to_floor"] <= 1.5 if strict else None)
                target(f"switch {pair}: triton host time (us)", tri["host_us"], "<= 20",
                       tri["host_us"] <= 20 if strict else None, "{:.1f}")
            if naive:
                speedup = naive["median_us"] / tri["median_us"]
                target(f"switch {pair}: naive / triton", speedup, ">= 50", speedup >= 50 if strict else None, "{:.1f}")

    for record in (load(folder, "bench_optim.json") or {}).get("benchmarks", []):
        rows.append((record["name"].replace("test_optimizer_step", "optimizer step"),
                     f"{record['stats']['median'] * 1e3:.3f} ms", "", ""))

    over = load(folder, "overhead.json") or {}
    training = over.get("training", {})
    for name, v in training.get("variants", {}).items():
        rows.append((f"train {name}", f"{v['images_per_sec']['median']:.0f} img/s", "", ""))
    if "train_ratio" in training:
        target("base-alone eager / plain loop (img/s)", training["train_ratio"]["total"], ">= 0.97",
               training["train_ratio"]["total"] >= 0.97)
    if "alternating_ratio" in training:
        alt = training["alternating_ratio"]["median"]
        target("alternating run wall / sum of its steps", alt, "<= 1.01", alt <= 1.01)
    key = "compiled_speedup[reduce-overhead]"
    if key in training:
        target("reduce-overhead base / eager plain loop (img/s)", training[key]["total"], ">= 2",
               training[key]["total"] >= 2)
    else:
        target("reduce-overhead base / eager plain loop (img/s)", None, ">= 2", None)
    graphs = training.get("dynamo_graphs")
    if graphs:
        target("dynamo graphs compiled after warm-up", graphs["recompiled_after_warmup"], "0",
               graphs["recompiled_after_warmup"] == 0, "{:d}")
    for key, error in training.get("errors", {}).items():
        rows.append((f"train {key}", "FAILED", "", error[:120]))
    sw = over.get("switch", {})
    for key, value in sw.items():
        if key.startswith("fraction_of_"):
            rows.append((f"switch / step ({key[len('fraction_of_'):]})", f"{value:.4f}", "", ""))

    for r in load(folder, "loaders.json") or []:
        rows.append((f"loader {r['loader']} {r['data']}", f"{r['images_per_sec']:.0f} img/s", "", ""))
    summary["rows"] = rows
    return rows, summary


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    folder = Path(argv[0] if argv else "benchmarks/results/gpu")
    rows, summary = rows_of(folder)
    env = load(folder, "env.json") or {}
    print(f"\n== fastmotive GPU check: {env.get('device', '?')}, torch {env.get('torch', '?')}, "
          f"triton {env.get('triton', '?')}, commit {env.get('commit', '?')}, {env.get('date', '?')}")
    for note in env.get("notes", []):
        print(f"   note: {note}")
    width = max((len(r[0]) for r in rows), default=10)
    print(f"{'check':{width}}  {'value':>28}  {'target':>14}  verdict")
    for what, value, want, verdict in rows:
        print(f"{what:{width}}  {value:>28}  {want:>14}  {verdict}")
    summary["env"] = env
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
