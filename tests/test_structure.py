"""The package's shape: no import cycle between fastmotive's modules (function-level imports included), at most
8 modules directly in fastmotive/ (the rest live in packages that say what they hold), and no library module
over 350 lines."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"fastmotive": ROOT / "fastmotive", "fastmotive.kernels": ROOT / "kernels"}
MAX_LINES = 350
MAX_TOP_LEVEL = 8   # modules directly in fastmotive/, besides __init__ and __main__


def module_files() -> dict[str, Path]:
    files = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join([package, *parts])] = path
    return files


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The fastmotive modules that module `name` imports anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import sub` imports the submodule pkg.sub when there is one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle():
    files = module_files()
    graph = {name: imported_modules(name, path, set(files)) for name, path in files.items()}
    # a package's __init__ re-exports its submodules; a submodule importing its own package's __init__ is the
    # cycle Python tolerates only by luck of order, so it is counted as one
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_over_350_lines():
    long = {name: n for name, path in module_files().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_few_modules_directly_in_the_package():
    top = sorted(p.name for p in (ROOT / "fastmotive").glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(top) <= MAX_TOP_LEVEL, top


def test_the_kernels_import_nothing_of_the_core():
    """kernels/ holds device code only; the host side (checks, the arena's bit view, the launch) is in core."""
    files = module_files()
    kernels = {n: p for n, p in files.items() if n.startswith("fastmotive.kernels")}
    for name, path in kernels.items():
        imported = imported_modules(name, path, set(files))
        assert all(m.startswith("fastmotive.kernels") for m in imported), (name, imported)


def test_every_subpackage_is_in_the_wheel():
    """A subpackage missing from pyproject's explicit list works in the editable install and vanishes from a wheel."""
    import tomllib
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "fastmotive").rglob("__init__.py")}
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
