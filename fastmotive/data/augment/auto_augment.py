"""Per-image AutoAugment / RandAugment on a batch on its device (``--aa``).

Each image draws its own ops, probabilities, magnitudes and signs (`BatchAugment.draw`, from a CPU
`torch.Generator` the caller seeds), exactly as timm's per-image transform would draw them (RandAugment: ``n``
ops chosen uniformly with replacement, or by timm's weights without; AutoAugment: one sub-policy; each op applied
with its probability; magnitude noise and clamping; a random sign for signed ops). `BatchAugment.apply` then
runs the batch layer by layer: in each layer, the images that drew the same op go through one batched kernel
with their own arguments (`image_ops`), and all the images with a geometric op go through a single
``grid_sample``. Drawing on the CPU means the device never has to report which image drew what: no sync.

Draws are made for a whole (global) batch and can be cut to rows (`AugmentDraws.rows`), so a rank of a
distributed run gets exactly the draws the single process gives those images.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fastmotive.data.augment.image_ops import AFFINE_KERNELS, COLOR_KERNELS, affine_matrices, warp
from fastmotive.data.augment.levels import op_argument
from fastmotive.data.augment.policy import AugmentPolicy, parse_policy


@dataclass(frozen=True)
class AugmentDraws:
    """Per image and layer: ``op`` [N, L] int64 index into the policy's `op_names` (-1: nothing this layer),
    ``magnitude`` [N, L] float64 (clamped level, or torchvision bin), ``sign`` [N, L] float64 (+-1)."""
    op: torch.Tensor
    magnitude: torch.Tensor
    sign: torch.Tensor

    def __len__(self) -> int:
        return len(self.op)

    def rows(self, lo: int, hi: int) -> AugmentDraws:
        return AugmentDraws(self.op[lo:hi], self.magnitude[lo:hi], self.sign[lo:hi])


class BatchAugment:
    """A policy applied per image to batches [B, 3, H, W] of uint8 or float values in [0, 255].

    Args:
        policy: an ``--aa`` spec or a parsed `AugmentPolicy`.
        fill: colour of the area a geometric op uncovers (timm: the dataset mean on the 0-255 scale; 128 grey
            without one).
    """

    def __init__(self, policy: AugmentPolicy | str, fill=(128, 128, 128)):
        self.policy = parse_policy(policy) if isinstance(policy, str) else policy
        self.names = self.policy.op_names
        self.fill = tuple(float(f) for f in fill)
        p = self.policy
        if p.kind == "rand":
            self._ops = self._table([op] for op in p.choices)        # [K, 1] choices
        else:
            self._ops = self._table(p.subpolicies)                   # [S, L] sub-policies

    def _table(self, rows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(op index, probability, magnitude) tables [R, L]; short rows padded with op -1."""
        rows = [list(r) for r in rows]
        width = max((len(r) for r in rows), default=0)
        op = torch.full((len(rows), width), -1, dtype=torch.int64)
        prob = torch.zeros(len(rows), width, dtype=torch.float64)
        mag = torch.zeros(len(rows), width, dtype=torch.float64)
        for i, r in enumerate(rows):
            for j, o in enumerate(r):
                op[i, j], prob[i, j], mag[i, j] = self.names.index(o.name), o.prob, o.magnitude
        return op, prob, mag

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(images, self.draw(len(images), generator))

    # -- draws ------------------------------------------------------------------------------------------

    def draw(self, n: int, generator: torch.Generator) -> AugmentDraws:
        """The random choices for `n` images (a CPU generator; same generator state, same draws)."""
        g, p = generator, self.policy
        op, prob, mag = self._ops
        if p.kind == "rand":
            k = len(op)
            if p.weights is None:
                pick = torch.randint(k, (n, p.layers), generator=g)
            else:  # timm: np.random.choice(ops, n, replace=False, p=weights)
                pick = torch.multinomial(torch.tensor(p.weights).expand(n, k), p.layers, replacement=False,
                                         generator=g)
            op, prob, mag = op[pick, 0], prob[pick, 0], mag[pick, 0]
        else:
            sub = torch.randint(len(op), (n,), generator=g)
            op, prob, mag = op[sub], prob[sub], mag[sub]
        applied = torch.rand(op.shape, generator=g, dtype=torch.float64) <= prob  # timm: skip if random() > p
        noise = torch.randn(op.shape, generator=g, dtype=torch.float64)
        uniform = torch.rand(op.shape, generator=g, dtype=torch.float64)
        sign = torch.where(torch.rand(op.shape, generator=g, dtype=torch.float64) > 0.5, -1.0, 1.0)
        if p.magnitude_std == float("inf"):     # timm: uniform in [0, M]
            mag = uniform * mag
        elif p.magnitude_std > 0:               # timm: gauss(M, std)
            mag = mag + p.magnitude_std * noise
        mag = mag.clamp(0.0, p.magnitude_max)
        return AugmentDraws(torch.where(applied, op, -1), mag, sign)

    # -- application --------------------------------------------------------------------------------------

    def apply(self, images: torch.Tensor, draws: AugmentDraws) -> torch.Tensor:
        """`images` with `draws` applied, as a new tensor of the same dtype (uint8 rounded back)."""
        x = self.apply_(images.to(torch.float32, copy=True), draws)
        return x.round_().clamp_(0, 255).to(torch.uint8) if images.dtype == torch.uint8 else x

    def apply_(self, x: torch.Tensor, draws: AugmentDraws) -> torch.Tensor:
        """`apply` in place on float32 images `x` in [0, 255]; returns `x`."""
        if len(draws) != len(x):
            raise ValueError(f"{len(draws)} draws for a batch of {len(x)} images")
        hw = tuple(x.shape[-2:])
        fill = torch.tensor(self.fill, dtype=x.dtype, device=x.device)
        for layer in range(draws.op.shape[1]):
            self._apply_layer(x, draws.op[:, layer], draws.magnitude[:, layer], draws.sign[:, layer], hw, fill)
        return x

    def _apply_layer(self, x, op, magnitude, sign, hw, fill) -> None:
        geometric_rows, matrices = [], []
        for k in op.unique().tolist():
            if k < 0:
                continue
            rows = (op == k).nonzero().squeeze(1)
            kernel, arg = op_argument(self.policy.family, self.names[k], magnitude[rows], sign[rows], hw)
            if kernel in AFFINE_KERNELS:  # gathered: one grid_sample for every geometric op of the layer
                geometric_rows.append(rows)
                matrices.append(affine_matrices(kernel, arg, hw))
                continue
            idx = rows.to(x.device, non_blocking=True)
            out = COLOR_KERNELS[kernel](x.index_select(0, idx), arg.to(x.device, x.dtype, non_blocking=True))
            x.index_copy_(0, idx, out)
        if geometric_rows:
            idx = torch.cat(geometric_rows).to(x.device, non_blocking=True)
            x.index_copy_(0, idx, warp(x.index_select(0, idx), torch.cat(matrices), fill))
