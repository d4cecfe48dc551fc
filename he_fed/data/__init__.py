"""Datasets, partitioners and the held-out test split."""

from __future__ import annotations

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
    "PARTITIONERS",
    "SYNTHETIC_DATASETS",
    "Dataset",
    "builtin_name",
    "load_dataset",
    "partition",
    "train_test",
]
