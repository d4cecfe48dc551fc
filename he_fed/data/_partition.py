"""Splitting a dataset across clients, and holding out a test set."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from he_fed._validation import check_int
from he_fed.exceptions import ConfigurationError, DatasetError

__all__ = ["PARTITIONERS", "iid_groups", "partition", "split_by_group", "train_test"]

#: Partitioning methods by name.
PARTITIONERS = ("iid", "dirichlet")


def train_test(
    X: np.ndarray, y: np.ndarray, *, task: str, test_size: float = 0.25, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hold out a test set (stratified for classification).

    For classification every class keeps a row on both sides: a class absent from
    the training split is absent from every client's, and no model learns it.

    Returns
    -------
    X_train, X_test, y_train, y_test : ndarray

    Raises
    ------
    DatasetError
        If the target holds one class, a class has a single row, or a side of the
        split has fewer rows than there are classes.
    """
    if not 0.0 < test_size < 1.0:
        raise ConfigurationError("test_size must be in (0, 1)")
    if task != "classification":
        return train_test_split(  # type: ignore[no-any-return]
            X, y, test_size=test_size, random_state=random_state
        )
    classes, counts = np.unique(y, return_counts=True)
    if classes.size < 2:
        raise DatasetError(
            f"the target holds a single class ({classes[0].item()!r}); classification "
            "needs at least two"
        )
    if np.any(counts < 2):
        raise DatasetError(
            f"class {classes[counts < 2][0].item()!r} has a single row, so it would be absent "
            "from every client's training split or from the test split; give each class at "
            "least two rows, or drop it"
        )
    try:
        split = train_test_split(X, y, test_size=test_size, random_state=random_state, stratify=y)
    except ValueError as exc:  # too few rows for one of each class on each side
        raise DatasetError(f"cannot split the data by class: {exc}") from None
    absent = np.setdiff1d(classes, split[2])
    if absent.size:  # stratification keeps one row of each class for training
        raise DatasetError(
            f"class {absent[0].item()!r} is absent from every client's training split"
        )
    return split  # type: ignore[no-any-return]


def _label_groups(y: np.ndarray, task: str, bins: int = 5) -> np.ndarray:
    if task == "classification":
        return np.unique(y, return_inverse=True)[1]
    edges = np.quantile(y, np.linspace(0, 1, bins + 1)[1:-1])
    return np.digitize(y, edges)


def partition(
    y: np.ndarray,
    n_clients: int,
    *,
    method: str = "iid",
    alpha: float = 0.5,
    task: str = "classification",
    random_state: int = 0,
    min_samples: int = 2,
) -> list[np.ndarray]:
    """Split sample indices across clients.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Targets (used by ``dirichlet``).
    n_clients : int
        Number of clients.
    method : {"iid", "dirichlet"}, default="iid"
        ``iid`` shuffles and deals equal shares. ``dirichlet`` gives each label
        (for regression, each target quintile) to clients in proportions drawn from
        ``Dirichlet(alpha)``: small ``alpha`` means strong label skew.
    alpha : float, default=0.5
        Dirichlet concentration.
    task : {"classification", "regression"}
        How labels are grouped for ``dirichlet``.
    random_state : int, default=0
        Seed.
    min_samples : int, default=2
        Fewest samples any client may get; ``dirichlet`` redraws until it holds.

    Returns
    -------
    list of ndarray
        Sorted sample indices, one array per client.
    """
    n = len(y)
    check_int("n_clients", n_clients, low=1)
    if n < n_clients * min_samples:
        raise DatasetError(
            f"{n} samples cannot give {n_clients} clients {min_samples} samples each"
        )
    rng = np.random.default_rng(random_state)
    if method == "iid":
        return [np.sort(part) for part in np.array_split(rng.permutation(n), n_clients)]
    if method != "dirichlet":
        raise ConfigurationError(f"unknown partition {method!r}; choose one of {PARTITIONERS}")
    if not alpha > 0:
        raise ConfigurationError("the Dirichlet alpha must be positive")
    groups = _label_groups(np.asarray(y), task)
    for _ in range(1000):
        shares: list[list[int]] = [[] for _ in range(n_clients)]
        for g in np.unique(groups):
            members = rng.permutation(np.flatnonzero(groups == g))
            cuts = (np.cumsum(rng.dirichlet(np.full(n_clients, alpha))) * len(members)).astype(int)
            for k, part in enumerate(np.split(members, cuts[:-1])):
                shares[k].extend(part.tolist())
        if min(len(s) for s in shares) >= min_samples:
            return [np.sort(np.array(s, dtype=np.int64)) for s in shares]
    raise DatasetError(
        f"Dirichlet(alpha={alpha}) left some client with fewer than {min_samples} samples "
        "in 1000 draws; raise alpha or use fewer clients"
    )


def iid_groups(n_samples: int, n_clients: int, *, random_state: int = 0) -> np.ndarray:
    """Which client holds each row, for rows dealt IID to ``n_clients`` clients.

    :func:`partition`'s ``iid`` split, as the ``groups`` array that the estimators'
    ``fit`` takes: shuffled, then equal shares (sizes differ by at most one).

    Returns
    -------
    ndarray of shape (n_samples,)
        Client numbers from 0 to ``n_clients - 1``.

    Raises
    ------
    DatasetError
        If there are fewer rows than clients.
    """
    groups = np.empty(n_samples, dtype=np.int64)
    for client, rows in enumerate(
        partition(np.zeros(n_samples), n_clients, random_state=random_state, min_samples=1)
    ):
        groups[rows] = client
    return groups


def split_by_group(
    X: np.ndarray, y: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Each group's rows of ``X`` and ``y``, in the order of ``np.unique(groups)``.

    The same partitions as ``[(X[groups == g], y[groups == g]) for g in ids]``, rows
    in their original order, but in one stable sort rather than one pass over every
    row per group, which is quadratic in the number of clients.

    Returns
    -------
    ids : ndarray
        The distinct groups, sorted.
    partitions : list of (X_k, y_k)
        One per group, in the order of ``ids``.
    """
    ids, inverse = np.unique(groups, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(ids)))[:-1]
    return ids, [(X[rows], y[rows]) for rows in np.split(order, bounds)]
