"""`fastmotive export`: per-model timm hub folders, the model card, ONNX, the earlier layout, refusals."""
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import yaml

import fastmotive as fm
from fastmotive.cli.main import main
from fastmotive.data import FirstBatches
from fastmotive.data.datasets.readers import read_dataset
from fastmotive.errors import ConfigError
from fastmotive.run.export import export_run, load_exported
from fastmotive.run.model_card import card_figures
from fastmotive.run.saved import open_run
from fastmotive.training.evaluation import evaluate

TINY = ["--epochs", "1", "--epoch-batches", "2", "--val-batches", "2", "-b", "16", "--no-progress",
        "--head-init", "default", "--condition", "streak:1"]   # default heads: no all-equal logits, no ties

# timm alone (no fastmotive): the hub folder through timm's own pipeline on the stored validation images
TIMM_EVAL = textwrap.dedent("""
    import json, sys
    import numpy as np, timm, torch
    from PIL import Image
    from timm.data import create_transform, resolve_data_config
    folder, images = sys.argv[1], np.load(sys.argv[2])
    model = timm.create_model("local-dir:" + folder, pretrained=True).eval()
    transform = create_transform(**resolve_data_config({}, model=model))
    x = torch.stack([transform(Image.fromarray(a).convert("RGB")) for a in images["x"]])
    with torch.no_grad():
        logits = torch.cat([model(x[i:i + 16]) for i in range(0, len(x), 16)])
    top1 = (logits.topk(5, dim=1).indices[:, 0] == torch.from_numpy(images["y"])).float().mean().item() * 100
    print(json.dumps({"top1": top1, "fastmotive_imported": any(m.startswith("fastmotive") for m in sys.modules)}))
""")


def _train(tmp, name, arch, *extra):
    assert main(["train", "--arch", arch, *TINY, *extra, "--output", str(tmp), "--experiment", name]) == 0
    return tmp / name


@pytest.fixture(scope="module")
def eff_run(tmp_path_factory):
    torch.set_num_threads(1)
    run = _train(tmp_path_factory.mktemp("eff"), "e", "efficientnet_b0:b1", "--img-size", "32")
    assert main(["export", str(run)]) == 0
    return run


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory):
    torch.set_num_threads(1)
    run = _train(tmp_path_factory.mktemp("res"), "r", "resnet20:resnet32")
    assert main(["export", str(run), "--onnx"]) == 0
    return run


def _validation_images(run, tmp_path):
    """The images the run evaluated (its --val-batches budget of the stored validation split), HWC uint8."""
    config = open_run(run).config
    val = read_dataset(config.dataset).val
    n = config.val_batches * config.batch_size
    x = val.images[:n]
    x = np.repeat(x, 3, axis=1) if x.shape[1] == 1 else x
    path = tmp_path / "val.npz"
    np.savez(path, x=x.transpose(0, 2, 3, 1), y=val.labels[:n])
    return path


def test_timm_loads_the_folder_and_its_pipeline_reproduces_the_reported_top1(eff_run, tmp_path):
    metrics = json.loads((eff_run / "metrics.json").read_text())
    images = _validation_images(eff_run, tmp_path)
    script = tmp_path / "timm_eval.py"
    script.write_text(TIMM_EVAL)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for which in ("base", "motivated"):
        folder = eff_run / "export" / which
        config = json.loads((folder / "config.json").read_text())
        assert config["architecture"] == f"efficientnet_b{0 if which == 'base' else 1}"
        assert config["pretrained_cfg"]["input_size"] == [3, 32, 32]
        proc = subprocess.run([sys.executable, str(script), str(folder), str(images)], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=300)
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert not result["fastmotive_imported"]
        assert result["top1"] == pytest.approx(metrics[f"{which}_top1"], abs=1e-9)
        for name in ("model.safetensors", "config.json", "README.md"):
            assert stat.S_IMODE((folder / name).stat().st_mode) == 0o644


