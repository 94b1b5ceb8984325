"""Arena optimizers against their references: torch.optim SGD / AdamW / RMSprop and timm RMSpropTF / Lamb.

The reference is built by timm's own factory (`create_optimizer_v2`, foreach=False: the single-tensor
path, which is what runs on CPU), so the no-decay-on-1-D grouping is timm's, not ours. AdamW runs torch's fused
kernel by default; its reference is then ``torch.optim.AdamW(fused=True)``.

- Fed identical gradients, a segment must follow the reference bit for bit (torch.equal), for every
  optimizer and weight-decay variant; the fused AdamW to the last bit only (`FUSED_RTOL`): its vectorized loop
  rounds exp_avg_sq differently in the tail of each tensor, and the tails of a segment are not the tails of
  the model's tensors.
- Trained end to end on real models (forward and backward through the packed parameters), the
  trajectories must agree to fp32 tolerance rtol=1e-5, atol=1e-6 over 6 steps with a changing lr. The fused
  AdamW is held to the ulp by the same-gradients test and trained end to end on the tiny net within a fifth of
  the lr: a last-bit difference in one step changes the next forward, and a parameter whose gradient is
  rounding noise (a convolution bias before BatchNorm, a ViT's key bias) takes Adam steps of +-lr whatever the
  noise's size (torch's own fused and single-tensor AdamW drift 5e-2 apart in 6 such steps on efficientnet_b0),
  so the real models' trajectories run the single-tensor path.
"""

import copy

import pytest
import timm
import timm.optim
import torch
import torch.nn.functional as F
from torch import nn

from fastmotive.core.arena import ALIGN
from fastmotive.optim import OPTIMIZERS, Segment, TensorSlot, create_optimizer

RTOL, ATOL = 1e-5, 1e-6
LR_FACTORS = (1.0, 0.5, 0.8, 0.3, 1.2, 0.7)  # the schedule changes the lr every step
BASE_LR_ADAMW = 1e-2
BASE_LR = {"sgd": 0.1, "momentum": 0.1, "nesterov": 0.1, "adamw": BASE_LR_ADAMW, "rmsprop": 1e-2, "rmsproptf": 1e-2,
           "lamb": 1e-2}

FUSED_RTOL, FUSED_ATOL = 1e-6, 1e-9   # same gradients: a few ulps of fp32 after 6 steps
FUSED_TRAJECTORY_RTOL, FUSED_TRAJECTORY_ATOL = 1e-4, BASE_LR_ADAMW / 5

# (optimizer, hyper-parameters given to both implementations)
VARIANTS = [
    ("sgd", {"momentum": 0.9, "nesterov": False}),
    ("sgd", {"momentum": 0.9, "nesterov": True}),
    ("sgd", {"momentum": 0.0, "nesterov": False}),
    ("momentum", {"momentum": 0.0}),
    ("nesterov", {"momentum": 0.5}),
    # the name alone: timm's factory applies its registry's defaults, create_optimizer must apply the same
    ("sgd", {}), ("momentum", {}), ("nesterov", {}), ("rmsprop", {}), ("rmsproptf", {}),
    ("adamw", {}),
    ("adamw", {"betas": (0.8, 0.99)}),
    ("adamw", {"fused": False}),
    ("adamw", {"betas": (0.8, 0.99), "fused": False}),
    ("rmsprop", {"momentum": 0.9, "alpha": 0.9}),
    ("rmsprop", {"momentum": 0.0, "alpha": 0.99}),
    ("rmsproptf", {"momentum": 0.9, "alpha": 0.9}),
    ("rmsproptf", {"momentum": 0.0, "alpha": 0.99}),
    ("lamb", {}),
    ("lamb", {"always_adapt": True}),
    ("lamb", {"trust_clip": True}),
    ("lamb", {"max_grad_norm": None}),
]
DECAYS = [(0.0, False), (0.05, False), (0.05, True)]  # (weight_decay, decay_1d)


