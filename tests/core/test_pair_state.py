"""The pair owns its state: state_dict/load_state_dict, the switch backend chosen once, per-member kwargs and
each family's classifier."""
import pytest
import torch
from torch import nn

import fastmotive as fm
from fastmotive.core import switch


def cifar_pair(spec: str = "resnet20:resnet32", seed: int = 0, **kwargs) -> fm.MotivatedPair:
    torch.manual_seed(seed)
    return fm.MotivatedPair.from_arch(spec, num_classes=10, **kwargs)


def trained_a_little(pair: fm.MotivatedPair) -> fm.MotivatedPair:
    """Every arena row made distinct (values, state rows, grads), and the motivated model active."""
    with torch.no_grad():
        pair.arena.data.copy_(torch.randn(pair.arena.data.shape, generator=torch.Generator().manual_seed(1)))
    pair.switch_to("motivated")
    return pair


# -- state_dict / load_state_dict ---------------------------------------------------------------------
def test_state_dict_round_trip_is_bitwise_and_keeps_the_active_model():
    pair = trained_a_little(cifar_pair())
    state = pair.state_dict()
    assert state["arena"].device.type == "cpu" and state["arena"].data_ptr() != pair.arena.data.data_ptr()

    fresh = cifar_pair(seed=5)
    ptrs = [p.data_ptr() for p in fresh.base.parameters()]
    fresh.load_state_dict(state)
    # every row but the gradients, which are not saved (each step zeroes them before its backward pass)
    assert torch.equal(fresh.arena.data[:-1].view(torch.int32), pair.arena.data[:-1].view(torch.int32))
    assert not fresh.arena.data[-1].any()
    assert fresh.active == "motivated"
    assert ptrs == [p.data_ptr() for p in fresh.base.parameters()]   # copied in place, nothing re-allocated
    fresh.arena.check_bound()
    fresh.switch_to("base")   # the loaded pair switches like the saved one
    pair.switch_to("base")
    assert torch.equal(fresh.arena.data[:-1], pair.arena.data[:-1])


def test_a_saved_state_leaves_the_gradient_bytes_out(tmp_path):
    pair = trained_a_little(cifar_pair())
    state = pair.state_dict(copy=False)   # the checkpoint's way: the live arena's rows, not a copy
    assert state["arena"].data_ptr() == pair.arena.data.data_ptr()
    torch.save(state, tmp_path / "a.pt")
    rows, columns = pair.arena.data.shape
    grad_bytes = columns * pair.arena.data.element_size()
    assert (tmp_path / "a.pt").stat().st_size < (rows - 1) * grad_bytes + grad_bytes // 2
    fresh = cifar_pair(seed=5)
    fresh.load_state_dict(torch.load(tmp_path / "a.pt", weights_only=True))
    assert torch.equal(fresh.arena.data[:-1], pair.arena.data[:-1])


def test_an_older_state_with_its_gradient_row_still_loads():
    pair = trained_a_little(cifar_pair())
    older = {"arena": pair.arena.data.clone(), "active": "motivated", "weights_map": pair.state_dict()["weights_map"]}
    fresh = cifar_pair(seed=5)
    fresh.load_state_dict(older)
    assert torch.equal(fresh.arena.data[:-1], pair.arena.data[:-1]) and not fresh.arena.data[-1].any()
    fresh.set_state_rows(3)
    with pytest.raises(fm.CheckpointError, match="has 2 optimizer state rows but this pair has 3"):
        fresh.load_state_dict(older)


@pytest.mark.parametrize("other", ["resnet20:resnet44", "num_classes"])
def test_loading_another_pairs_state_raises_and_changes_nothing(other):
    state = trained_a_little(cifar_pair()).state_dict()
    target = cifar_pair("resnet20:resnet44") if other != "num_classes" else \
        fm.MotivatedPair.from_arch("resnet20:resnet32", num_classes=7)
    before = target.arena.data.clone()
    with pytest.raises(fm.CheckpointError, match="belongs to another pair"):
        target.load_state_dict(state, source="checkpoint x.pt")
    assert torch.equal(target.arena.data, before) and target.active == "base"


