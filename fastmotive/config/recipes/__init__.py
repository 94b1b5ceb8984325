"""The paper's training recipes (Acheli & Gaaloul, Sec. 4), shipped as YAML configs: ``fastmotive train -c NAME``
(or ``-c path/to/file.yaml``); flags given beside ``-c`` override the recipe's values.

Each file starts with ``# section: ...`` (where in the paper) and ``# description: ...`` (one line), then comments
with the paper's numbers and every choice the paper leaves open, then settings under their `TrainConfig` names.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastmotive.errors import ConfigError

RECIPES_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Recipe:
    name: str          # the file name without .yaml: what -c takes
    section: str       # where in the paper
    description: str   # one line
    path: Path


def _header(path: Path, key: str) -> str:
    for line in path.read_text().splitlines():
        if line.startswith(f"# {key}:"):
            return line.split(":", 1)[1].strip()
    return ""


def list_recipes() -> list[Recipe]:
    """Every shipped recipe, by name."""
    return [Recipe(p.stem, _header(p, "section"), _header(p, "description"), p)
            for p in sorted(RECIPES_DIR.glob("*.yaml"))]


def resolve_config(value: str) -> Path:
    """A ``-c`` value as a file: an existing file as given, else the shipped recipe of that name (``.yaml``
    optional).

    Raises:
        ConfigError: neither a file nor a recipe name; lists the recipes.
    """
    path = Path(value)
    if path.is_file():
        return path
    name = path.name[:-5] if path.name.endswith(".yaml") else path.name
    shipped = RECIPES_DIR / f"{name}.yaml"
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    names = ", ".join(r.name for r in list_recipes())
    raise ConfigError(f"config file {value} not found, and it is not a shipped recipe (recipes: {names}; "
                      "`fastmotive recipes` describes them)")
