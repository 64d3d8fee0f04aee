"""The package layout is the architecture: imports only point down (docs/architecture.md).

cli ─► report ─► inference ─► models, datasets, metrics, losses ─► compat ─► errors, files, …
cli ─► runners ─► callbacks, loggers ─► models, datasets, metrics, losses ─► compat ─► …
cli ─► tasks ─► inference, callbacks, models, datasets, metrics, losses ─► …

The tasks (podium/tasks/<task>/) sit above the core: the core imports no task, but for the
task registry `podium.tasks` (that one module, imported by `cli` and by the model registry, which
finds the tasks' models by name) and the old module paths left where a task's files used to be,
which only re-export them (a docstring "Moved to …" and imports).
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "podium"

BOTTOM = {
    "errors",
    "interrupts",
    "files",
    "overlays",
    "targets",
    "checkpoints",
    "validation",
    "lazy",
}
PLAIN = {"losses", "metrics", "models", "datasets"}  # plain torch / numpy: no Catalyst
ALLOWED = {
    "errors": set(),
    "lazy": set(),
    "interrupts": set(),
    "files": {"errors", "interrupts"},
    "overlays": {"errors", "files"},
    "targets": {"errors"},
    "checkpoints": {"errors"},
    "validation": {"errors"},
    "compat": BOTTOM,
    **{name: BOTTOM | {"compat"} for name in PLAIN},
    "callbacks": BOTTOM | {"compat"} | PLAIN,
    "loggers": BOTTOM | {"compat"},
    "runners": BOTTOM | {"compat", "callbacks", "loggers"} | PLAIN,
    "inference": BOTTOM | {"compat"} | PLAIN,
    "report": BOTTOM | {"compat", "inference", "loggers"} | PLAIN,
    "tasks": BOTTOM | {"compat", "callbacks", "inference"} | PLAIN,
    "cli": BOTTOM | {"compat", "callbacks", "loggers", "runners", "inference", "report"} | PLAIN,
}
REGISTRY = "podium.tasks"  # the one module of the tasks that these may import:
REGISTRY_USERS = ("cli", "podium/models/registry.py")  # a layer, or a module


def _layer(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _imports(tree: ast.Module):
    """(line, dotted module) of every import in the file, wherever it sits (functions too)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "podium" and node.level == 0:
            for alias in node.names:  # `from podium import files`: the module podium.files
                yield node.lineno, f"podium.{alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name


def _is_old_path(tree: ast.Module) -> bool:
    """A module left where a task's file used to be: "Moved to …", then `from … import` only."""
    if not (ast.get_docstring(tree) or "").startswith("Moved to "):
        return False
    return all(isinstance(node, ast.ImportFrom) for node in tree.body[1:])


def wrong_imports(layer: str, source: str, where: str = "<module>"):
    """`where:line imports module` for each import of `source` (a module of `layer`) pointing up."""
    tree = ast.parse(source, where)
    wrong = []
    for line, module in _imports(tree):
        top, _, rest = module.partition(".")
        target = rest.split(".")[0]
        if top != "podium" or target in ALLOWED[layer] | {layer}:
            upward = False
        elif target == "tasks":
            user = layer in REGISTRY_USERS or where in REGISTRY_USERS
            upward = not (_is_old_path(tree) or (user and module == REGISTRY))
        else:
            upward = True
        if upward or (layer in PLAIN and top == "catalyst"):
            wrong.append(f"{where}:{line} imports {module}")
    return wrong


MODULES = sorted(
    p
    for p in PACKAGE.rglob("*.py")
    if p.name not in ("__init__.py", "__main__.py") or p.parent != PACKAGE
)


def test_every_package_has_a_layer():
    assert {_layer(p) for p in MODULES} == set(ALLOWED)


def test_imports_point_down():
    wrong = []
    for path in MODULES:
        where = str(path.relative_to(PACKAGE.parent))
        wrong += wrong_imports(_layer(path), path.read_text(), where)
    assert not wrong, "imports that point up (see ALLOWED):\n" + "\n".join(wrong)


@pytest.mark.parametrize(
    "layer, source",
    [
        ("models", "from podium.callbacks import FreezeCallback"),
        ("losses", "import catalyst"),
        ("inference", "from podium.tasks.centernet.model import decode_centernet"),
        ("callbacks", "def f():\n    from podium.tasks.centernet import metrics\n"),
        ("models", '"""Moved to x."""\nfrom podium.tasks.boxes.model import *\nX = 1\n'),
        ("models", "from podium.tasks.boxes.model import *  # noqa: F403"),
        ("cli", "from podium.tasks.centernet import cli"),
        ("cli", "import podium.tasks.geopose.predict"),
        ("tasks", "from podium.cli.main import main"),
        ("tasks", "from podium.runners import PodiumRunner"),
        ("models", "def f():\n    from podium import tasks\n"),  # not the model registry
    ],
)
def test_a_wrong_direction_import_is_caught(layer, source):
    assert wrong_imports(layer, source), f"{layer}: {source!r} passed"


@pytest.mark.parametrize(
    "layer, source",
    [
        ("models", '"""Moved to `podium.tasks.x`."""\nfrom podium.tasks.x import *\n'),
        ("cli", "from podium import tasks"),
        ("cli", "from podium.tasks import register_command"),
        ("tasks", "from podium.inference.tta import build_tta\nfrom podium.callbacks import x"),
    ],
)
def test_the_allowed_ways_to_the_tasks_pass(layer, source):
    assert not wrong_imports(layer, source)
    registry = "def f():\n    from podium import tasks\n"
    assert not wrong_imports("models", registry, "podium/models/registry.py")
