"""The packages form layers: models/, data/, losses/, evaluation/ and utils/ import nothing
from the layers above them (engine/, benchmarks/, main.py, inference.py), not even inside
a function, so each can be read, tested and reused without the training machinery."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOWER = ("models", "data", "losses", "evaluation", "utils")
UPPER = ("engine", "benchmarks", "main", "inference")


def imported_modules(tree):
    """(line, module name) of every absolute import in `tree`, wherever it sits, including
    `importlib.import_module("...")` / `__import__("...")` with a literal name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) == "import_module" or getattr(node.func, "id", None) ==
                   "__import__")):
            yield node.lineno, node.args[0].value


def upward_imports(path, root=REPO):
    """'file:line: imports name' for every import of `path` from the layers above."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [f"{path.relative_to(root)}:{line}: imports {name}" for line, name in imported_modules(tree)
            if name.split(".")[0] in UPPER]


def lower_layer_files():
    return sorted(path for package in LOWER for path in (REPO / package).rglob("*.py"))


def test_lower_layers_import_nothing_from_the_layers_above():
    files = lower_layer_files()
    assert len(files) > 20  # the packages were found
    problems = [problem for path in files for problem in upward_imports(path)]
    assert not problems, "imports up the layers:\n" + "\n".join(problems)


@pytest.mark.parametrize("source,found", [
    ("import engine.checkpoint", "module.py:1: imports engine.checkpoint"),
    ("from engine import checkpoint", "module.py:1: imports engine"),
    ("def f():\n    from benchmarks.ablation import write_json", "module.py:2: imports benchmarks.ablation"),
    ("import main as trainer", "module.py:1: imports main"),
    ("importlib.import_module('inference')", "module.py:1: imports inference"),
])
def test_every_kind_of_upward_import_is_named_with_its_line(tmp_path, source, found):
    path = tmp_path / "module.py"
    path.write_text(source + "\nimport utils.errors\nfrom evaluation.metrics import image_region\nimport mainly\n")
    assert upward_imports(path, root=tmp_path) == [found]
