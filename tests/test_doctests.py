"""The examples in every module's docstrings run and print what they claim."""

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("llmstab.theory", "llmstab.fluid_models", "llmstab.checkers")
MODULES = sorted(
    info.name
    for package in PACKAGES
    for info in pkgutil.walk_packages(importlib.import_module(package).__path__, prefix=f"{package}.")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, monkeypatch):
    monkeypatch.chdir(pytest.importorskip("tests.conftest").ROOT)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
