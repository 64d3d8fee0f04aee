"""podium/lazy.py: the packages that re-export their modules' names load each on first read."""

import importlib
import subprocess
import sys

import pytest

PACKAGES = ["podium.datasets", "podium.inference", "podium.loggers"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_is_the_object_its_module_defines(package):
    module = importlib.import_module(package)
    assert module.__all__ == list(module._lazy_exports)
    for name, source in module._lazy_exports.items():
        assert getattr(module, name) is getattr(importlib.import_module(source), name), name
    with pytest.raises(AttributeError, match="has no attribute 'nothing_of_that_name'"):
        module.nothing_of_that_name  # noqa: B018


def test_a_submodule_import_keeps_the_function_of_the_same_name():
    import podium.datasets
    import podium.datasets.letterbox  # binds the submodule on the package, as any import does

    assert callable(podium.datasets.letterbox)
    assert podium.datasets.letterbox is sys.modules["podium.datasets.letterbox"].letterbox


def test_importing_a_package_imports_none_of_its_heavy_modules():
    code = (
        "import sys; import podium.datasets, podium.inference, podium.loggers; "
        "print(sorted(m for m in ('torch', 'catalyst', 'albumentations', 'pytorch_toolbelt') "
        "if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
