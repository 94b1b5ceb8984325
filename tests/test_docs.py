"""The docs name only what exists: every module path and dotted fastmotive name in docs/*.md and README.md,
and every module each package row of docs/architecture.md lists."""
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
PATH = re.compile(r"(?<![\w/.-])((?:fastmotive|kernels|tests|benchmarks)/[\w/.-]*\w)(?![\w*])")
DOTTED = re.compile(r"`(fastmotive(?:\.\w+)+)")


def resolves(name: str) -> bool:
    """Whether `name` is a module of fastmotive, or an attribute chain inside one."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_path_named_in_the_docs_exists(doc):
    missing = sorted({p for p in PATH.findall(doc.read_text())
                      if not (ROOT / p).exists() and not p.startswith("benchmarks/results")})
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_dotted_name_in_the_docs_resolves(doc):
    missing = sorted({n for n in DOTTED.findall(doc.read_text()) if not resolves(n)})
    assert not missing, f"{doc.name} names modules or attributes that do not exist: {missing}"


def test_the_package_table_lists_existing_modules_and_every_module():
    text = (ROOT / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| `((?:fastmotive|kernels)/[\w/]*)` \| (.*) \|$", text, re.M)
    assert len(rows) >= 10
    listed = set()
    for folder, cell in rows:
        for module in re.findall(r"`([\w/]+\.py)`", cell):
            matches = list((ROOT / folder).rglob(module))
            assert matches, f"docs/architecture.md: {folder} has no {module}"
            listed.update(matches)
    every = {p for p in [*(ROOT / "fastmotive").rglob("*.py"), *(ROOT / "kernels").rglob("*.py")]
             if p.name != "__init__.py" and p.parent != ROOT / "fastmotive"}
    assert not every - listed, f"modules missing from docs/architecture.md: {sorted(map(str, every - listed))}"
