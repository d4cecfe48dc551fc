"""Reading a CSV file into features and a target, the way a pandas user expects.

What counts as a missing value, how pandas' unnamed index column is recognised,
and how a categorical column is one-hot encoded under a declared vocabulary all
live here. :func:`he_fed.data.load_dataset` calls :func:`read_csv`.

Every problem is a one-line :class:`~he_fed.exceptions.DatasetError` that names
the file line (counting the header as line 1) and the column. A change the loader
makes to the data (an index column ignored, incomplete rows dropped) is a
:class:`DatasetWarning`, which ``he-fed`` prints as one ``Warning:`` line.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from he_fed.data._features import check_features
from he_fed.data._target import target_kind
from he_fed.data._warnings import DatasetWarning
from he_fed.exceptions import DatasetError

__all__ = [
    "MISSING_POLICIES",
    "MISSING_VALUES",
    "DatasetWarning",
    "parse_categorical",
    "read_csv",
]

#: Cells read as missing, compared after trimming spaces: pandas' default
#: ``na_values`` (``read_csv``), plus ``?``, the UCI repository's marker.
MISSING_VALUES: frozenset[str] = frozenset(
    {
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
        "?",
    }
)

#: What to do with a row holding a missing value: refuse the file, or drop the row.
MISSING_POLICIES = ("error", "drop")


def parse_categorical(specs: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Parse ``COLUMN=v1,v2,...`` declarations (the ``--categorical`` flag) into vocabularies.

    Parameters
    ----------
    specs : iterable of str
        One declaration per categorical column (a single text is one declaration).
        The column name ends at the first ``=``; values are separated by commas;
        spaces around both are trimmed.

    Returns
    -------
    dict of str to tuple of str
        Each column's vocabulary, in the declared order.

    Raises
    ------
    DatasetError
        If a declaration has no ``=``, no column name, an empty or repeated value,
        or a column is declared twice.
    """
    vocabularies: dict[str, tuple[str, ...]] = {}
    for spec in [specs] if isinstance(specs, str) else specs:
        column, sep, listed = spec.partition("=")
        column = column.strip()
        if not sep or not column:
            raise DatasetError(f"--categorical {spec!r} is not COLUMN=v1,v2,...")
        if column in vocabularies:
            raise DatasetError(f"--categorical declares column {column!r} twice")
        vocabularies[column] = _vocabulary(column, [v.strip() for v in listed.split(",")])
    return vocabularies


def _vocabulary(column: str, values: Sequence[str]) -> tuple[str, ...]:
    if not values or any(not v for v in values):
        raise DatasetError(f"--categorical {column}: every value must be non-empty")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise DatasetError(f"--categorical {column}: {', '.join(map(repr, repeated))} repeated")
    return tuple(values)


def _delimiter(path: Path, delimiter: str | None) -> str:
    if delimiter is None:
        return "\t" if path.suffix.lower() == ".tsv" else ","
    sep = {"tab": "\t", "\\t": "\t"}.get(delimiter, delimiter)
    if len(sep) != 1 or sep in '"\r\n':
        raise DatasetError(
            f"--delimiter must be one character (or 'tab'), other than a quote or newline; "
            f"got {delimiter!r}"
        )
    return sep


