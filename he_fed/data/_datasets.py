"""Built-in datasets (scikit-learn's bundled ones, synthetic) and a CSV loader.

Nothing is downloaded: the built-ins ship inside scikit-learn.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn import datasets as skdata

from he_fed.data._memory import check_fits_in_memory
from he_fed.exceptions import DatasetError

__all__ = ["BUILTIN_DATASETS", "SYNTHETIC_DATASETS", "Dataset", "builtin_name", "load_dataset"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """Features, targets and what kind of problem they pose.

    Attributes
    ----------
    name : str
        Dataset name (or CSV path).
    X : ndarray of shape (n_samples, n_features)
        Features.
    y : ndarray of shape (n_samples,)
        Targets: class labels or real values.
    task : {"classification", "regression"}
        Binary classification or regression.
    feature_names : tuple of str
        Names of the columns of ``X``.
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    task: str
    feature_names: tuple[str, ...]

    @property
    def classes(self) -> np.ndarray | None:
        """The two class labels, for classification."""
        return np.unique(self.y) if self.task == "classification" else None


def _bunch(name: str, loader: Callable[..., object], binarize: bool = False) -> Dataset:
    bunch = loader()
    X = np.asarray(bunch.data, dtype=np.float64)  # type: ignore[attr-defined]
    y = np.asarray(bunch.target)  # type: ignore[attr-defined]
    names = tuple(str(n) for n in bunch.feature_names)  # type: ignore[attr-defined]
    if binarize:  # wine: class 0 against the rest
        y = (y == 0).astype(np.int64)
    task = "regression" if np.issubdtype(y.dtype, np.floating) else "classification"
    return Dataset(name, X, y, task, names)


def _synthetic(name: str, n_samples: int | None, n_features: int | None, seed: int) -> Dataset:
    n = 1000 if n_samples is None else n_samples
    d = 20 if n_features is None else n_features
    if n < 10 or d < 1:
        raise DatasetError("synthetic data needs --samples >= 10 and --features >= 1")
    check_fits_in_memory(n, d)  # before anything is allocated
    if name == "synthetic_classification":
        X, y = skdata.make_classification(
            n_samples=n,
            n_features=d,
            n_informative=max(1, min(d, d // 2 + 1)),
            n_redundant=0,
            n_repeated=0,
            random_state=seed,
        )
        task = "classification"
    else:
        X, y = skdata.make_regression(
            n_samples=n, n_features=d, n_informative=max(1, d // 2), noise=10.0, random_state=seed
        )
        task = "regression"
    return Dataset(name, X, y, task, tuple(f"x{i}" for i in range(d)))


#: Built-in datasets by name (:func:`builtin_name` also reads them with ``-`` for ``_``).
BUILTIN_DATASETS = (
    "breast_cancer",
    "diabetes",
    "wine",
    "synthetic_classification",
    "synthetic_regression",
)
#: The built-in datasets whose size ``n_samples`` and ``n_features`` set.
SYNTHETIC_DATASETS = ("synthetic_classification", "synthetic_regression")


def builtin_name(name: str) -> str | None:
    """The canonical name of a built-in dataset, or None if ``name`` is none.

    ``-`` and ``_`` are alike, and so are upper and lower case: ``breast-cancer``
    is ``breast_cancer``.
    """
    canonical = name.lower().replace("-", "_")
    return canonical if canonical in BUILTIN_DATASETS else None


def _load_csv(path: Path, target: str | None) -> Dataset:
    if target is None:
        raise DatasetError(f"{path}: a CSV dataset needs --target COLUMN")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # Excel writes a BOM
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None
    if len(rows) < 3:
        raise DatasetError(f"{path}: needs a header and at least two rows")
    header = [h.strip() for h in rows[0]]
    if target not in header:
        raise DatasetError(f"{path}: no column {target!r} (columns: {', '.join(header)})")
    t = header.index(target)
    features, labels = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DatasetError(f"{path}, line {line}: {len(row)} fields, header has {len(header)}")
        values = []
        for col, cell in enumerate(row):
            if col == t:
                continue
            try:
                values.append(float(cell))
            except ValueError:
                raise DatasetError(
                    f"{path}, line {line}: column {header[col]!r} holds {cell!r}, not a number"
                ) from None
        features.append(values)
        labels.append(row[t].strip())
    X = np.array(features, dtype=np.float64)
    if not np.isfinite(X).all():
        raise DatasetError(f"{path}: features must be finite numbers")
    names = tuple(h for i, h in enumerate(header) if i != t)
    distinct = sorted(set(labels))
    if len(distinct) == 2:
        return Dataset(str(path), X, np.array(labels), "classification", names)
    try:
        y = np.array([float(v) for v in labels])
    except ValueError:
        raise DatasetError(
            f"{path}: target {target!r} has {len(distinct)} labels; classification needs "
            "exactly two, regression needs numbers"
        ) from None
    return Dataset(str(path), X, y, "regression", names)


def load_dataset(
    name: str,
    *,
    target: str | None = None,
    n_samples: int | None = None,
    n_features: int | None = None,
    random_state: int = 0,
) -> Dataset:
    """Load a built-in dataset or a CSV file.

    Parameters
    ----------
    name : str
        One of :data:`BUILTIN_DATASETS` (with ``-`` or ``_``), or the path of a CSV
        file with a header row.
    target : str, optional
        The CSV column to predict (required for CSV). A column with exactly two
        distinct values makes a classification problem; otherwise it must be numeric.
    n_samples, n_features : int, optional
        Size of the synthetic datasets (default 1000 by 20).
    random_state : int, default=0
        Seed for the synthetic datasets.

    Returns
    -------
    Dataset

    Raises
    ------
    DatasetError
        If the name is unknown or the file cannot be read.
    """
    builtin = builtin_name(name)
    if builtin == "breast_cancer":
        return _bunch(builtin, skdata.load_breast_cancer)
    if builtin == "diabetes":
        return _bunch(builtin, skdata.load_diabetes)
    if builtin == "wine":
        return _bunch(builtin, skdata.load_wine, binarize=True)
    if builtin in SYNTHETIC_DATASETS:
        return _synthetic(builtin, n_samples, n_features, random_state)
    path = Path(name)
    if path.suffix.lower() == ".csv":
        if not path.is_file():
            raise DatasetError(f"no such CSV file: {path}")
        return _load_csv(path, target)
    raise DatasetError(
        f"unknown dataset {name!r}; choose one of {', '.join(BUILTIN_DATASETS)} "
        "(- or _ alike) or a .csv path"
    )
