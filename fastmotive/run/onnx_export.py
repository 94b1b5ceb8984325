"""``fastmotive export RUN --onnx``: one exported model as ``model.onnx`` (torch's dynamo-based ONNX exporter,
dynamic batch size), checked with ``onnx.checker`` and compared with PyTorch on the run's validation images
through onnxruntime; the comparison goes to ``onnx.json`` (needs ``pip install fastmotive[onnx]``)."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import torch

from fastmotive.errors import FastmotiveError

OPSET = 18


def export_onnx(model: torch.nn.Module, name: str, folder: Path, val) -> dict:
    """Write ``folder/model.onnx`` for `model` (member `name`), compare it with PyTorch on the batches of the
    epoch loader `val`, write ``folder/onnx.json`` and print the comparison; the comparison.

    Raises:
        FastmotiveError: onnx or onnxruntime missing, or the export failed (naming the model and, when the
            exporter says which, the operator).
    """
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise FastmotiveError(f"export --onnx needs onnx, onnxruntime and onnxscript ({exc}); "
                              "pip install 'fastmotive[onnx]'") from None
    model = copy.deepcopy(model).cpu().float().eval()
    path = folder / "model.onnx"
    first = next(iter(val.epoch_batches(0)))[0][:2].cpu()
    try:
        torch.onnx.export(model, (first,), path, dynamo=True, opset_version=OPSET, input_names=["input"],
                          output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                          external_data=False, verbose=False)
        onnx.checker.check_model(str(path))
    except Exception as exc:   # the exporter raises many types; the message is what helps
        path.unlink(missing_ok=True)
        op = re.search(r"(aten[:.]+[A-Za-z_0-9.]+|torch\.ops\.[A-Za-z_0-9.]+)", str(exc))
        where = f" at operator {op.group(1)}" if op else ""
        raise FastmotiveError(f"export --onnx: {name} could not be exported to ONNX{where}: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = agree = correct_torch = correct_onnx = 0
    max_diff = scale = 0.0
    with torch.no_grad():
        for x, y in val.epoch_batches(0):
            x, y = x.cpu().float(), y.cpu()
            ref = model(x)
            got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
            max_diff = max(max_diff, (got - ref).abs().max().item())
            scale = max(scale, ref.abs().max().item())
            agree += (got.argmax(1) == ref.argmax(1)).sum().item()
            correct_torch += (ref.argmax(1) == y).sum().item()
            correct_onnx += (got.argmax(1) == y).sum().item()
            images += len(y)
    report = {"file": path.name, "exporter": "torch.onnx.export(dynamo=True)", "opset": OPSET,
              "torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
              "dynamic_batch": True, "input": "input [batch, 3, H, W], normalized as config.json's pretrained_cfg",
              "validation_images": images, "max_abs_logit_diff": max_diff, "max_abs_logit": scale,
              "top1_agreement": 100.0 * agree / max(images, 1),
              "top1_torch": 100.0 * correct_torch / max(images, 1),
              "top1_onnxruntime": 100.0 * correct_onnx / max(images, 1)}
    (folder / "onnx.json").write_text(json.dumps(report, indent=1))
    print(f"{folder}: onnx {name} on {images} validation images: max |logit diff| {max_diff:.3g} (largest |logit| {scale:.3g}), top-1 agreement "
          f"{report['top1_agreement']:.2f}% (torch {report['top1_torch']:.2f}, onnxruntime "
          f"{report['top1_onnxruntime']:.2f})")
    return report