def test_loading_another_optimizers_rows_raises_unless_values_only():
    pair = trained_a_little(cifar_pair())
    pair.set_state_rows(3)   # an optimizer with three state rows
    state = pair.state_dict()
    target = cifar_pair(seed=5)
    before = target.arena.data.clone()
    with pytest.raises(fm.CheckpointError, match="3 optimizer state rows but this pair has 2.*another optimizer"):
        target.load_state_dict(state)
    assert torch.equal(target.arena.data, before)
    target.load_state_dict(state, values_only=True)
    assert torch.equal(target.arena.data[0], state["arena"][0])


def test_values_only_copies_row_zero_only():
    state = trained_a_little(cifar_pair()).state_dict()
    target = cifar_pair(seed=5)
    before = target.arena.data.clone()
    target.load_state_dict(state, values_only=True)
    assert torch.equal(target.arena.data[0], state["arena"][0])
    assert torch.equal(target.arena.data[1:], before[1:])   # optimizer state rows and gradients untouched
    assert target.active == "motivated"


def test_a_trainer_checkpoint_loads_directly():
    """The trainer's checkpoint holds the pair's keys at its top level, beside its own."""
    pair = trained_a_little(cifar_pair())
    target = cifar_pair(seed=5)
    target.load_state_dict(dict(pair.state_dict(), step=3, optimizer="sgd"))
    assert torch.equal(target.arena.data[:-1], pair.arena.data[:-1])


def test_active_is_read_only_and_changed_by_switches_and_loads():
    pair = cifar_pair()
    with pytest.raises(AttributeError):
        pair.active = "motivated"
    pair.switch_to("motivated")
    assert pair.active == "motivated"
    fresh = cifar_pair()
    fresh.load_state_dict(pair.state_dict())
    assert fresh.active == "motivated"


# -- the switch backend -------------------------------------------------------------------------------
def test_backend_is_resolved_once_for_the_device():
    pair = cifar_pair()
    assert pair.backend == "torch"   # a CPU pair
    pair.set_backend("naive")
    assert pair.backend == "naive"
    pair.set_backend(None)
    assert pair.backend == switch.default_backend(torch.device("cpu"))


def test_switch_uses_the_pairs_backend(monkeypatch):
    pair = cifar_pair(backend="naive")
    used = []
    monkeypatch.setattr(pair._switcher, "_naive", lambda *a: used.append("naive"))
    monkeypatch.setattr(pair._switcher, "_torch", lambda *a: used.append("torch"))
    pair.switch_to("motivated")
    pair.switch_to("base", backend="torch")   # the per-call override
    assert used == ["naive", "torch"] and pair.backend == "naive"


def test_unknown_backend_lists_the_choices():
    with pytest.raises(fm.ConfigError, match="'cuda'.*triton, torch, naive"):
        cifar_pair(backend="cuda")
    pair = cifar_pair()
    with pytest.raises(fm.ConfigError, match="triton, torch, naive"):
        pair.set_backend("fast")
    assert pair.backend == "torch"


