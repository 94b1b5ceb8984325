"""env.json for benchmarks/gpu_check.sh: the device, the versions of what the check imports, and a note for each
optional package that is missing (what is skipped without it).

    python benchmarks/gpu_env.py PATH COMMIT DEVICE
"""
import datetime
import importlib
import json
import os
import sys

import torch

OPTIONAL = {
    "nvidia.dali": "the DALI loader is skipped (carry the nvidia-dali-cuda130 wheel to include it)",
    "sklearn": "the digits CUDA loader test is skipped; everything else runs",
    "safetensors": "export is unavailable; not used here",
    "fvcore": "FLOPs are reported unavailable; training runs",
}


def main(path: str, commit: str, device: str) -> None:
    notes, versions = [], {}
    for name in ("triton", "timm", "torchvision", "numpy", "yaml", "pytest", "pytest_benchmark", "hypothesis",
                 *OPTIONAL, "rich", "matplotlib"):
        try:
            versions[name] = getattr(importlib.import_module(name), "__version__", "present")
        except Exception as e:   # noqa: BLE001
            versions[name] = None
            notes.append(f"{name} does not import ({type(e).__name__}): {OPTIONAL.get(name, 'needed by this check')}")
    import fastmotive
    env = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)",
           "torch": torch.__version__, "cuda": torch.version.cuda, "triton": versions.get("triton"),
           "commit": commit, "date": datetime.datetime.now().isoformat(timespec="seconds"), "cpus": os.cpu_count(),
           "versions": versions, "notes": notes, "fastmotive": fastmotive.__file__}
    with open(path, "w") as f:
        json.dump(env, f, indent=1)
    print(json.dumps(env, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:4])
