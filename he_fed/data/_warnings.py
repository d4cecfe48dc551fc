"""The data loaders' warning, in a module of its own: the CLI catches it in every
command, and the loaders themselves import scikit-learn."""

from __future__ import annotations

__all__ = ["DatasetWarning"]


class DatasetWarning(UserWarning):
    """he-fed changed the data: the loader ignored an index column or dropped incomplete
    rows, or a private fit clamped values to their public bounds."""