class TinyNet(nn.Module):
    """Conv + BN + linear, plus the awkward cases of timm's decay grouping: a 0-d gain, a 2-D tensor named
    `.bias` (excluded by name), and a `pos_embed` listed in no_weight_decay() (excluded by the model)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.pos_embed = nn.Parameter(torch.zeros(1, 6, 5, 5))  # zero: trust ratio of a zero tensor
        self.fc = nn.Linear(6, 10)
        self.table = nn.Module()
        self.table.bias = nn.Parameter(torch.randn(2, 5) * 0.1)
        self.gain = nn.Parameter(torch.tensor(1.5))

    def no_weight_decay(self):
        return {"pos_embed"}

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x))) + self.pos_embed
        return self.fc(x.mean((2, 3))) * self.gain + self.table.bias.mean()


def pack(model: nn.Module, n_rows: int, order: list[str] | None = None, align: int = 1) -> Segment:
    """Move the model's parameters (and grads) into flat buffers, in `order` (default: the model's), with
    padding gaps of 2, 3, 0, 5, 1, ... elements around them (each slot then starting on a multiple of `align`
    elements); every parameter and grad becomes a view into the buffers."""
    gaps = (3, 0, 5, 1)
    params = dict(model.named_parameters())
    named = [(name, params[name]) for name in order or params]
    offsets, end = [], 2
    for i, (_, p) in enumerate(named):
        end = -(-end // align) * align
        offsets.append(end)
        end += p.numel() + gaps[i % len(gaps)]
    param, grad = torch.zeros(end), torch.zeros(end)
    slots = []
    for (name, p), offset in zip(named, offsets):
        view = slice(offset, offset + p.numel())
        param[view] = p.detach().reshape(-1)
        p.data = param[view].view(p.shape)
        p.grad = grad[view].view(p.shape)
        slots.append(TensorSlot(name, offset, tuple(p.shape)))
    return Segment(param=param, grad=grad, state=torch.zeros(n_rows + 1, end), slots=tuple(slots))


def gap_mask(segment: Segment) -> torch.Tensor:
    mask = torch.ones(segment.param.numel(), dtype=torch.bool)
    for slot in segment.slots:
        mask[slot.offset:slot.offset + slot.numel] = False
    return mask


def fused(name: str, hparams: dict) -> bool:
    """Whether the arena optimizer runs torch's fused AdamW kernel (its default)."""
    return name == "adamw" and hparams.get("fused", True)


def make_pair(model: nn.Module, name: str, hparams: dict, weight_decay: float, decay_1d: bool, align: int = 1):
    """The arena optimizer on the packed model, and timm's reference on a deep copy."""
    ref_model = copy.deepcopy(model)
    lr = BASE_LR[name]
    ref = timm.optim.create_optimizer_v2(
        ref_model, opt=name, lr=lr, weight_decay=weight_decay, foreach=False,
        filter_bias_and_bn=not decay_1d, **{**hparams, **({"fused": True} if fused(name, hparams) else {})})
    # LAMB's clipping norm is the norm of the per-tensor norms, summed in segment order here and in
    # param-group order (no-decay group first) in timm: pack in timm's order so the sums match bit for bit.
    names = {id(p): n for n, p in ref_model.named_parameters()}
    order = [names[id(p)] for group in ref.param_groups for p in group["params"]]
    segment = pack(model, len(OPTIMIZERS[name].state_rows), order, align)
    no_wd = getattr(model, "no_weight_decay", lambda: ())()
    opt = create_optimizer(name, segment, lr=lr, weight_decay=weight_decay, decay_1d=decay_1d,
                           no_weight_decay=no_wd, **hparams)
    return opt, ref, ref_model


def step_both(opt, ref, step: int) -> float:
    lr = BASE_LR[opt.info.name] * LR_FACTORS[step - 1]
    for group in ref.param_groups:
        group["lr"] = lr
    ref.step()
    opt.step(lr, step)
    return lr


@pytest.mark.parametrize("weight_decay,decay_1d", DECAYS)
@pytest.mark.parametrize("name,hparams", VARIANTS)
def test_same_grads_give_the_reference_bits(name, hparams, weight_decay, decay_1d):
    torch.manual_seed(0)
    model = TinyNet()
    opt, ref, ref_model = make_pair(model, name, hparams, weight_decay, decay_1d)
    gen = torch.Generator().manual_seed(1)
    for step in range(1, len(LR_FACTORS) + 1):
        scale = 1.0 if step % 2 else 0.01  # lamb: clipped on odd steps (norm ~20), not on even ones
        for (pname, p), q in zip(model.named_parameters(), ref_model.parameters()):
            g = torch.randn(p.shape, generator=gen) * scale
            if pname == "pos_embed" and step <= 2:
                g.zero_()  # lamb: zero weight and zero update norm, trust ratio 1
            p.grad.copy_(g)
            q.grad = g.clone()
        step_both(opt, ref, step)
        for (pname, p), q in zip(model.named_parameters(), ref_model.parameters()):
            if fused(name, hparams):
                torch.testing.assert_close(p, q, rtol=FUSED_RTOL, atol=FUSED_ATOL)
            else:
                assert torch.equal(p, q), f"{name} {hparams} step {step}: {pname} differs by {(p - q).abs().max()}"
    if name == "adamw":
        assert opt.fused == fused(name, hparams)
    assert not opt.segment.param[gap_mask(opt.segment)].any(), "padding must stay 0"


