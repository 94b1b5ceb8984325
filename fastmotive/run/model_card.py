"""The model card (``README.md``) of one exported model, written from the run's own records: args.yaml,
metrics.json, summary.csv and the export's calibration record. Hugging Face Hub conventions: a YAML metadata
block (``library_name``, ``tags``, ``datasets``, ``metrics``, ``model-index``), then the text. Nothing in it is
typed by hand; `card_figures` gives the figures it states, for a test to hold against metrics.json."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

from fastmotive.config import settings
from fastmotive.config.train_config import TrainConfig
from fastmotive.run.directory import RunDir

TAGS = ["image-classification", "timm", "fastmotive", "motivation-aware-training"]
BOOKKEEPING = {"output", "experiment", "resume", "no_progress", "log_interval"}   # not part of the recipe


def card_figures(metrics: dict, which: str, calibration: dict) -> dict:
    """top-1/top-5 of `which` as the card states them, for the statistics the export carries: its best
    evaluation's (``--best``), the raw ones (calibration off for a model the run calibrated), else those it was
    evaluated with (metrics.json)."""
    if "best" in calibration:
        best = calibration["best"][which]
        return {"top1": best["top1"], "top5": best["top5"], "statistics": f"its best evaluation's (epoch "
                f"{best['epoch']})", "source": f"best_{which}.safetensors"}
    source = "metrics.json of the run, its last evaluation"
    if calibration["images"] == 0 and metrics.get(f"{which}_bn_calibrated", 1):   # older runs: calibrated
        return {"top1": metrics[f"{which}_top1_raw"], "top5": metrics[f"{which}_top5_raw"], "statistics": "raw",
                "source": source}
    statistics = "calibrated" if which in calibration.get("models", ()) else "its own running"
    return {"top1": metrics[f"{which}_top1"], "top5": metrics[f"{which}_top5"], "statistics": statistics,
            "source": source}


def write_model_card(folder: Path, run, which: str, config: dict, info) -> Path:
    """Write ``folder/README.md`` for member `which` of the saved run `run` (its hub `config`)."""
    args = RunDir(run.path).read_args()
    metrics_path = run.path / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    summary = _summary(run.path / "summary.csv")
    own = config["fastmotive"]
    calibration = own["bn_calibration"]
    name, partner, dataset = config["architecture"], own["partner"], info.name
    evaluated = _evaluated(run.config, info)
    figures = card_figures(metrics, which, calibration) \
        if metrics.get(f"{which}_top1") is not None else None
    meta = {"library_name": "timm" if own["timm_loadable"] else "pytorch", "tags": list(TAGS),
            "datasets": [dataset], "metrics": ["accuracy"]}
    if figures:
        meta["model-index"] = [{"name": f"{name}-{dataset}-fastmotive-{which}", "results": [{
            "task": {"type": "image-classification", "name": "Image Classification"},
            "dataset": {"name": dataset, "type": dataset, "split": "validation"},
            "metrics": [{"type": "accuracy", "name": "top-1 accuracy", "value": figures["top1"]},
                        {"type": "top-5-accuracy", "name": "top-5 accuracy", "value": figures["top5"]}]}]}]
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", "",
             f"# {name}, the {which} model of a fastmotive run on {dataset}", ""]
    params = sum(p.numel() for p in run.pair.model(which).parameters())
    other = "motivated" if which == "base" else "base"
    lines += ["## Model", "",
              f"- Architecture: `{name}` ({own['family']} family, {params:,} parameters), "
              f"{config['num_classes']} classes, input {info.img_size}x{info.img_size}.",
              (f"- Partner: trained in one run with `{partner}`, the {other} model of the pair `{own['arch']}` "
               "(motivation-aware training: the motivated model holds the base's tensors as slices and trains "
               "while the motivation condition holds)." if partner else
               "- Trained alone (a single-model run, no partner)."),
              f"- Dataset: {dataset}: {info.train_size} training images, {info.val_size} validation images; "
              f"the figures below are on {evaluated}.", ""]
    lines += ["## Training recipe", "", _recipe_line(args), ""]
    changed = _non_default(args)
    if changed:
        lines += ["| setting | value | default |", "|---|---|---|"]
        lines += [f"| `{k}` | `{v}` | `{d}` |" for k, v, d in changed]
    else:
        lines += ["Every setting at fastmotive's default."]
    lines += ["", "## Results", ""]
    if figures:
        shipped = "calibrated" if metrics.get(f"{which}_bn_calibrated", 1) else "its own running statistics"
        lines += ["| BatchNorm statistics | top-1 | top-5 |", "|---|---|---|",
                  f"| as evaluated ({shipped}; calibration sample {metrics.get('bn_calibration_images') or 0} "
                  f"training images) | {_pct(metrics.get(f'{which}_top1'))} | {_pct(metrics.get(f'{which}_top5'))} |",
                  f"| raw (the checkpoint's) | {_pct(metrics.get(f'{which}_top1_raw'))} | "
                  f"{_pct(metrics.get(f'{which}_top5_raw'))} |", "",
                  f"This export carries {figures['statistics']} statistics (`model.safetensors`; calibration "
                  f"record: {calibration['images']} training images, seed {calibration.get('seed', '-')}), so it "
                  f"scores {figures['top1']:.2f} % top-1 and {figures['top5']:.2f} % top-5 ({figures['source']})."]
    else:
        lines += ["No accuracy in the run's records (it stopped before its first evaluation)."]
    lines += _run_lines(metrics, summary, which, args, own)
    lines += _usage_lines(name, own, folder, config)
    path = folder / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _run_lines(metrics: dict, summary: list[dict], which: str, args: dict, own: dict) -> list[str]:
    lines = [""]
    if metrics.get("steps") is not None and metrics.get("images_per_sec") is not None:
        flops = metrics.get(f"{which}_flops")
        flops_text = f"{flops:,} FLOPs per image ({metrics.get('flops_convention', '')})" if flops else \
            f"FLOPs unavailable: {metrics.get('flops_unavailable', 'not recorded')}"
        lines += [f"- Motivated share of steps: {100 * (metrics.get('motivated_fraction') or 0):.2f} % of {metrics['steps']} "
                  f"steps, {metrics['switches']} switches, {metrics['epochs']} epochs.",
                  f"- {flops_text}.",
                  f"- Training: {metrics['images_per_sec']:.1f} images/s, wall time {metrics['wall_s']:.1f} s."]
    key = f"{which}_top1"
    rows = [r for r in summary if r.get(key)]
    if rows:
        best = max(rows, key=lambda r: float(r[key]))
        lines.append(f"- summary.csv: {len(summary)} epochs; best {which} top-1 {float(best[key]):.2f} at "
                         f"epoch {best['epoch']}.")
    lines += [f"- fastmotive {_version()}, git commit `{args.get('git_commit') or 'unknown'}`; run step "
              f"{own['step']}" + (" (stopped inside a motivated episode: the base is the motivated model's "
                                  "slices)" if own["stopped_in_episode"] else "") + "."]
    return lines


def _usage_lines(name: str, own: dict, folder: Path, config: dict) -> list[str]:
    lines = ["", "## How to load", ""]
    if own["timm_loadable"]:
        lines += ["```python", "import timm", "from PIL import Image",
                  "from timm.data import resolve_data_config, create_transform",
                  f'model = timm.create_model("local-dir:{folder.name}", pretrained=True).eval()   '
                  f'# or "hf-hub:ORG/NAME" once uploaded',
                  "transform = create_transform(**resolve_data_config({}, model=model))",
                  "logits = model(transform(Image.open(PATH).convert('RGB'))[None])", "```", "",
                  f"Input to timm's pipeline: {own['preprocessing']}.", ""]
    else:
        lines += [f"timm has no `{name}`: `timm.create_model(\"local-dir:...\")` fails. Load it with fastmotive:",
                  "", "```python", "from fastmotive.run.export import load_exported",
                  f'model = load_exported("{folder.name}").eval()', "```", "",
                  f"Preprocessing (as config.json's pretrained_cfg): {own['preprocessing']}.", ""]
    args = ", ".join(f"{k}={v!r}" for k, v in {"num_classes": config["num_classes"], **config["model_args"]}.items())
    lines += ["Plain torch (weights only, the module built by its library):", "", "```python",
              "from safetensors.torch import load_file",
              ("import timm" if own["timm_loadable"] else "from fastmotive.families.cifar_resnet import cifar_resnet"),
              (f'model = timm.create_model("{name}", {args})' if own["timm_loadable"] else
               f"model = cifar_resnet({name!r}, {args})"),
              'model.load_state_dict(load_file("model.safetensors")); model.eval()', "```", ""]
    lines += ["## Upload to the Hugging Face Hub", "", "```python", "from huggingface_hub import upload_folder",
              f'upload_folder(repo_id="ORG/NAME", folder_path="RUN/export/{folder.name}")', "```", ""]
    return lines


def _recipe_line(args: dict) -> str:
    from fastmotive.config.recipes import list_recipes
    matches = []
    for recipe in list_recipes():
        values = settings.read_yaml(recipe.path)
        if values and all(_same(args.get(k), v) for k, v in values.items()):
            matches.append(recipe.name)
    if matches:
        return (f"args.yaml does not record `-c`; its settings include every value of the shipped recipe "
                f"`{matches[0]}` (`fastmotive train -c {matches[0]}`). Settings that differ from fastmotive's "
                "defaults:")
    return "No shipped recipe (`-c`) matches the run's settings. Settings that differ from fastmotive's defaults:"


def _non_default(args: dict) -> list[tuple[str, object, object]]:
    defaults = settings.record(TrainConfig())
    return [(k, args.get(k), d) for k, d in defaults.items()
            if k not in BOOKKEEPING and k in args and not _same(args.get(k), d)]


def _pct(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _same(a, b) -> bool:
    return (list(a) if isinstance(a, tuple) else a) == (list(b) if isinstance(b, tuple) else b)


def _evaluated(config, info) -> str:
    if config.val_batches:
        n = min(info.val_size, config.val_batches * config.batch_size)
        return (f"the first {n} validation images (`--val-batches {config.val_batches}` x `-b "
                f"{config.batch_size}`, in the split's stored order)")
    return f"the whole validation split ({info.val_size} images)"


def _summary(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("fastmotive")
    except PackageNotFoundError:
        return "unknown"