def _rows(path: Path, delimiter: str) -> list[tuple[int, list[str]]]:
    """Non-blank rows, each with the file line it ends on (the header is line 1)."""
    rows: list[tuple[int, list[str]]] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # Excel writes a BOM
            reader = csv.reader(handle, delimiter=delimiter)
            try:
                for row in reader:
                    if any(cell.strip() for cell in row):
                        rows.append((reader.line_num, row))
            except csv.Error as exc:
                raise DatasetError(f"{path}, line {reader.line_num}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None
    return rows


def _index_columns(path: Path, header: list[str], rows: list[tuple[int, list[str]]]) -> int:
    """How many leading columns are a pandas index (no name in the header); warns if any."""
    unnamed = 0
    while unnamed < len(header) - 1 and not header[unnamed]:
        unnamed += 1
    if unnamed:
        which, has = "the first column", "it has"
        if unnamed > 1:
            which, has = f"the first {unnamed} columns", "they have"
        numbers = [str(i) for i in range(len(rows))]
        note = ""
        if unnamed == 1 and [row[0].strip() for _, row in rows] == numbers:
            note = f" and holds the row numbers 0..{len(rows) - 1}"
        warnings.warn(
            f"{path}: ignored {which}: {has} no name in the header{note}, like the index "
            "pandas' to_csv writes by default (write with index=False to leave it out)",
            DatasetWarning,
            stacklevel=4,
        )
    return unnamed


def _check_columns(
    path: Path, columns: list[str], target: str, vocabularies: Mapping[str, Sequence[str]]
) -> None:
    for position, name in enumerate(columns, start=1):
        if not name:
            raise DatasetError(f"{path}: column {position} has no name in the header")
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise DatasetError(f"{path}: column {repeated[0]!r} appears twice in the header")
    if target not in columns:
        hint = ""
        if len(columns) == 1:
            for sep, flag in ((";", "';'"), ("\t", "tab"), ("|", "'|'")):
                if sep in columns[0]:
                    hint = f"; is it separated by {sep!r}? pass --delimiter {flag}"
                    break
        raise DatasetError(f"{path}: no column {target!r} (columns: {', '.join(columns)}){hint}")
    if len(columns) < 2:
        raise DatasetError(f"{path}: no feature columns besides the target {target!r}")
    for name in vocabularies:
        if name == target:
            raise DatasetError(
                f"{path}: the target {target!r} cannot be --categorical; "
                "two distinct labels already make a classification target"
            )
        if name not in columns:
            raise DatasetError(f"{path}: --categorical names no column {name!r}")


def _missing_cell(
    cells: list[str], columns: list[str], vocabularies: Mapping[str, Sequence[str]]
) -> int | None:
    """The first column whose cell is missing (a declared category value never is)."""
    for i, cell in enumerate(cells):
        if cell in MISSING_VALUES and cell not in vocabularies.get(columns[i], ()):
            return i
    return None


def _number(path: Path, line: int, column: str, cell: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise DatasetError(
            f"{path}, line {line}: column {column!r} holds {cell!r}, not a number; "
            f"if it is categorical, declare its values: --categorical {column}=v1,v2,..."
        ) from None
    if not math.isfinite(value):
        raise DatasetError(f"{path}, line {line}: column {column!r} holds {cell!r}, not finite")
    return value


def _one_hot(
    path: Path, line: int, column: str, cell: str, vocabulary: Sequence[str]
) -> list[float]:
    if cell not in vocabulary:
        raise DatasetError(
            f"{path}, line {line}: column {column!r} holds {cell!r}, which is not in its "
            f"declared vocabulary ({','.join(vocabulary)})"
        )
    return [1.0 if cell == value else 0.0 for value in vocabulary]


def _target(path: Path, target: str, labels: list[tuple[int, str]]) -> tuple[np.ndarray, str]:
    """Text labels, or numbers: classification or regression as :func:`target_kind` says.

    Two distinct labels are classification, whatever they are. A target that is
    all numbers is classified by its numbers (whole numbers with few distinct
    values are class labels), and class labels are kept as the file's text.
    """
    text = np.array([label for _, label in labels])
    seen = {label for _, label in labels}
    if len(seen) == 2:
        return text, "classification"
    try:
        values = [float(label) for _, label in labels]
    except ValueError:
        # Text: class labels (a constant target is refused here).
        target_kind(text, name=f"{path}: target {target!r}")
        return text, "classification"
    for (line, label), value in zip(labels, values, strict=True):
        if not math.isfinite(value):
            raise DatasetError(
                f"{path}, line {line}: target {target!r} holds {label!r}, not finite"
            )
    numbers = np.array(values, dtype=np.float64)
    check_features(numbers[:, None], str(path), [target])  # before sklearn casts it to int
    if target_kind(numbers, name=f"{path}: target {target!r}").task == "classification":
        return text, "classification"
    return numbers, "regression"


def read_csv(
    path: Path,
    target: str | None,
    *,
    delimiter: str | None = None,
    missing: str = "error",
    categorical: Mapping[str, Sequence[str]] | None = None,
) -> tuple[np.ndarray, np.ndarray, str, tuple[str, ...]]:
    """Read a CSV file with a header row (see :func:`he_fed.data.load_dataset`).

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
        The labels as text (classification) or the numbers (regression).
    task : {"classification", "regression"}
    feature_names : tuple of str
        ``COLUMN=value`` for each one-hot column of a categorical column.

    Raises
    ------
    DatasetError
        If the file cannot be read, or a cell, column or option is invalid.
    """
    if target is None:
        raise DatasetError(f"{path}: a CSV dataset needs --target COLUMN")
    vocabularies = {
        str(c).strip(): _vocabulary(str(c).strip(), [str(v).strip() for v in values])
        for c, values in (categorical or {}).items()
    }
    rows = _rows(path, _delimiter(path, delimiter))
    if len(rows) < 3:
        raise DatasetError(f"{path}: needs a header and at least two rows")
    header = [h.strip() for h in rows[0][1]]
    skip = _index_columns(path, header, rows[1:])
    columns = header[skip:]
    _check_columns(path, columns, target, vocabularies)
    t = columns.index(target)
    features: list[list[float]] = []
    labels: list[tuple[int, str]] = []
    dropped: list[int] = []
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise DatasetError(f"{path}, line {line}: {len(row)} fields, header has {len(header)}")
        cells = [cell.strip() for cell in row[skip:]]
        gap = _missing_cell(cells, columns, vocabularies)
        if gap is not None:
            if missing == "drop":
                dropped.append(line)
                continue
            what = "is empty" if not cells[gap] else f"holds {cells[gap]!r}, a missing value"
            raise DatasetError(
                f"{path}, line {line}: column {columns[gap]!r} {what}; fill it in, "
                "or pass --missing drop to drop incomplete rows"
            )
        values: list[float] = []
        for i, cell in enumerate(cells):
            if i == t:
                continue
            if columns[i] in vocabularies:
                values.extend(_one_hot(path, line, columns[i], cell, vocabularies[columns[i]]))
            else:
                values.append(_number(path, line, columns[i], cell))
        features.append(values)
        labels.append((line, cells[t]))
    if dropped:
        shown = ", ".join(map(str, dropped[:5])) + (", ..." if len(dropped) > 5 else "")
        warnings.warn(
            f"{path}: dropped {len(dropped)} of {len(rows) - 1} rows with a missing value "
            f"(line{'s' * (len(dropped) > 1)} {shown})",
            DatasetWarning,
            stacklevel=3,
        )
    if len(features) < 2:
        raise DatasetError(
            f"{path}: {len(features)} complete row{'s' * (len(features) != 1)} left after "
            f"dropping {len(dropped)} with a missing value; needs at least two"
        )
    names: list[str] = []
    for i, name in enumerate(columns):
        if i != t:
            names.extend(
                [f"{name}={v}" for v in vocabularies[name]] if name in vocabularies else [name]
            )
    y, task = _target(path, target, labels)
    X = np.array(features, dtype=np.float64)
    check_features(X, str(path), names)
    return X, y, task, tuple(names)
