"""Switch latency per backend against the copy floor, and the host's share of a switch.

Per backend: wall time per switch (synchronised), and on CUDA the device time (CUDA events around the
switch) and the host time (the call's own time, launch included, unsynchronised), beside the copy floor
measured in the same run. Per pair: the host time of `switch_to` with the copy itself stubbed, with the arena
guard as now (first and every 64th switch) and with the guard on every switch (the behaviour before),
interleaved.

One switch moves the parameters, two AdamW state rows (exp_avg, exp_avg_sq) and the BN buffers of
every mapped element: bytes = 2 (read + write) x (mapped param elements x 3 rows + buffer columns) x 4 B.
The floor is one device copy of the same number of bytes (a single contiguous `copy_`).

Usage:  python benchmarks/switch_latency.py [--json PATH] [--pairs ...] [--num-classes 1000] [--repeats 30]
Last result: see docs/benchmarks.md (machine, date and commit recorded there).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time

import torch

import fastmotive as fm

PAIRS = {
    "efficientnet_b0:b2": {},
    "resnet18:34": {},
    "vit_tiny_patch16_224:vit_small_patch16_224": {"img_size": 32},
}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_us(fn, device, repeats: int, warmup: int = 3) -> list[float]:
    """Wall time of `fn` in microseconds, one sample per call, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        samples.append((time.perf_counter() - start) * 1e6)
    return samples


def cuda_split(fn, repeats: int) -> tuple[float, float]:
    """Median device time (CUDA events around `fn`) and host time (`fn`'s own wall time, unsynchronised)."""
    device_us, host_us = [], []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        t0 = time.perf_counter()
        fn()
        host_us.append((time.perf_counter() - t0) * 1e6)
        end.record()
        end.synchronize()
        device_us.append(start.elapsed_time(end) * 1e3)
    return statistics.median(device_us), statistics.median(host_us)


def host_overhead(spec: str, num_classes: int, repeats: int = 2000) -> dict:
    """`switch_to`'s host time with the copy stubbed, on the CPU: the guard as now and on every switch."""
    pair = fm.MotivatedPair.from_arch(spec, num_classes=num_classes, **PAIRS.get(spec, {}))
    pair._switcher = lambda *args, **kwargs: None   # the copy itself, stubbed
    targets = itertools.cycle(["motivated", "base"])
    now, every = [], []
    for _ in range(repeats):   # interleaved: the machine's noise falls on both alike
        t0 = time.perf_counter_ns()
        pair.switch_to(next(targets))
        now.append((time.perf_counter_ns() - t0) / 1e3)
        t0 = time.perf_counter_ns()
        pair.arena.check_bound(full=False)
        pair.switch_to(next(targets))
        every.append((time.perf_counter_ns() - t0) / 1e3)
    return {"pair": spec, "host_us_stubbed": round(statistics.median(now), 2),
            "host_us_stubbed_guard_every_switch": round(statistics.median(every), 2)}


def quantiles(samples):
    q = statistics.quantiles(samples, n=10)
    return q[1], statistics.median(samples), q[7]


def bench_pair(spec: str, device: torch.device, backends, repeats: int, num_classes: int) -> list[dict]:
    pair = fm.MotivatedPair.from_arch(spec, num_classes=num_classes, **PAIRS.get(spec, {})).to(device)
    pair.set_state_rows(2)   # AdamW: exp_avg, exp_avg_sq
    nbytes = pair.plan.bytes_moved(state_rows=2, itemsize=pair.arena.data.element_size())
    src = torch.empty(nbytes // 2, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    floor = statistics.median(time_us(lambda: dst.copy_(src), device, repeats))
    records = []
    for backend in backends:
        targets = itertools.cycle(["motivated", "base"])

        def one_switch(backend=backend, targets=targets):   # alternates up and down
            pair.switch_to(next(targets), backend=backend)

        reps = repeats if backend != "naive" else max(5, repeats // 3)
        p20, median, p80 = quantiles(time_us(one_switch, device, reps))
        record = {"pair": spec, "backend": backend, "device": str(device), "median_us": round(median, 1),
                  "p20_us": round(p20, 1), "p80_us": round(p80, 1), "bytes": nbytes, "runs": len(pair.plan.runs),
                  "gb_per_s": round(nbytes / median / 1e3, 2), "copy_floor_us": round(floor, 1),
                  "ratio_to_floor": round(median / floor, 2)}
        if device.type == "cuda":
            device_us, host_us = cuda_split(one_switch, reps)
            record.update(device_us=round(device_us, 1), host_us=round(host_us, 1),
                          device_ratio_to_floor=round(device_us / floor, 2))
        records.append(record)
    pair.switch_to("base")
    return records


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS))
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backends", nargs="+", default=None, help="default: triton (CUDA only), torch, naive")
    parser.add_argument("--json", help="write the records to this path")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    backends = args.backends or (["triton", "torch", "naive"] if device.type == "cuda" else ["torch", "naive"])
    if "triton" in backends and device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("the triton backend needs CUDA (or TRITON_INTERPRET=1, far too slow to time)")
    records, host = [], []

    def save():   # after each figure: a run stopped at its time limit keeps what it measured
        if args.json:
            os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
            with open(args.json + ".tmp", "w") as f:
                json.dump({"switches": records, "host_overhead": host}, f, indent=1)
            os.replace(args.json + ".tmp", args.json)
    for spec in args.pairs:
        records += bench_pair(spec, device, backends, args.repeats, args.num_classes)
        save()
    for spec in args.pairs:
        host.append(host_overhead(spec, args.num_classes))
        save()
    header = f"{'pair':44} {'backend':7} {'median us':>10} {'p20-p80 us':>17} {'MB':>7} {'GB/s':>6} {'x floor':>7} {'x naive':>8}"
    print(f"device: {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else os.cpu_count()} "
          f"{'' if device.type == 'cuda' else 'CPU cores'}), torch {torch.__version__}")
    print(header)
    for r in records:
        naive = next(x["median_us"] for x in records if x["pair"] == r["pair"] and x["backend"] == "naive") \
            if "naive" in backends else float("nan")
        print(f"{r['pair']:44} {r['backend']:7} {r['median_us']:10.1f} {r['p20_us']:8.1f}-{r['p80_us']:<8.1f} "
              f"{r['bytes'] / 1e6:7.1f} {r['gb_per_s']:6.2f} {r['ratio_to_floor']:7.2f} {naive / r['median_us']:8.1f}")
        if "device_us" in r:
            print(f"{'':44} {'':7} device {r['device_us']:.1f} us ({r['device_ratio_to_floor']:.2f} x floor), "
                  f"host {r['host_us']:.1f} us")
    for h in host:
        print(f"{h['pair']:44} switch_to host time, copy stubbed: {h['host_us_stubbed']:.2f} us "
              f"(guard on every switch: {h['host_us_stubbed_guard_every_switch']:.2f} us)")
    return records


if __name__ == "__main__":
    main()
