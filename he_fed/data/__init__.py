"""Datasets, partitioners and the held-out test split."""

from __future__ import annotations

from he_fed.data._csv import MISSING_POLICIES, MISSING_VALUES, DatasetWarning, parse_categorical
from he_fed.data._datasets import (
    BUILTIN_DATASETS,
    SYNTHETIC_DATASETS,
    Dataset,
    builtin_name,
    load_dataset,
)
from he_fed.data._partition import PARTITIONERS, partition, train_test

__all__ = [
    "BUILTIN_DATASETS",
    "MISSING_POLICIES",
    "MISSING_VALUES",
    "PARTITIONERS",
    "SYNTHETIC_DATASETS",
    "Dataset",
    "DatasetWarning",
    "builtin_name",
    "load_dataset",
    "parse_categorical",
    "partition",
    "train_test",
]