def test_the_model_card_states_the_runs_figures(eff_run):
    metrics = json.loads((eff_run / "metrics.json").read_text())
    for which in ("base", "motivated"):
        card = (eff_run / "export" / which / "README.md").read_text()
        _, meta, body = card.split("---\n", 2)
        meta = yaml.safe_load(meta)
        assert meta["library_name"] == "timm" and "motivation-aware-training" in meta["tags"]
        assert meta["datasets"] == ["digits"]
        values = {m["name"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
        calibration = json.loads((eff_run / "export" / which / "config.json").read_text())["fastmotive"]["bn_calibration"]
        figures = card_figures(metrics, which, calibration)
        assert values == {"top-1 accuracy": metrics[f"{which}_top1"], "top-5 accuracy": metrics[f"{which}_top5"]}
        assert figures["top1"] == metrics[f"{which}_top1"]
        for key in (f"{which}_top1", f"{which}_top5", f"{which}_top1_raw", f"{which}_top5_raw"):
            assert f"{metrics[key]:.2f}" in body
        assert f"calibration sample {metrics['bn_calibration_images']} training images" in body
        assert f"{metrics[f'{which}_flops']:,} FLOPs per image" in body
        assert f"{100 * metrics['motivated_fraction']:.2f} % of {metrics['steps']} steps" in body
        assert f"{metrics['switches']} switches" in body and f"{metrics['images_per_sec']:.1f} images/s" in body
        args = yaml.safe_load((eff_run / "args.yaml").read_text())
        assert f"`{args['git_commit']}`" in body
        assert "| `img_size` | `32` | `None` |" in body and "| `batch_size` | `16` | `32` |" in body
        partner = "efficientnet_b1" if which == "base" else "efficientnet_b0"
        assert f"`{partner}`" in body and 'upload_folder(repo_id="ORG/NAME"' in body


def test_cifar_resnet_loads_through_fastmotive_and_onnx_agrees(resnet_run):
    import timm
    metrics = json.loads((resnet_run / "metrics.json").read_text())
    run = open_run(resnet_run)
    _, val, _ = run.open_data()
    val = FirstBatches(val, run.config.val_batches)
    for which in ("base", "motivated"):
        folder = resnet_run / "export" / which
        model = load_exported(folder).eval()
        assert type(model).__module__.startswith("fastmotive")
        assert evaluate(model, val)[1] == metrics[f"{which}_top1"]
        config = json.loads((folder / "config.json").read_text())
        assert not config["fastmotive"]["timm_loadable"]
        assert "library_name: pytorch" in (folder / "README.md").read_text()
        with pytest.raises(RuntimeError, match="resnet"):
            timm.create_model(f"local-dir:{folder}", pretrained=True)
        report = json.loads((folder / "onnx.json").read_text())
        assert report["validation_images"] == 32 and report["top1_agreement"] == 100.0
        assert report["max_abs_logit_diff"] < 1e-3 and report["top1_onnxruntime"] == report["top1_torch"]
        assert config["fastmotive"]["onnx"] == report
        assert stat.S_IMODE((folder / "model.onnx").stat().st_mode) == 0o644
        import onnxruntime
        session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        x = torch.randn(3, 3, 32, 32)   # another batch size: the batch dimension is dynamic
        with torch.no_grad():
            ref = model(x)
        assert torch.allclose(torch.from_numpy(session.run(None, {"input": x.numpy()})[0]), ref, atol=1e-3)


def test_the_earlier_layout_still_loads(tmp_path):
    from safetensors.torch import save_file
    torch.manual_seed(0)
    kwargs = {"num_classes": 10, "img_size": 32}
    pair = fm.MotivatedPair.from_arch("resnet20:resnet32", **kwargs)
    config = {"arch": "resnet20:resnet32", "family": pair.family.name, "run": "somewhere", "step": 0,
              "stopped_in_episode": False, "bn_calibration": {"images": 0}}
    for which, name in zip(pair.members, pair.names):   # as export_run wrote before per-model folders
        save_file({k: v.contiguous().clone() for k, v in pair.model(which).state_dict().items()},
                  tmp_path / f"{which}.safetensors")
        config[which] = {"model": name, "file": f"{which}.safetensors", "kwargs": kwargs}
    (tmp_path / "config.json").write_text(json.dumps(config))
    x = torch.randn(2, 3, 32, 32)
    for which in ("base", "motivated"):
        with torch.no_grad():
            assert torch.equal(load_exported(tmp_path, which).eval()(x), pair.model(which).eval()(x))
    assert type(load_exported(tmp_path)) is type(pair.base)   # which defaults to base


def test_export_refuses_another_runs_directory_and_export(resnet_run, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(resnet_run, other, ignore=shutil.ignore_patterns("export"))   # another run, same content
    with pytest.raises(ConfigError, match=f"{other}.* another run's directory"):
        export_run(resnet_run, other / "sub" / "x", bn_calibrate=0)
    assert main(["export", str(resnet_run), "--output", str(other), "--bn-calibrate", "0"]) == 2
    assert f"{other} is another run's directory" in capsys.readouterr().err
    shared = tmp_path / "shared"
    export_run(other, shared, bn_calibrate=0)
    with pytest.raises(ConfigError, match="holds the export of another run"):
        export_run(resnet_run, shared, bn_calibrate=0)
    export_run(other, shared, bn_calibrate=0)   # the same run again: fine
    for which in ("base", "motivated"):
        assert not (shared / which / "model.onnx").exists()   # no --onnx this time
        assert load_exported(shared, which) is not None
    with pytest.raises(ValueError, match="unknown model"):
        load_exported(shared, "large")


def test_a_vit_trained_at_32_px_loads_at_32_px_through_timm_alone(tmp_path):
    """model_args carry the ViT's img_size: timm builds it at 32 px (no silent resampling of pos_embed to
    14x14), and timm's own pipeline reproduces the run's figure."""
    torch.set_num_threads(1)
    run = _train(tmp_path, "v", "vit_tiny_patch16_224:vit_small_patch16_224")
    assert main(["export", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    images = _validation_images(run, tmp_path)
    script = tmp_path / "timm_eval.py"
    script.write_text(TIMM_EVAL)
    for which in ("base", "motivated"):
        folder = run / "export" / which
        assert json.loads((folder / "config.json").read_text())["model_args"]["img_size"] == 32
        proc = subprocess.run([sys.executable, str(script), str(folder), str(images)], capture_output=True,
                              text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), cwd=tmp_path, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout.strip().splitlines()[-1])["top1"] == pytest.approx(metrics[f"{which}_top1"])


TIMM_FOLDER_EVAL = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import timm, torch
    from PIL import Image
    from timm.data import create_transform, resolve_data_config
    folder, val = sys.argv[1], Path(sys.argv[2])
    model = timm.create_model("local-dir:" + folder, pretrained=True).eval()
    transform = create_transform(**resolve_data_config({}, model=model))
    classes = sorted(p.name for p in val.iterdir())
    files = [(f, classes.index(f.parent.name)) for f in sorted(val.glob("*/*"))]
    x = torch.stack([transform(Image.open(f).convert("RGB")) for f, _ in files])
    with torch.no_grad():
        top = model(x).argmax(1)
    print(json.dumps({"top1": (top == torch.tensor([y for _, y in files])).float().mean().item() * 100}))
""")


def test_an_image_folder_run_is_preprocessed_by_timm_as_fastmotive_evaluated_it(tmp_path):
    """Folders: timm's resize of the shorter side (floor(S / 0.875)) and centre crop, the run's mean and std.
    The run evaluates in timm's contiguous layout, as the script below does: this tiny run's motivated model has
    logits near 1e20, where the two layouts' rounding alone moves a prediction."""
    from fastmotive.testing import write_image_folder
    torch.set_num_threads(1)
    data = write_image_folder(tmp_path / "data", classes=3, per_class=8, val_per_class=6, size=(72, 60))
    run = _train(tmp_path, "f", "efficientnet_b0:b1", "--dataset", "folder", "--data-dir", str(data),
                 "--img-size", "32", "--loader", "torch", "-j", "0", "--val-batches", "9", "--channels-last", "off")
    assert main(["export", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    script = tmp_path / "timm_folder_eval.py"
    script.write_text(TIMM_FOLDER_EVAL)
    for which in ("base", "motivated"):
        folder = run / "export" / which
        assert json.loads((folder / "config.json").read_text())["pretrained_cfg"]["crop_pct"] == 0.875
        proc = subprocess.run([sys.executable, str(script), str(folder), str(data / "val")], capture_output=True,
                              text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), cwd=tmp_path, timeout=300)
        assert proc.returncode == 0, proc.stderr
        top1 = json.loads(proc.stdout.strip().splitlines()[-1])["top1"]
        assert abs(top1 - metrics[f"{which}_top1"]) <= 100 / 18 + 1e-9   # at most one of 18 images differs
