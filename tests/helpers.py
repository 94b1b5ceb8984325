"""Small pairs and step functions shared by the trainer, compile and recipe tests; the benchmarks as modules."""
import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import fastmotive as fm
from fastmotive.training.step import StepResult


class Net(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, 4)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.conv(x))).mean((2, 3)))


def make_pair(seed=0):
    torch.manual_seed(seed)
    return fm.MotivatedPair(Net(4), Net(6))


def batches(n=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 3, 6, 6, generator=g), torch.randint(0, 4, (8,), generator=g)) for _ in range(n)]


class Scripted:
    """A step function returning a scripted loss sequence; records which model ran each batch."""

    def __init__(self, losses):
        self.losses, self.ran = iter(losses), []

    def __call__(self, model, images, labels, lr, step):
        self.ran.append(model)
        return StepResult(next(self.losses))



def load_benchmark(name: str):
    """benchmarks/NAME.py as a module (the benchmarks folder is no package), to call its main() in a test."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