def conv_batches(n: int, size: int):
    gen = torch.Generator().manual_seed(2)
    return [(torch.randn(4, 3, size, size, generator=gen), torch.randint(0, 10, (4,), generator=gen))
            for _ in range(n)]


def train_both(model: nn.Module, name: str, hparams: dict, weight_decay: float, decay_1d: bool, size: int):
    # Slots aligned as the arena aligns them (16 elements): with one thread, oneDNN takes another convolution
    # path for unaligned weight views, whose rounding these small, chaotic models amplify past the tolerance.
    opt, ref, ref_model = make_pair(model, name, hparams, weight_decay, decay_1d, align=ALIGN)
    grads = [p.grad for p in model.parameters()]
    for step, (x, y) in enumerate(conv_batches(len(LR_FACTORS), size), start=1):
        opt.zero_grad()
        ref.zero_grad()
        F.cross_entropy(model(x), y).backward()
        F.cross_entropy(ref_model(x), y).backward()
        assert all(p.grad is g for p, g in zip(model.parameters(), grads)), "autograd replaced a grad view"
        step_both(opt, ref, step)
        rtol, atol = (FUSED_TRAJECTORY_RTOL, FUSED_TRAJECTORY_ATOL) if fused(name, hparams) else (RTOL, ATOL)
        for (pname, p), q in zip(model.named_parameters(), ref_model.parameters()):
            torch.testing.assert_close(p, q, rtol=rtol, atol=atol, msg=lambda m, s=step, n=pname: f"step {s} {n}: {m}")
    assert not opt.segment.param[gap_mask(opt.segment)].any(), "padding must stay 0"


@pytest.mark.parametrize("name,hparams", VARIANTS)
def test_tiny_net_trajectory_matches_reference(name, hparams):
    torch.manual_seed(0)
    train_both(TinyNet(), name, hparams, weight_decay=0.05, decay_1d=False, size=5)


# one variant per optimizer, each with its name's defaults (timm's: Nesterov for sgd, alpha 0.9 for the RMSprops)
ONE_EACH = [("sgd", {}), ("momentum", {}), ("adamw", {"fused": False}), ("rmsprop", {}), ("rmsproptf", {}),
            ("lamb", {})]


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_name_means_what_it_means_in_timm(name):
    """timm's registry defaults (sgd and nesterov: Nesterov momentum; momentum: classical; rmsprop, rmsproptf:
    alpha 0.9) are create_optimizer's for the same name (the VARIANTS with {} check the arithmetic)."""
    timm_defaults = timm.optim.get_optimizer_info(name).defaults or {}
    assert {k: timm_defaults[k] for k in ("nesterov", "alpha") if k in timm_defaults} == \
        {k: OPTIMIZERS[name].defaults[k] for k in ("nesterov", "alpha") if k in OPTIMIZERS[name].defaults}


@pytest.mark.parametrize("name,hparams", ONE_EACH)
def test_tiny_net_trajectory_with_decay_1d(name, hparams):
    torch.manual_seed(0)
    train_both(TinyNet(), name, hparams, weight_decay=0.05, decay_1d=True, size=5)


@pytest.mark.parametrize("arch", ["test_efficientnet", "test_vit"])
@pytest.mark.parametrize("name,hparams", ONE_EACH)
def test_timm_model_trajectory_matches_reference(arch, name, hparams):
    """timm's small test models: depthwise convs, squeeze-excite and BN; a ViT whose no_weight_decay()
    lists pos_embed and cls_token."""
    torch.manual_seed(0)
    model = timm.create_model(arch, num_classes=10)
    train_both(model, name, hparams, weight_decay=0.01, decay_1d=False, size=32)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["resnet10t", "efficientnet_b0"])
@pytest.mark.parametrize("name,hparams", ONE_EACH)
def test_full_size_model_trajectory_matches_reference(arch, name, hparams):
    torch.manual_seed(0)
    model = timm.create_model(arch, num_classes=10)
    train_both(model, name, hparams, weight_decay=0.01, decay_1d=False, size=32)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_rows_carry_the_whole_state(name):
    """What the switch relies on: copying the state rows (and params) to another segment and stepping
    there with the global step continues exactly as stepping on."""
    torch.manual_seed(0)
    a, b = TinyNet(), TinyNet()
    seg_a = pack(a, len(OPTIMIZERS[name].state_rows))
    seg_b = pack(b, len(OPTIMIZERS[name].state_rows))
    opt_a = create_optimizer(name, seg_a, lr=0.01, weight_decay=0.05)
    opt_b = create_optimizer(name, seg_b, lr=0.01, weight_decay=0.05)
    gen = torch.Generator().manual_seed(3)
    for step in range(1, 7):
        g = torch.randn(seg_a.grad.shape, generator=gen) * (1 - gap_mask(seg_a).float())
        seg_a.grad.copy_(g)
        opt_a.step(0.01, step)
        if step == 3:
            seg_b.param.copy_(seg_a.param)
            seg_b.state[:len(opt_a.info.state_rows)].copy_(seg_a.state[:len(opt_a.info.state_rows)])
        if step > 3:
            seg_b.grad.copy_(g)
            opt_b.step(0.01, step)
    assert torch.equal(seg_a.param, seg_b.param)
    assert torch.equal(seg_a.state, seg_b.state)


