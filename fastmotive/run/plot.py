"""plot.png: the paper's Fig. 2 for one run (training loss with motivated spans shaded, validation accuracy)."""
from __future__ import annotations

import math
from pathlib import Path


def plot_run(steps: list[dict], epochs: list[dict], path: Path) -> None:
    """Training loss per step with motivated spans shaded, and both models' val accuracy per epoch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4))
    ax_loss.plot([s["step"] for s in steps], [s["loss"] for s in steps], lw=0.8, color="black")
    # the motivated episodes as [first step - 0.5, last step + 0.5] spans, NaN-separated: one artist for all,
    # where one axvspan per episode takes minutes to draw on long runs
    xs, top, start = [], [], None
    for s in steps + [{"active": "base", "step": steps[-1]["step"] + 1}]:
        if s["active"] == "motivated" and start is None:
            start = s["step"]
        elif s["active"] != "motivated" and start is not None:
            xs += [start - 0.5, s["step"] - 0.5, math.nan]
            top += [1, 1, math.nan]
            start = None
    if xs:
        ax_loss.fill_between(xs, 0, top, transform=ax_loss.get_xaxis_transform(), color="tab:orange",
                             alpha=0.3, lw=0)
    ax_loss.set(xlabel="step", ylabel="training loss",
                title="loss (shaded: motivated model active)" if xs else "training loss")
    if any(e.get("base_top1") is not None for e in epochs):
        for name, marker, color in (("base", "o", "tab:blue"), ("motivated", "s", "tab:orange")):
            for suffix, style, extra in (("", "-", {}), ("_raw", "--", {"alpha": 0.5, "mfc": "none"})):
                # epochs skipped by --eval-interval and raw figures (the last epoch's only) have no point
                points = [(e["epoch"] + 1, e[f"{name}_top1{suffix}"]) for e in epochs
                          if e.get(f"{name}_top1{suffix}") is not None]
                if points:   # a single-model run: the base alone
                    ax_acc.plot(*zip(*points), marker + style, color=color, **extra,
                                label=name + (" (raw BN statistics)" if suffix else ""))
        ax_acc.legend()
    ax_acc.set(xlabel="epoch", ylabel="val top-1 (%)", title="validation accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
