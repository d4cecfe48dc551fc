"""Built-in datasets (scikit-learn's bundled ones, synthetic) and CSV files.

Nothing is downloaded: the built-ins ship inside scikit-learn. CSV parsing lives
in :mod:`he_fed.data._csv`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn import datasets as skdata

from he_fed.data._csv import MISSING_POLICIES, read_csv
from he_fed.data._memory import check_fits_in_memory
from he_fed.data._target import target_kind
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
        Classification (two classes or more) or regression, as
        :func:`~he_fed.data.target_kind` reads the target.
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
        """The class labels, sorted, for classification."""
        return np.unique(self.y) if self.task == "classification" else None


def _bunch(name: str, loader: Callable[..., object]) -> Dataset:
    bunch = loader()
    X = np.asarray(bunch.data, dtype=np.float64)  # type: ignore[attr-defined]
    y = np.asarray(bunch.target)  # type: ignore[attr-defined]
    names = tuple(str(n) for n in bunch.feature_names)  # type: ignore[attr-defined]
    return Dataset(name, X, y, target_kind(y).task, names)


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


#: Built-in datasets by name (:func:`builtin_name` also reads them with ``-`` for ``_``):
#: breast_cancer (2 classes), diabetes (regression), wine (3 classes), digits
#: (10 classes, 8 x 8 images) and the synthetic ones.
BUILTIN_DATASETS = (
    "breast_cancer",
    "diabetes",
    "wine",
    "digits",
    "synthetic_classification",
    "synthetic_regression",
)
#: The built-in datasets whose size ``n_samples`` and ``n_features`` set.
SYNTHETIC_DATASETS = ("synthetic_classification", "synthetic_regression")
#: What a dataset file may end in: comma- or tab-separated values.
_FILE_SUFFIXES = (".csv", ".tsv")


def builtin_name(name: str) -> str | None:
    """The canonical name of a built-in dataset, or None if ``name`` is none.

    ``-`` and ``_`` are alike, and so are upper and lower case: ``breast-cancer``
    is ``breast_cancer``.
    """
    canonical = name.lower().replace("-", "_")
    return canonical if canonical in BUILTIN_DATASETS else None


def has_own_size(name: str) -> bool:
    """Whether ``name`` fixes its own rows and features (a built-in dataset other
    than the synthetic ones, or a ``.csv`` or ``.tsv`` file), so that ``samples``
    and ``features`` mean nothing for it."""
    builtin = builtin_name(name)
    if builtin is not None:
        return builtin not in SYNTHETIC_DATASETS
    return Path(name).suffix.lower() in _FILE_SUFFIXES


def load_dataset(
    name: str,
    *,
    target: str | None = None,
    n_samples: int | None = None,
    n_features: int | None = None,
    random_state: int = 0,
    delimiter: str | None = None,
    missing: str = "error",
    categorical: Mapping[str, Sequence[str]] | None = None,
) -> Dataset:
    """Load a built-in dataset or a CSV file.

    Parameters
    ----------
    name : str
        One of :data:`BUILTIN_DATASETS` (with ``-`` or ``_``), or the path of a
        ``.csv`` (comma-separated) or ``.tsv`` (tab-separated) file with a header
        row. Leading columns with no name in the header (the row index pandas'
        ``to_csv`` writes) are ignored, with a :class:`~he_fed.data.DatasetWarning`.
    target : str, optional
        The CSV column to predict (required for CSV). Two distinct values (text
        or numbers), text labels, or whole numbers with at most
        :data:`~he_fed.data.MAX_AUTO_CLASSES` distinct values make a
        classification problem, with the file's text as labels; other numbers a
        regression problem (see :func:`~he_fed.data.target_kind`). A constant
        target is an error.
    n_samples, n_features : int, optional
        Size of the synthetic datasets (default 1000 by 20).
    random_state : int, default=0
        Seed for the synthetic datasets.
    delimiter : str, optional
        The CSV field separator, one character (``"tab"`` or ``"\\t"`` for a tab);
        default ``","``, or a tab for a ``.tsv`` file.
    missing : {"error", "drop"}, default="error"
        What a CSV row holding a missing value does: raise an error naming its
        line and column, or be dropped (with a :class:`~he_fed.data.DatasetWarning` counting the
        rows). Missing means a cell in :data:`~he_fed.data.MISSING_VALUES` once spaces are
        trimmed: empty, ``NA``, ``NaN``, ``nan``, ``null``, ``None``, ``N/A``,
        ``#N/A``, ... (pandas' default ``na_values``) or ``?``.
    categorical : mapping of str to sequence of str, optional
        CSV feature columns holding categories, each with its declared vocabulary
        (see :func:`~he_fed.data.parse_categorical`). Column ``C`` with values ``(a, b)`` becomes
        the one-hot features ``C=a`` and ``C=b``, in its place; a value outside the
        vocabulary is an error. The vocabulary is declared, never read from the
        data, so that clients holding different files agree on the features. A
        declared value is never read as missing (``NA`` may be a category).

    Returns
    -------
    Dataset

    Raises
    ------
    DatasetError
        If the name is unknown, the file cannot be read, or a cell, column or
        option is invalid; the message names the file line (the header is line 1)
        and the column.
    """
    if missing not in MISSING_POLICIES:
        raise DatasetError(f"missing must be one of {', '.join(MISSING_POLICIES)}, not {missing!r}")
    builtin = builtin_name(name)
    if builtin in BUILTIN_DATASETS and (delimiter is not None or categorical or missing != "error"):
        raise DatasetError(
            f"delimiter, missing and categorical apply to CSV files, not to {builtin!r}"
        )
    if builtin == "breast_cancer":
        return _bunch(builtin, skdata.load_breast_cancer)
    if builtin == "diabetes":
        return _bunch(builtin, skdata.load_diabetes)
    if builtin == "wine":
        return _bunch(builtin, skdata.load_wine)
    if builtin == "digits":
        return _bunch(builtin, skdata.load_digits)
    if builtin in SYNTHETIC_DATASETS:
        return _synthetic(builtin, n_samples, n_features, random_state)
    path = Path(name)
    if path.suffix.lower() in _FILE_SUFFIXES:
        if not path.is_file():
            raise DatasetError(f"no such CSV file: {path}")
        X, y, task, names = read_csv(
            path, target, delimiter=delimiter, missing=missing, categorical=categorical
        )
        return Dataset(str(path), X, y, task, names)
    raise DatasetError(
        f"unknown dataset {name!r}; choose one of {', '.join(BUILTIN_DATASETS)} "
        "(- or _ alike) or a .csv or .tsv path"
    )
