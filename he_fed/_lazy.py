"""Package attributes imported on first use (PEP 562).

Every command of the file workflow, and every Flower message, is a fresh process.
One that plays the key holder, the aggregator or a share holder never trains, yet
importing scikit-learn (which imports scipy.stats and pandas) was most of a second
of its start. The packages whose modules it needs (:mod:`he_fed`,
:mod:`he_fed.protocol`, :mod:`he_fed.runtime`, :mod:`he_fed.data`) therefore
import each public name's module only when the name is first asked for;
``tests/test_lazy_imports.py`` checks that those processes never import it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["exports"]

# One first use at a time, process-wide: two threads that each resolved a name first
# imported scikit-learn's modules at once, and one of them could find
# ``sklearn.base`` partially initialised (red team 34). ``import he_fed`` imported
# everything in one thread before. A first use made while its thread is loading a
# module does not wait for the lock: that thread holds the module's import lock,
# which the lock's holder may be waiting for (red team 35: with a 5 s bound on the
# wait instead, a thread importing the Flower nodes waited 5 s on each of 12 names).
# So only threads that hold no import lock ever wait here, and the holder can
# always finish. ``from package import name`` reaches ``__getattr__`` through
# importlib's ``_handle_fromlist``, which holds no lock: it waits like any use
# (red team 36). A forked child gets a fresh lock: the thread that held the
# parent's does not exist in the child (red team 36).
#
# What this does not make safe (red team 37): first uses made while loading modules
# in two threads at once are not serialised (a thread loading a module must not
# wait), so scikit-learn's modules can still be imported from two threads at once
# there; and a child forked while another thread was loading a module waits for
# that module's import lock for ever, a limit of CPython's import locks that a plain
# ``import sklearn.base`` shares. A program that uses he-fed from several threads,
# or forks, imports what it uses first (``import he_fed.experiment`` loads nearly
# everything), as ``import he_fed`` used to do for it.
_LOCK = threading.RLock()
_BOOTSTRAP = "<frozen importlib._bootstrap"


def _fresh_lock() -> None:
    global _LOCK
    _LOCK = threading.RLock()


os.register_at_fork(after_in_child=_fresh_lock)


def _importing() -> bool:
    """Whether this thread is loading a module (holding its import lock)."""
    frame = sys._getframe(1).f_back  # the frame that used the name
    while frame is not None:
        code = frame.f_code
        if code.co_name == "_find_and_load" and code.co_filename.startswith(_BOOTSTRAP):
            return True
        frame = frame.f_back
    return False


def exports(
    package: str, modules: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` for names imported on first use.

    A name the package does not export but that is one of its modules is that module,
    imported, as when the package imported it eagerly.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    modules : mapping of str to sequence of str
        Each module, with the names the package exports from it.

    Returns
    -------
    tuple of callables
        ``(__getattr__, __dir__)``, to assign at the package's top level.
    """
    where = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        lock = _LOCK  # this one: a thread that forks while holding it releases it after
        locked = not _importing() and lock.acquire()
        try:
            module = where.get(name)
            if module is not None:
                value = getattr(importlib.import_module(module), name)
            elif (
                name.isidentifier()
                and not name.startswith("__")
                and importlib.util.find_spec(f"{package}.{name}")
            ):
                # A subpackage, as ``import he_fed; he_fed.crypto`` found it before.
                value = importlib.import_module(f"{package}.{name}")
            else:
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            setattr(sys.modules[package], name, value)  # found without this hook from now on
            return value
        finally:
            if locked:
                lock.release()

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__