def test_triton_on_a_cpu_needs_the_interpreter(monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    pair = cifar_pair()
    with pytest.raises(fm.ConfigError, match="needs CUDA.*TRITON_INTERPRET=1.*backend='torch'"):
        pair.set_backend("triton")
    with pytest.raises(fm.ConfigError, match="needs CUDA"):
        pair.switch_to("motivated", backend="triton")
    assert pair.active == "base"
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    pair.set_backend("triton")
    assert pair.backend == "triton"


def test_triton_that_does_not_import_is_named(monkeypatch):
    monkeypatch.setattr(switch, "triton_available", lambda: False)
    with pytest.raises(fm.ConfigError, match="triton package.*does not import.*backend='torch'"):
        cifar_pair(backend="triton")
    assert switch.default_backend(torch.device("cuda")) == "torch"


def test_to_re_resolves_an_automatic_backend(monkeypatch):
    pair = cifar_pair()
    monkeypatch.setattr(switch, "default_backend", lambda device: f"default for {torch.device(device).type}")
    pair.to("cpu")
    assert pair.backend == "default for cpu"
    pair.set_backend("naive")
    pair.to("cpu")
    assert pair.backend == "naive"   # an explicit choice is kept


# -- building members ---------------------------------------------------------------------------------
def test_per_member_kwargs_reach_each_member_and_leave_the_map_alone():
    shared = fm.MotivatedPair.from_names("efficientnet_b0", "efficientnet_b2", num_classes=10)
    pair = fm.MotivatedPair.from_names("efficientnet_b0", "efficientnet_b2", num_classes=10,
                                       base_kwargs={"drop_rate": 0.1}, motivated_kwargs={"drop_rate": 0.3})
    assert (pair.base.drop_rate, pair.motivated.drop_rate) == (0.1, 0.3)
    assert pair.weights_map.to_json() == shared.weights_map.to_json()
    assert pair.family.name == "efficientnet" and pair.names == ("efficientnet_b0", "efficientnet_b2")
    override = fm.MotivatedPair.from_arch("resnet20:resnet32", num_classes=10, motivated_kwargs={"num_classes": 12})
    assert (override.base.fc.out_features, override.motivated.fc.out_features) == (10, 12)


def test_img_size_reaches_only_families_whose_models_fix_it():
    vit = fm.MotivatedPair.from_arch("vit_tiny_patch16_224:small", num_classes=10, img_size=32, depth=1)
    assert vit.base.patch_embed.img_size == (32, 32) and vit.motivated.pos_embed.shape[1] == 1 + 4
    cnn = fm.MotivatedPair.from_arch("efficientnet_b0:b1", num_classes=10, img_size=32)   # ignored: any size runs
    assert cnn.base(torch.randn(1, 3, 40, 40)).shape == (1, 10)


def test_from_arch_takes_a_parsed_spec():
    arch = fm.parse_arch("resnet20:32")
    pair = fm.MotivatedPair.from_arch(arch, num_classes=10)
    assert pair.names == ("resnet20", "resnet32") and pair.family is arch.family


# -- classifiers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,kwargs,head", [
    ("efficientnet_b0:b1", {}, "classifier"),
    ("resnet18:34", {}, "fc"),
    ("resnet20:resnet32", {}, "fc"),
    ("vit_tiny_patch16_224:small", {"img_size": 32, "depth": 1}, "head"),
])
def test_classifier_of_each_family(spec, kwargs, head):
    pair = fm.MotivatedPair.from_arch(spec, num_classes=10, **kwargs)
    assert fm.parse_arch(spec).family.name in fm.list_families()
    for which in ("base", "motivated"):
        assert pair.classifier(which) is getattr(pair.model(which), head)
        assert pair.classifier(which).out_features == 10


def test_classifier_of_a_hand_made_pair():
    class WithFc(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.fc = nn.Linear(width, 3)

    pair = fm.MotivatedPair(WithFc(4), WithFc(6))
    assert pair.family is None and pair.classifier("motivated") is pair.motivated.fc
    bare = fm.MotivatedPair(nn.Sequential(nn.Linear(2, 3)), nn.Sequential(nn.Linear(2, 5)))
    with pytest.raises(AttributeError, match="base model \\(Sequential\\).*get_classifier"):
        bare.classifier("base")


@pytest.mark.parametrize("name,kwargs", [
    ("resnet20", {"num_classes": 10, "img_size": 32}),                 # constructor + load_state_dict
    ("efficientnet_b0", {"num_classes": 10, "img_size": 32}),          # timm's loader; img_size is not its kwarg
    ("vit_tiny_patch16_224", {"num_classes": 10, "img_size": 32, "depth": 1}),   # timm's loader with img_size
])
def test_each_family_loads_its_exported_files(tmp_path, name, kwargs):
    from safetensors.torch import save_file
    family = fm.families.family_of(name)
    torch.manual_seed(0)
    model = family.build(name, **kwargs).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "m.safetensors")
    torch.manual_seed(1)
    loaded = family.load_exported(name, tmp_path / "m.safetensors", kwargs).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
