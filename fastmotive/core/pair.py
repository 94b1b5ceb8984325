"""MotivatedPair: a base and a motivated model in one arena, the switch between them, and their saved state.

The pair is the only owner of its arena's contents and of which model is active: the switch (`switch_to`)
and `load_state_dict` change them, `state_dict` reads them. The switch backend is resolved once, when the
pair is built or moved (`to`), or by `set_backend`.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from fastmotive.core.arena import MODELS, Arena, own_storage
from fastmotive.core.copy_plan import CopyPlan, compile_plan
from fastmotive.core.switch import Switcher, resolve_backend
from fastmotive.core.weights_map import WeightsMap
from fastmotive.errors import CheckpointError, WeightsMapError
from fastmotive.families import Arch, Family, parse_arch, tensor_shapes
from fastmotive.families._registry import map_by_rule

__all__ = ["MODELS", "MotivatedPair"]


# A copy checks that every parameter is still its arena view (`Arena.check_bound(full=False)`) on the first
# switch and then once per GUARD_EVERY: the walk costs far more than the copy's launch, and the Trainer also
# checks in full when fit() starts and at every epoch's end.
GUARD_EVERY = 64

class MotivatedPair:
    """Two models of one family, the weights map between them, one flat arena and the switch.

    A single-model run (``--arch resnet50``, no colon) is a pair with one member: `motivated` is None, the arena
    holds the base alone, `members` is ``("base",)`` and there is nothing to switch to.

    Args:
        base, motivated: the models; the base must nest inside the motivated model (every tensor a slice).
        weights_map: where each base tensor lives; inferred by name and leading slices when None.
        state_rows: optimizer state rows to allocate up front (AdamW needs 2); grown on demand.
        names: the members' model names, when built from a registered family.
        family: the registered family both models belong to; None for a hand-made pair.
        backend: the switch backend, "triton", "torch" or "naive"; None for the device's default.
    Raises:
        WeightsMapError: naming every tensor that does not fit.  ArenaError: on mixed devices or dtypes.
        ConfigError: an unknown backend, or one that cannot run on the models' device.
    """

    def __init__(self, base: nn.Module, motivated: nn.Module | None, weights_map: WeightsMap | None = None,
                 state_rows: int = 2, names: tuple[str, ...] | None = None, *, family: Family | None = None,
                 backend: str | None = None):
        if motivated is not None:
            with _order_hint(base, motivated, names):
                if weights_map is None:
                    weights_map = map_by_rule(base, motivated, "inferred")
                else:
                    weights_map.validate(tensor_shapes(base)[0], tensor_shapes(motivated)[0])
        self.base, self.motivated = base, motivated
        self.members = MODELS if motivated is not None else ("base",)
        self.weights_map = weights_map
        self.family, self.names = family, names
        self.arena = Arena(base, motivated, state_rows)
        if motivated is not None:
            self.plan: CopyPlan | None = compile_plan(weights_map, self.arena)
            self._switcher: Switcher | None = Switcher(self.plan, weights_map)
        else:
            self.plan = self._switcher = None
        self.state_rows_copied = state_rows      # optimizer rows a switch carries; set by set_state_rows()
        self._active = "base"
        self._copies = 0   # copies run so far: the arena guard runs on the first and every GUARD_EVERY-th
        self.keep_buffers = False   # True: switches leave each model's BN statistics in place (--bn-buffers keep)
        self._backend = resolve_backend(backend, self.device)
        self._backend_asked = backend            # None: follow the device's default through to()
        self._layout_hooks: list = []            # set_channels_last's input conversions

    @classmethod
    def from_names(cls, base_name: str, motivated_name: str, *, base_kwargs: dict | None = None,
                   motivated_kwargs: dict | None = None, backend: str | None = None,
                   **shared_kwargs) -> MotivatedPair:
        """Build both members of a registered family.

        Args:
            base_name, motivated_name: model names, e.g. "efficientnet_b0", "efficientnet_b2".
            base_kwargs, motivated_kwargs: one member's kwargs (e.g. ``drop_rate``); they override shared ones.
            backend: the switch backend, as in the constructor.
            shared_kwargs: both members' kwargs: ``num_classes`` (required), ``img_size`` (used by the families
                whose models fix their input size), any constructor argument.
        """
        return cls.from_arch(f"{base_name}:{motivated_name}", base_kwargs=base_kwargs,
                             motivated_kwargs=motivated_kwargs, backend=backend, **shared_kwargs)

    @classmethod
    def from_arch(cls, spec: str | Arch, *, base_kwargs: dict | None = None, motivated_kwargs: dict | None = None,
                  backend: str | None = None, device=None, **shared_kwargs) -> MotivatedPair:
        """Build from an arch spec such as ``efficientnet_b0:b2`` or ``resnet20:resnet32``, or the `Arch` that
        `parse_arch` returned for it (so a caller that parsed the spec to fail fast need not parse it again).
        `device`: the members are moved there before the arena is made, so it is allocated there once.
        Kwargs as in `from_names`."""
        family, base_name, motivated_name = spec if isinstance(spec, Arch) else parse_arch(spec)
        base = family.build(base_name, **{**shared_kwargs, **(base_kwargs or {})}).to(device)
        if motivated_name is None:   # a single model: ``--arch resnet50``
            return cls(base, None, names=(base_name,), family=family, backend=backend)
        motivated = family.build(motivated_name, **{**shared_kwargs, **(motivated_kwargs or {})}).to(device)
        with _order_hint(base, motivated, (base_name, motivated_name)):
            weights_map = family.weights_map(base, motivated)
        return cls(base, motivated, weights_map, names=(base_name, motivated_name),
                   family=family, backend=backend)

    # -- models ---------------------------------------------------------------------------------------
    def model(self, name: str) -> nn.Module:
        if name not in self.members:
            if name == "motivated":
                raise ValueError(f"this is a single-model run ({self.names[0] if self.names else 'one model'}): "
                                 "it has no motivated model")
            raise ValueError(f"unknown model {name!r}; choices: {', '.join(self.members)}")
        return self.base if name == "base" else self.motivated

    def classifier(self, which: str) -> nn.Module:
        """The classifier head of the named model (its family's; a hand-made pair's ``get_classifier()`` or ``.fc``)."""
        model = self.model(which)
        if self.family is not None:
            return self.family.classifier(model)
        if hasattr(model, "get_classifier"):
            return model.get_classifier()
        if isinstance(getattr(model, "fc", None), nn.Module):
            return model.fc
        raise AttributeError(f"the {which} model ({type(model).__name__}) has neither get_classifier() nor an .fc "
                             "module, so its classifier is unknown: give it a get_classifier() returning its head")

    @property
    def active(self) -> str:
        """The model being trained: "base" or "motivated". Only `switch_to` and `load_state_dict` change it."""
        return self._active

    @property
    def device(self) -> torch.device:
        return self.arena.data.device

    def to(self, device) -> MotivatedPair:
        """Move the arena (both models, grads, optimizer state) as a whole; every view is kept. An automatic
        switch backend follows the new device; an explicit one is checked against it (before anything moves)."""
        backend = resolve_backend(self._backend_asked, torch.device(device))
        self.arena.to(device)
        self._backend = backend
        return self

    def segment(self, name: str):
        """The named model's parameters, grads and optimizer-state rows as one flat segment."""
        self.model(name)
        return self.arena.segment(name)

    @property
    def channels_last(self) -> bool:
        return self.arena.channels_last

    def set_channels_last(self, on: bool) -> None:
        """Run both members channels-last (or back): each converts its 4-D input on the way in (a forward
        pre-hook, so training, evaluation, calibration and compiled forwards all see it) and the arena binds
        their layout-free convolution weights with channels-last strides (`Arena.set_channels_last`). Set it
        before a member is compiled or traced."""
        for handle in self._layout_hooks:
            handle.remove()
        self._layout_hooks = [self.model(m).register_forward_pre_hook(_channels_last_input)
                              for m in self.members] if on else []
        self.arena.set_channels_last(on)

    def set_state_rows(self, n: int) -> None:
        """Make the switch carry `n` optimizer state rows (allocating them if needed; a set-up step)."""
        self.arena.ensure_state_rows(n)
        self.state_rows_copied = n

    # -- the switch -----------------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        """The resolved switch backend: "triton", "torch" or "naive"."""
        return self._backend

    def set_backend(self, name: str | None) -> None:
        """Use switch backend `name` ("triton", "torch", "naive"), or None for the device's default from now on.

        Raises:
            ConfigError: an unknown name, or triton where it cannot run (no CUDA and no TRITON_INTERPRET=1,
                or triton does not import).
        """
        self._backend = resolve_backend(name, self.device)
        self._backend_asked = name

    def switch_to(self, name: str, backend: str | None = None) -> None:
        """Make `name` the active model, copying the mapped values, BN buffers (unless `keep_buffers`) and
        optimizer state into it.

        Args:
            name: "base" or "motivated". Switching to the already active model does nothing.
            backend: this switch's backend, overriding `pair.backend` (tests and benchmarks compare them).
        """
        self.model(name)
        backend = self._backend_for(backend)
        if name == self._active:
            return
        self.copy(up=name == "motivated", backend=backend)
        self._active = name

    def copy(self, up: bool, backend: str | None = None) -> None:
        """Run the copy plan once, base -> motivated if `up`, regardless of which model is active."""
        self.model("motivated")   # a single model has nothing to copy to
        backend = self._backend_for(backend)
        if self._copies % GUARD_EVERY == 0:   # the guard walks every parameter: ~150 us for b0:b2 on a CPU
            self.arena.check_bound(full=False)
        self._copies += 1
        self._switcher(self.arena, up, self.state_rows_copied, backend, buffers=not self.keep_buffers)

    def _backend_for(self, override: str | None) -> str:
        if override is None or override == self._backend:
            return self._backend
        return resolve_backend(override, self.device)

    # -- saved state ----------------------------------------------------------------------------------
    def state_dict(self, copy: bool = True) -> dict:
        """Everything needed to restore the pair: the arena's value and optimizer-state rows (a detached CPU
        copy), the active model, and the weights map's JSON (to check a load against). The gradient row is left
        out: every step zeroes it before its backward pass, so a checkpoint would only carry dead bytes (a
        quarter of an AdamW arena). ``copy=False`` on the CPU gives those rows of the arena itself, no second
        copy of the largest buffer of the run: for a caller that writes it out before training goes on."""
        kept = self.arena.data.detach()[:-1]
        if kept.device.type != "cpu":
            kept = kept.cpu()   # copies
        else:
            kept = kept.clone() if copy else own_storage(kept)
        return {"arena": kept, "grad_row": False, "active": self._active, "weights_map": self._map_json()}

    def _map_json(self) -> str:
        """The weights map's JSON, or for a single model its name (what a saved state is checked against)."""
        return self.weights_map.to_json() if self.motivated is not None else f"single:{self.names and self.names[0]}"

    def load_state_dict(self, state: dict, values_only: bool = False, *, source: str = "the state") -> None:
        """Restore a `state_dict()` in place (no tensor moves) and make its active model active.

        Args:
            state: a pair's state_dict (extra keys, as in a trainer checkpoint, are ignored).
            values_only: copy row 0 only (both models' values and buffers: all an export needs), not the
                optimizer state rows or gradients.
            source: what the state is, for error messages (e.g. "checkpoint runs/x/last.pt").
        Raises:
            CheckpointError: the state belongs to another pair or optimizer (see `check_state`); nothing loaded.
        """
        self.check_state(state, values_only=values_only, source=source)
        rows = 1 if values_only else self.arena.data.shape[0] - 1   # all but the gradient row
        with torch.no_grad():
            self.arena.data[:rows].copy_(state["arena"][:rows])
            if not values_only:
                self.arena.data[-1].zero_()   # as the next step's zero_grad leaves it
        self._active = state["active"]

    def check_state(self, state: dict, *, values_only: bool = False, source: str = "the state") -> None:
        """Raise CheckpointError unless `state` loads into this pair: the same weights map, arena columns and
        dtype, a known active model and, unless `values_only`, the same arena rows (optimizer state rows)."""
        saved = state.get("arena")
        if not isinstance(saved, torch.Tensor) or saved.dim() != 2:
            raise CheckpointError(f"{source} holds no pair arena (a 2-D tensor under 'arena'); nothing was loaded")
        if state.get("weights_map") != self._map_json() or saved.shape[1] != self.arena.columns:
            raise CheckpointError(f"{source} belongs to another pair (different arch, num_classes or weights map); "
                                  "nothing was loaded")
        if saved.dtype != self.arena.dtype:
            raise CheckpointError(f"{source} holds a {saved.dtype} arena but this pair's is {self.arena.dtype}; "
                                  "nothing was loaded")
        state_rows = self.arena.data.shape[0] - 2
        saved_state_rows = saved.shape[0] - (2 if state.get("grad_row", True) else 1)   # older states kept grads
        if not values_only and saved_state_rows != state_rows:
            raise CheckpointError(f"{source} has {saved_state_rows} optimizer state rows but this pair has "
                                  f"{state_rows}: they are another optimizer's state; nothing was loaded. Call "
                                  "pair.set_state_rows(n) with the saved optimizer's row count first, or load "
                                  "values_only=True")
        if state.get("active") not in self.members:
            raise CheckpointError(f"{source} names active model {state.get('active')!r}, not one of "
                                  f"{', '.join(self.members)}; nothing was loaded")

    def describe(self) -> dict:
        info = self.weights_map.describe(tensor_shapes(self.base)[0], tensor_shapes(self.motivated)[0])
        run_bytes = self.plan.elements * self.arena.data.element_size()
        info.update(runs=len(self.plan.runs), param_runs=self.plan.param_runs,
                    mean_run_bytes=round(run_bytes / max(len(self.plan.runs), 1)), arena_columns=self.arena.columns, arena_rows=int(self.arena.data.shape[0]))
        return info