def test_zero_grad_keeps_the_grad_tensor():
    torch.manual_seed(0)
    model = TinyNet()
    segment = pack(model, 2)
    opt = create_optimizer("adamw", segment, lr=1e-3, weight_decay=0.0)
    grads = [p.grad for p in model.parameters()]
    ptr = segment.grad.data_ptr()
    F.cross_entropy(model(torch.randn(4, 3, 5, 5)), torch.tensor([1, 2, 3, 4])).backward()
    assert segment.grad.abs().sum() > 0
    opt.zero_grad()
    assert segment.grad.data_ptr() == ptr and not segment.grad.any()
    assert all(p.grad is g for p, g in zip(model.parameters(), grads))


def test_rmsproptf_square_avg_starts_at_ones():
    segment = pack(TinyNet(), 2)
    create_optimizer("rmsproptf", segment, lr=0.01, weight_decay=0.0)
    assert torch.equal(segment.state[0], torch.ones_like(segment.state[0]))
    assert not segment.state[1].any()


def test_defaults_and_state_dict():
    segment = pack(TinyNet(), 2)
    opt = create_optimizer("lamb", segment, lr=0.01, weight_decay=0.0)
    assert opt.info.state_rows == ("exp_avg", "exp_avg_sq")
    assert opt.eps == 1e-6 and opt.max_grad_norm == 1.0
    state = opt.state_dict()
    opt.load_state_dict(state)
    other = create_optimizer("adamw", segment, lr=0.01, weight_decay=0.0)
    with pytest.raises(ValueError, match="'lamb'.*'adamw'"):
        other.load_state_dict(state)


def test_unknown_name_lists_choices():
    segment = pack(TinyNet(), 2)
    with pytest.raises(ValueError, match="unknown optimizer 'adam'.*sgd, momentum, nesterov, adamw, rmsprop"):
        create_optimizer("adam", segment, lr=0.1, weight_decay=0.0)


def test_bad_arguments_are_named():
    segment = pack(TinyNet(), 2)
    with pytest.raises(ValueError, match="takes no argument.*trust_clip.*extra arguments are: none"):
        create_optimizer("sgd", segment, lr=0.1, weight_decay=0.0, trust_clip=True)
    with pytest.raises(ValueError, match="lr=-1.*weight_decay=-0.1"):
        create_optimizer("sgd", segment, lr=-1, weight_decay=-0.1)
    with pytest.raises(ValueError, match="sgd: Nesterov momentum needs momentum > 0"):
        create_optimizer("sgd", segment, lr=0.1, weight_decay=0.0, momentum=0.0, nesterov=True)
    with pytest.raises(ValueError, match="1-based"):
        create_optimizer("adamw", segment, lr=0.1, weight_decay=0.0).step(0.1, 0)


def test_bad_segments_are_named():
    segment = pack(TinyNet(), 1)
    few_rows = Segment(segment.param, segment.grad, segment.state[:1], segment.slots)
    with pytest.raises(ValueError, match=r"state must be \[n_rows >= 2.*exp_avg"):
        create_optimizer("adamw", few_rows, lr=0.1, weight_decay=0.0)
    first, second = segment.slots[:2]
    overlap = Segment(segment.param, segment.grad, segment.state,
                      (first, TensorSlot(second.name, first.offset + 1, second.shape)))
    with pytest.raises(ValueError, match=f"slot '{second.name}'"):
        create_optimizer("sgd", overlap, lr=0.1, weight_decay=0.0)
    short_grad = Segment(segment.param, segment.grad[:-1], segment.state, segment.slots)
    with pytest.raises(ValueError, match="grad must be 1-D contiguous"):
        create_optimizer("sgd", short_grad, lr=0.1, weight_decay=0.0)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_empty_and_gap_only_segments(name):
    for length in (0, 7):
        n_rows = len(OPTIMIZERS[name].state_rows)
        segment = Segment(torch.zeros(length), torch.zeros(length), torch.zeros(n_rows, length), ())
        opt = create_optimizer(name, segment, lr=0.1, weight_decay=0.1)
        opt.step(0.1, 1)
        assert not segment.param.any()
