"""MotivatedPair: a base and a motivated model living in one arena, with a compiled switch between them."""
from __future__ import annotations

import torch
from torch import nn

from .arena import Arena
from .families import parse_arch, tensor_shapes
from .families._registry import map_by_rule
from .plan import CopyPlan, compile_plan
from .switch import BACKENDS, Switcher, default_backend
from .weights_map import WeightsMap

MODELS = ("base", "motivated")


class MotivatedPair:
    """Two models of one family, the weights map between them, one flat arena and the switch.

    Args:
        base, motivated: the models; the base must nest inside the motivated model (every tensor a slice).
        weights_map: where each base tensor lives; inferred by name and leading slices when None.
        state_rows: optimizer state rows to allocate up front (AdamW needs 2); grown on demand.
    Raises:
        WeightsMapError: naming every tensor that does not fit.  ArenaError: on mixed devices or dtypes.
    """

    def __init__(self, base: nn.Module, motivated: nn.Module, weights_map: WeightsMap | None = None,
                 state_rows: int = 2, names: tuple[str, str] | None = None):
        if weights_map is None:
            weights_map = map_by_rule(base, motivated, "inferred")
        else:
            weights_map.validate(tensor_shapes(base)[0], tensor_shapes(motivated)[0])
        self.base, self.motivated = base, motivated
        self.weights_map = weights_map
        self.names = names                       # model names when built from a registry family
        self.arena = Arena(base, motivated, state_rows)
        self.plan: CopyPlan = compile_plan(weights_map, self.arena)
        self._switcher = Switcher(self.plan, weights_map)
        self.state_rows_copied = state_rows      # optimizer rows a switch carries; set by set_state_rows()
        self.active = "base"

    @classmethod
    def from_names(cls, base_name: str, motivated_name: str, **kwargs) -> MotivatedPair:
        """Build both members of a registered family (extra kwargs go to both constructors)."""
        family, base_name, motivated_name = parse_arch(f"{base_name}:{motivated_name}")
        base, motivated = family.build(base_name, **kwargs), family.build(motivated_name, **kwargs)
        return cls(base, motivated, family.weights_map(base, motivated), names=(base_name, motivated_name))

    @classmethod
    def from_arch(cls, spec: str, **kwargs) -> MotivatedPair:
        """Build from an arch spec such as ``efficientnet_b0:b2`` or ``resnet20:resnet32``."""
        _, base_name, motivated_name = parse_arch(spec)
        return cls.from_names(base_name, motivated_name, **kwargs)

    # -- models ---------------------------------------------------------------------------------------
    def model(self, name: str) -> nn.Module:
        if name not in MODELS:
            raise ValueError(f"unknown model {name!r}; choices: {', '.join(MODELS)}")
        return self.base if name == "base" else self.motivated

    @property
    def device(self) -> torch.device:
        return self.arena.data.device

    def to(self, device) -> MotivatedPair:
        """Move the arena (both models, grads, optimizer state) as a whole; every view is kept."""
        self.arena.to(device)
        return self

    def segment(self, name: str):
        """The named model's parameters, grads and optimizer-state rows as one flat segment."""
        self.model(name)
        return self.arena.segment(name)

    def set_state_rows(self, n: int) -> None:
        """Make the switch carry `n` optimizer state rows (allocating them if needed; a set-up step)."""
        self.arena.ensure_state_rows(n)
        self.state_rows_copied = n

    # -- the switch -----------------------------------------------------------------------------------
    def switch_to(self, name: str, backend: str | None = None) -> None:
        """Make `name` the active model, copying the mapped values, BN buffers and optimizer state into it.

        Args:
            name: "base" or "motivated". Switching to the already active model does nothing.
            backend: "triton", "torch", "naive", or None for the device's default.
        """
        self.model(name)
        if backend is not None and backend not in BACKENDS:
            raise ValueError(f"unknown switch backend {backend!r}; choices: {', '.join(BACKENDS)} or None (auto)")
        if name == self.active:
            return
        self.copy(up=name == "motivated", backend=backend)
        self.active = name

    def copy(self, up: bool, backend: str | None = None) -> None:
        """Run the copy plan once, base -> motivated if `up`, regardless of which model is active."""
        self.arena.check_bound(full=False)
        self._switcher(self.arena, up, self.state_rows_copied, backend or default_backend(self.device))

    def describe(self) -> dict:
        info = self.weights_map.describe(tensor_shapes(self.base)[0], tensor_shapes(self.motivated)[0])
        info.update(runs=len(self.plan.runs), param_runs=self.plan.param_runs,
                    mean_run_bytes=round(self.plan.elements * self.arena.data.element_size() / max(len(self.plan.runs), 1)),
                    arena_columns=self.arena.columns, arena_rows=int(self.arena.data.shape[0]))
        return info
