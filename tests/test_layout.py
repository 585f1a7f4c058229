"""The house rules of the source tree, checked on every run: rooms that stand alone, no import circles, functions
that fit on a screen."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "detoxkit"
METHODS = ("acd", "adversarial", "attribute", "sro")
FLOOR = ("core", "lm", "scorers", "eval", "data", "training", "runs", "config", "errors", "assets", "memory")
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every detoxkit module a file imports, at the top or inside a function."""
    mod = _module_name(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names]
            out.update(n for n in [target, *names] if n.startswith("detoxkit"))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("detoxkit"))
    return out


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph = {}
    for mod, path in files.items():
        # an import of a package attribute (from .x import name) depends on the module x (or x/name.py)
        graph[mod] = {t for t in _imports(path) if t in files and t != mod}
    return graph


def _room(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_method_packages_do_not_import_each_other_and_the_floor_imports_no_method():
    bad = []
    for mod, deps in _graph().items():
        room = _room(mod)
        for dep in deps:
            other = _room(dep)
            if other in METHODS and other != room and (room in METHODS or room in FLOOR):
                bad.append(f"{mod} -> {dep}")
    assert not bad, "\n".join(sorted(bad))


def test_no_import_cycles():
    graph, cycles = _graph(), []
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            # a package's __init__ re-exporting its own modules is not a cycle of the code
            if dep.startswith(node + "."):
                continue
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep) :] + [dep] if dep in stack else [node, dep]
                if not any(a.startswith(b + ".") or b.startswith(a + ".") for a, b in zip(cycle, cycle[1:])):
                    cycles.append(" -> ".join(cycle))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_no_function_is_longer_than_a_screen():
    long = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "\n".join(sorted(long))


@pytest.mark.parametrize("room", METHODS)
def test_each_method_package_says_what_it_holds(room):
    init = SRC / room / "__init__.py"
    assert ast.get_docstring(ast.parse(init.read_text())), f"{init} has no docstring"
