"""The paper's training recipes shipped in fastmotive/config/recipes/: every key a setting, -c by name or by path with flags
overriding, ``fastmotive recipes``, packaging, and each recipe trained for two steps at a small size on synthetic
data."""
from pathlib import Path

import pytest
import tomllib
import yaml

from fastmotive.cli.main import main, parse
from fastmotive.config import settings
from fastmotive.config.recipes import RECIPES_DIR, list_recipes, resolve_config
from fastmotive.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["paper-efficientnet-cifar100", "paper-resnet-cifar", "paper-resnet-imagenet", "paper-transfer",
         "paper-vit-cifar"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_five_recipes_are_listed_with_section_and_description():
    recipes = list_recipes()
    assert [r.name for r in recipes] == NAMES
    for r in recipes:
        assert r.section.startswith("Sec. 4") and ("Table" in r.section), r.name
        assert r.description and len(r.description) < 120, r.name
        assert r.path.parent == RECIPES_DIR and r.path.suffix == ".yaml"


@pytest.mark.parametrize("name", NAMES)
def test_every_key_is_a_valid_setting(name):
    config = settings.read_yaml(RECIPES_DIR / f"{name}.yaml")   # unknown keys and bad values raise ConfigError
    assert settings.replace(settings.TrainConfig(), **config)    # and they make a TrainConfig


def raw(name: str) -> dict:
    return yaml.safe_load((RECIPES_DIR / f"{name}.yaml").read_text())


def test_the_papers_numbers():
    """Each recipe holds paper.md's numbers (Sec. 4's training setups) under the settings' names."""
    c = raw("paper-resnet-cifar")
    assert (c["opt"], c["momentum"], c["batch_size"], c["weight_decay"], c["epochs"], c["sched"]) == \
        ("momentum", 0.9, 128, 5e-4, 200, "cosine")   # classical momentum: timm's `sgd` is Nesterov's
    assert (c["arch"], c["dataset"]) == ("resnet20:resnet32", "cifar10")
    i = raw("paper-resnet-imagenet")
    assert (i["opt"], i["lr"], i["batch_size"] * i["grad_accum_steps"], i["weight_decay"], i["epochs"]) == \
        ("lamb", 8e-3, 2048, 0.02, 100)
    assert (i["mixup"], i["cutmix"], i["aa"], i["bce_loss"], i["img_size"]) == (0.1, 1.0, "rand-m6-mstd0.5-inc1", True, 160)
    assert (i["arch"], i["dataset"]) == ("resnet50:resnet101", "folder")
    t = raw("paper-transfer")
    assert (t["arch"], t["opt"], t["lr"], t["sched"], t["batch_size"], t["weight_decay"], t["aug_repeats"]) == \
        ("resnet50", "momentum", 0.01, "cosine", 384, 1e-4, 3)
    assert t["mixup"] > 0 and t["cutmix"] > 0 and t["aa"].startswith("rand-")
    v = raw("paper-vit-cifar")
    assert (v["opt"], v["lr"], v["batch_size"], v["weight_decay"], v["epochs"], v["warmup_epochs"], v["img_size"]) == \
        ("adamw", 2.5e-4, 64, 0.05, 300, 20, 224)
    assert v["reprob"] > 0 and v["mixup"] > 0 and v["cutmix"] > 0 and v["aa"].startswith("rand-")
    e = raw("paper-efficientnet-cifar100")
    assert (e["opt"], e["momentum"], e["lr"], e["sched"], e["decay_rate"], e["decay_epochs"], e["warmup_epochs"]) == \
        ("rmsproptf", 0.9, 0.01, "step", 0.97, 2, 5)
    assert (e["warmup_prefix"], e["batch_size"], e["drop"], e["drop_path"], e["hflip"], e["aa"]) == \
        (True, 64, "auto", "auto", 0.5, "cifar10")
    assert (e["arch"], e["dataset"], e["img_size"], e["condition"]) == ("efficientnet_b0:b2", "cifar100", 224, "streak:2")


def test_a_config_resolves_by_name_or_path(tmp_path, monkeypatch):
    shipped = RECIPES_DIR / "paper-resnet-cifar.yaml"
    assert resolve_config("paper-resnet-cifar") == shipped == resolve_config("paper-resnet-cifar.yaml")
    mine = tmp_path / "paper-resnet-cifar.yaml"   # a file of the same name wins: a path is a path
    mine.write_text("lr: 0.3\n")
    assert resolve_config(str(mine)) == mine
    monkeypatch.chdir(tmp_path)
    assert resolve_config("paper-resnet-cifar.yaml") == Path("paper-resnet-cifar.yaml")
    with pytest.raises(ConfigError, match="not a shipped recipe.*paper-transfer"):
        resolve_config("paper-resnet-cifr")
    with pytest.raises(ConfigError):
        resolve_config("sub/paper-resnet-cifar")   # a name is a bare name


def test_cli_takes_a_recipe_name_and_flags_override_it():
    args = parse(["train", "-c", "paper-resnet-cifar", "--lr", "0.05", "-b", "16"])
    config = settings.from_namespace(args)
    assert (config.arch, config.opt, config.weight_decay, config.epochs) == ("resnet20:resnet32", "momentum", 5e-4,
                                                                             200)
    assert (config.lr, config.batch_size) == (0.05, 16)
    assert args.explicit == {"lr", "batch_size"}
    compare = settings.from_namespace(parse(["compare", "-c", "paper-resnet-cifar", "--epochs", "3"]))
    assert (compare.arch, compare.epochs, compare.batch_size) == ("resnet20:resnet32", 3, 128)


def test_unknown_recipe_is_one_error_line(capsys):
    assert main(["train", "-c", "paper-nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "paper-nope" in err and "paper-efficientnet-cifar100" in err


def test_recipes_command_lists_them(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for r in list_recipes():
        assert r.name in out and r.section in out and r.description in out and str(r.path) in out
    assert main(["recipes", "--names"]) == 0
    assert capsys.readouterr().out.split() == NAMES


def test_the_recipes_are_package_data():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    tool = project["tool"]["setuptools"]
    assert "fastmotive.config.recipes" in tool["packages"] and tool["package-data"]["fastmotive.config.recipes"] == ["*.yaml"]
    assert "wandb" in project["project"]["optional-dependencies"]["wandb"]


# -- each recipe, two steps on synthetic data ----------------------------------------------------------------

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from fastmotive.testing import write_cifar10, write_cifar100, write_image_folder
    root = tmp_path_factory.mktemp("data")
    write_cifar10(root / "c10", n_train=8, n_test=8)
    write_cifar100(root / "c100", n_train=40, n_test=8)
    write_image_folder(root / "folder", classes=3, per_class=6, val_per_class=2, size=(40, 36))
    return root


# recipe -> (its dataset's synthetic copy, a small member pair or model of its family, extra flags)
SMALL = {
    "paper-resnet-cifar": ("c10", "resnet20:resnet32", []),
    "paper-resnet-imagenet": ("folder", "resnet18:resnet34", ["--grad-accum-steps", "2", "--epoch-batches", "4",
                                                             "-j", "0"]),
    "paper-transfer": ("c10", "resnet18", []),
    "paper-vit-cifar": ("c10", "vit_tiny_patch16_224:vit_small_patch16_224", []),
    "paper-efficientnet-cifar100": ("c100", "efficientnet_b0:b1", []),
}


@pytest.mark.parametrize("name", NAMES)   # 1-15 s each (2-core CPU)
def test_each_recipe_trains_two_steps(name, data, tmp_path):
    folder, arch, extra = SMALL[name]
    argv = ["train", "-c", name, "--data-dir", data / folder, "--img-size", "32", "--max-steps", "2",
            "--epoch-batches", "2", "--val-batches", "1", "-b", "4", "--output", tmp_path, "--experiment", "r",
            "--no-progress", "--arch", arch, "--device", "cpu", "--bn-calibrate", "8", *extra]
    assert main(list(map(str, argv))) == 0
    run = tmp_path / "r"
    args = yaml.safe_load((run / "args.yaml").read_text())
    recipe = raw(name)
    for key, value in recipe.items():   # the recipe's values, less the ones overridden here
        if key not in ("arch", "img_size", "batch_size", "grad_accum_steps", "data_dir"):
            assert args[key] == value, key
    assert (args["arch"], args["img_size"], args["batch_size"]) == (arch, 32, 4)
    steps = (run / "steps.csv").read_text().splitlines()
    assert len(steps) == 3   # the header and two steps
    summary = (run / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("epoch,train_loss,eval_loss,eval_top1,eval_top5,lr")
