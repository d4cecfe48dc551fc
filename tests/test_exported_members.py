"""Every public package re-exports a complete, sorted ``__all__``."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = [
    "he_fed",
    "he_fed.bench",
    "he_fed.crypto",
    "he_fed.data",
    "he_fed.exceptions",
    "he_fed.models",
    "he_fed.privacy",
    "he_fed.protocol",
    "he_fed.runtime",
    "he_fed.runtime.files",
    "he_fed.runtime.flower",
]


def _isort_order(name: str) -> tuple[int, str]:
    """isort's order for ``__all__`` (ruff's RUF022): CONSTANTS, then Classes, then the rest."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_every_member_exists(name):
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(set(exported), key=_isort_order)
    for member in exported:
        assert hasattr(module, member), f"{name}.{member} is in __all__ but missing"


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_class_and_function_is_exported(name):
    module = importlib.import_module(name)
    public = {
        n
        for n, obj in vars(module).items()
        if not n.startswith("_")
        and getattr(obj, "__module__", "").startswith(name)
        and isinstance(obj, type | type(lambda: 0))
    }
    assert public <= set(module.__all__)


def test_exceptions_form_one_tree():
    from he_fed import exceptions

    for name in exceptions.__all__:
        assert issubclass(getattr(exceptions, name), exceptions.HEFedError)