CHANNELS_LAST = ("auto", "on", "off")   # --channels-last


def wants_channels_last(choice: str, pair: MotivatedPair) -> bool:
    """--channels-last as a yes or no for `pair`: auto follows the family's measured preference on the CPU
    (`Family.channels_last`) and stays off on GPUs and for hand-made pairs, where it was not measured."""
    if choice not in CHANNELS_LAST:
        raise ValueError(f"channels_last {choice!r}: expected one of {', '.join(CHANNELS_LAST)}")
    if choice == "auto":
        return pair.family is not None and pair.family.channels_last and pair.device.type == "cpu"
    return choice == "on"


def _channels_last_input(module: nn.Module, args: tuple):
    x, *rest = args
    if isinstance(x, torch.Tensor) and x.dim() == 4:
        return (x.contiguous(memory_format=torch.channels_last), *rest)
    return None


@contextlib.contextmanager
def _order_hint(base: nn.Module, motivated: nn.Module, names: tuple[str, str] | None):
    """A map that does not fit because the base is the larger model says so first, then lists the tensors."""
    try:
        yield
    except WeightsMapError as exc:
        sizes = [sum(p.numel() for p in m.parameters()) for m in (base, motivated)]
        if sizes[0] <= sizes[1]:
            raise
        base_name, motivated_name = names or ("the base", "the motivated model")
        raise WeightsMapError(f"the base {base_name} ({sizes[0]:,} parameters) is larger than the motivated model "
                              f"{motivated_name} ({sizes[1]:,}): give the smaller model first, e.g. "
                              f"{motivated_name}:{base_name}. {exc}") from None
