"""The layers stand on each other in one direction: study (the science, no Ray) <- analysis <- sweeps (Ray
Tune and the `sensitivity` command). No module imports from a layer above its own, and no private name
(a leading underscore) is imported from another module: what a module offers others is its public API."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"study": 0, "analysis": 1, "sweeps": 2}


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every import statement in the file, wherever it stands (lazy imports too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names)
    return found


def modules(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", LAYERS)
def test_no_module_imports_from_a_layer_above_its_own(layer):
    upward = [f"{path.relative_to(ROOT)} imports {module}" for path in modules(layer)
              for module, _ in imports(path) if LAYERS.get(module.split(".")[0], -1) > LAYERS[layer]]
    assert not upward, upward


@pytest.mark.parametrize("layer", LAYERS)
def test_no_private_name_is_imported_from_another_module(layer):
    private = [f"{path.relative_to(ROOT)}: from {module} import {name}" for path in modules(layer)
               for module, names in imports(path) if module.split(".")[0] in LAYERS
               for name in names if name.startswith("_")]
    assert not private, private


def test_the_checks_see_an_upward_and_a_private_import(tmp_path):
    """The two checks above are not vacuous: the parser finds both kinds in a file that has them."""
    path = tmp_path / "bad.py"
    path.write_text("def f():\n    from sweeps.cli import run\n    from study.trial import _hidden\n")
    found = imports(path)
    assert ("sweeps.cli", ["run"]) in found and ("study.trial", ["_hidden"]) in found
    assert len(modules("study")) > 20 and len(modules("sweeps")) > 5
