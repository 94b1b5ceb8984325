"""`OPTIMIZERS`: every arena optimizer's record, its class included (as timm's `OptimInfo` registry)."""

from __future__ import annotations

from fastmotive.optim.info import OptimInfo
from fastmotive.optim.timm_ports import Lamb, RMSpropTF
from fastmotive.optim.torch_ports import SGD, AdamW, RMSprop

# The names and defaults are timm's (timm.optim._optim_factory), so `--opt NAME` means what it means in timm's
# train.py: `sgd` (and its alias `nesterov`) is SGD with Nesterov momentum, `momentum` is classical momentum,
# both RMSprops smooth with alpha 0.9 (torch's own RMSprop default is 0.99).
def _sgd(name: str, nesterov: bool) -> OptimInfo:
    return OptimInfo(name, SGD, ("momentum_buffer",), {"momentum": 0.9, "nesterov": nesterov},
                     takes=("momentum", "nesterov"))


OPTIMIZERS: dict[str, OptimInfo] = {
    "sgd": _sgd("sgd", nesterov=True),
    "momentum": _sgd("momentum", nesterov=False),
    "nesterov": _sgd("nesterov", nesterov=True),
    # fused: torch's fused kernel where it has one (`AdamW`); False for the single-tensor path's bits
    "adamw": OptimInfo("adamw", AdamW, ("exp_avg", "exp_avg_sq"), {"betas": (0.9, 0.999), "eps": 1e-8,
                                                                   "fused": True},
                       takes=("betas", "eps"), extra=("fused",)),
    "rmsprop": OptimInfo("rmsprop", RMSprop, ("square_avg", "momentum_buffer"),
                         {"alpha": 0.9, "eps": 1e-8, "momentum": 0.9}, takes=("momentum", "alpha", "eps")),
    # timm's RMSpropTF class default eps is 1e-10 (inside the sqrt)
    "rmsproptf": OptimInfo("rmsproptf", RMSpropTF, ("square_avg", "momentum_buffer"),
                           {"alpha": 0.9, "eps": 1e-10, "momentum": 0.9}, takes=("momentum", "alpha", "eps")),
    "lamb": OptimInfo("lamb", Lamb, ("exp_avg", "exp_avg_sq"),
                      {"betas": (0.9, 0.999), "eps": 1e-6, "max_grad_norm": 1.0, "trust_clip": False,
                       "always_adapt": False}, takes=("betas", "eps"),
                      extra=("max_grad_norm", "trust_clip", "always_adapt")),
}
