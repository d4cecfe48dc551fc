"""Datasets, partitioners and the held-out test split."""

from __future__ import annotations

from typing import TYPE_CHECKING

from he_fed import _lazy

if TYPE_CHECKING:
    from he_fed.data._csv import MISSING_POLICIES, MISSING_VALUES, parse_categorical
    from he_fed.data._datasets import (
        BUILTIN_DATASETS,
        SYNTHETIC_DATASETS,
        Dataset,
        builtin_name,
        has_own_size,
        load_dataset,
    )
    from he_fed.data._partition import (
        PARTITIONERS,
        iid_groups,
        partition,
        split_by_group,
        train_test,
    )
    from he_fed.data._target import (
        MAX_AUTO_CLASSES,
        TargetKind,
        choose_model,
        regression_target,
        target_kind,
        training_classes,
    )
    from he_fed.data._warnings import DatasetWarning

__all__ = [
    "BUILTIN_DATASETS",
    "MAX_AUTO_CLASSES",
    "MISSING_POLICIES",
    "MISSING_VALUES",
    "PARTITIONERS",
    "SYNTHETIC_DATASETS",
    "Dataset",
    "DatasetWarning",
    "TargetKind",
    "builtin_name",
    "choose_model",
    "has_own_size",
    "iid_groups",
    "load_dataset",
    "parse_categorical",
    "partition",
    "regression_target",
    "split_by_group",
    "target_kind",
    "train_test",
    "training_classes",
]

__getattr__, __dir__ = _lazy.exports(
    __name__,
    {
        "he_fed.data._csv": ("MISSING_POLICIES", "MISSING_VALUES", "parse_categorical"),
        "he_fed.data._datasets": (
            "BUILTIN_DATASETS",
            "SYNTHETIC_DATASETS",
            "Dataset",
            "builtin_name",
            "has_own_size",
            "load_dataset",
        ),
        "he_fed.data._partition": (
            "PARTITIONERS",
            "iid_groups",
            "partition",
            "split_by_group",
            "train_test",
        ),
        "he_fed.data._warnings": ("DatasetWarning",),
        "he_fed.data._target": (
            "MAX_AUTO_CLASSES",
            "TargetKind",
            "choose_model",
            "regression_target",
            "target_kind",
            "training_classes",
        ),
    },
)
