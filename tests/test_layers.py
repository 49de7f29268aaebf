"""The package's layers: no subpackage imports one above it, so the import graph has no cycle, and library
code never reads tests/."""

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
