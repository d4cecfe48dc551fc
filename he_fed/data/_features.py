"""A client's features checked before anything is computed from them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from he_fed.exceptions import DatasetError

__all__ = ["check_features"]


def check_features(X: np.ndarray, owner: str, names: Sequence[str] | None = None) -> None:
    """Refuse features that are not finite, or whose squares overflow a double.

    Standardisation sums each column's squares and training multiplies features
    together, so a column holding ``1e300`` turns into ``inf`` and then ``NaN`` far
    from the cause: here it is named.

    Parameters
    ----------
    X : numpy.ndarray
        The features, of shape ``(n, d)`` and dtype ``float64``.
    owner : str
        Who holds them, for the message (``"client 'a'"``).
    names : sequence of str, optional
        The columns' names, for the message (default: their indices).

    Raises
    ------
    DatasetError
        If a value is NaN or infinite, or a column's sum of squares is not finite.
    """
    finite = np.isfinite(X)
    if not finite.all():
        columns = _named(np.flatnonzero(~finite.all(axis=0)), names)
        raise DatasetError(f"{owner} has NaN or infinite values in column(s) {columns}")
    with np.errstate(over="ignore"):
        squares = np.einsum("ij,ij->j", X, X)
    wide = np.flatnonzero(~np.isfinite(squares))
    if wide.size:
        largest = float(np.abs(X[:, wide]).max())
        raise DatasetError(
            f"{owner} has column(s) {_named(wide, names)} whose squares overflow a "
            f"double (values up to {largest:g}); rescale them"
        )


def _named(columns: np.ndarray, names: Sequence[str] | None) -> list[int] | list[str]:
    return columns.tolist() if names is None else [names[i] for i in columns]
