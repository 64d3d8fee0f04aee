"""The package layout is the architecture: imports only point down (docs/architecture.md).

cli ─► report ─► inference ─► models, datasets, metrics, losses ─► compat ─► errors, files, …
cli ─► runners ─► callbacks, loggers ─► models, datasets, metrics, losses ─► compat ─► …
tasks ─► inference, callbacks, models, datasets, metrics, losses ─► …   (the core imports no task)
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "podium"

BOTTOM = {"errors", "interrupts", "files", "overlays", "targets", "checkpoints", "validation"}
PLAIN = {"losses", "metrics", "models", "datasets"}  # plain torch / numpy: no Catalyst
ALLOWED = {
    "errors": set(),
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


def _layer(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _imports(path: Path):
    """(line, dotted module) of every import in the file, wherever it sits (functions too)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module == "podium" and node.level == 0:
            for alias in node.names:  # `from podium import files`: the module podium.files
                yield node.lineno, f"podium.{alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name


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
        layer = _layer(path)
        for line, module in _imports(path):
            top, _, rest = module.partition(".")
            upward = top == "podium" and rest.split(".")[0] not in ALLOWED[layer] | {layer}
            if upward or (layer in PLAIN and top == "catalyst"):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    assert not wrong, "imports that point up (see ALLOWED):\n" + "\n".join(wrong)
