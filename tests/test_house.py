"""The package's shape, read from its source: no import circle among explorer's
modules, and no module reaching for another's private name."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "explorer"


def _module_name(path: Path) -> str:
    if not path.is_relative_to(ROOT):
        return path.stem
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.Module, modules: set[str]):
    """(module, the name it is bound to or None, names taken from it) for each import of
    an explorer module, function-local ones included: they defer an arrow, they do not
    remove it."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    yield alias.name, alias.asname, []
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                if child in modules:  # `from explorer import rows`
                    yield child, alias.asname or alias.name, []
                elif node.module in modules:  # `from explorer.rows import trained`
                    yield node.module, None, [alias.name]


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    return {
        name: {m for m, _, _ in _imports(ast.parse(path.read_text()), modules)} - {name}
        for name, path in files.items()
    }


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_tarjan_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(graph) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_explorers_modules_import_one_another_without_a_circle():
    graph = _graph()
    assert len(graph) > 30 and sum(map(len, graph.values())) > 100  # it read the package
    assert _circles(graph) == []


def _private_uses(path: Path, modules: set[str]) -> list[str]:
    """`from explorer.x import _y` and `x._y` where x is an explorer module."""
    tree = ast.parse(path.read_text())
    imports = list(_imports(tree, modules))
    aliases = {local: m for m, local, _ in imports if local}  # local name -> module
    found = [f"{m}.{n}" for m, _, names in imports for n in names if n.startswith("_")]
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{aliases[node.value.id]}.{node.attr}")
    own = _module_name(path)
    return [f"{path.name}: {name}" for name in found if not name.startswith(own + ".")]


def test_the_private_name_check_sees_both_spellings(tmp_path):
    modules = {"explorer.rows"}
    planted = tmp_path / "planted.py"
    planted.write_text("from explorer import rows\nfrom explorer.rows import _known\nrows._known\n")
    assert len(_private_uses(planted, modules)) == 2


def test_no_module_uses_another_modules_private_name():
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    offences = []
    for folder in ("explorer", "tests", "benchmarks", "experiments", "analysis"):
        for path in (ROOT / folder).rglob("*.py"):
            offences += _private_uses(path, modules)
    assert offences == []
