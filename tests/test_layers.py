"""The package's layers: no subpackage imports one above it; no import cycle anywhere (between subpackages or
inside one, function-level imports included); no module takes another's private name; library code never
reads tests/."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "covidviz"
LAYERS = ["io", "lungs", "model", "data", "explain", "evaluation", "training", "audit", "interop", "tools", "ui"]  # lowest first


def _imports() -> dict[Path, set[str]]:
    """Each module's imported covidviz subpackages, function-level imports included."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        out[path] = names
    return out


def test_no_subpackage_imports_a_layer_above_it():
    assert sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()) == sorted(LAYERS)
    upward = []
    for path, names in _imports().items():
        parts = path.relative_to(PACKAGE).parts
        if len(parts) < 2:
            continue
        own = LAYERS.index(parts[0])
        for name in names:
            pieces = name.split(".")
            if pieces[0] == "covidviz" and len(pieces) > 1 and pieces[1] in LAYERS and LAYERS.index(pieces[1]) > own:
                upward.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not upward, upward


def test_library_code_never_reads_tests():
    offenders = [str(p.relative_to(ROOT)) for p, names in _imports().items() if any(n.startswith("tests") for n in names)]
    offenders += [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if '"tests"' in p.read_text()
                  or "'tests'" in p.read_text() or "/ \"tests\"" in p.read_text()]
    assert not offenders, offenders


def test_every_name_a_package_face_offers_resolves():
    import importlib
    for package in LAYERS:
        face = importlib.import_module(f"covidviz.{package}")
        for name in getattr(face, "__all__", []):
            assert getattr(face, name) is not None, f"covidviz.{package}.{name}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _import_nodes(path: Path):
    """Every import statement of a module, at any depth (functions, methods, ``if`` blocks), with the module
    it names resolved to an absolute name."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            yield node, base
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name


def _graph() -> dict[str, set[str]]:
    """Module -> the covidviz modules it imports. ``from package import name`` points at the submodule when
    ``name`` is one, else at the package."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node, base in _import_nodes(path):
            if not base.startswith("covidviz"):
                continue
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    graph[name].add(target if target in modules else base)
            else:
                graph[name].add(base)
        graph[name] = {t for t in graph[name] if t in modules and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan): each holds at least one cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path):
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_anywhere_in_the_package():
    cycles = _cycles(_graph())
    assert not cycles, cycles


def test_no_module_imports_another_modules_private_name():
    modules = _modules()
    offenders = []
    for path in modules.values():
        for node, base in _import_nodes(path):
            if not isinstance(node, ast.ImportFrom) or not base.startswith("covidviz"):
                continue
            for alias in node.names:
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                if private and f"{base}.{alias.name}" not in modules:  # a private module itself is the package's
                    offenders.append(f"{path.relative_to(ROOT)}: from {base} import {alias.name}")
    assert not offenders, offenders
