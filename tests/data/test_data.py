"""Datasets, CSV loading and partitioning."""

from __future__ import annotations

import numpy as np
import pytest

from he_fed.data import BUILTIN_DATASETS, load_dataset, partition, train_test
from he_fed.exceptions import ConfigurationError, DatasetError


@pytest.mark.parametrize("name", BUILTIN_DATASETS)
def test_builtin_datasets_load_with_the_right_task(name):
    data = load_dataset(name, n_samples=200, n_features=6)
    assert data.X.shape[0] == data.y.shape[0] > 0
    assert len(data.feature_names) == data.X.shape[1]
    if data.task == "classification":
        assert len(data.classes) == 2
    assert data.task == (
        "regression" if name in ("diabetes", "synthetic_regression") else "classification"
    )


def test_wine_is_class_zero_against_the_rest():
    data = load_dataset("wine")
    assert set(np.unique(data.y)) == {0, 1}
    assert data.y.sum() == 59  # class 0 of the 178 wines


def test_csv_loader_reads_numbers_and_a_two_label_target(tmp_path):
    path = tmp_path / "hospital.csv"
    path.write_text("age,bmi,outcome\n50,22.5,sick\n61,30.1,well\n45,27.0,sick\n")
    data = load_dataset(str(path), target="outcome")
    assert data.task == "classification"
    np.testing.assert_array_equal(data.X, [[50, 22.5], [61, 30.1], [45, 27.0]])
    assert data.feature_names == ("age", "bmi")


@pytest.mark.parametrize(
    ("text", "target", "message"),
    [
        ("a,b\n1,x\n2,3\n3,4\n", "b", "not a number|labels"),
        ("a,b\n1,2\n3,4\n5,6\n", None, "--target"),
        ("a,b\n1,2\n3,4\n5,6\n", "c", "no column 'c'"),
        ("a,b\nfoo,2\n3,4\n5,6\n", "b", "holds 'foo', not a number"),
        ("a,b\n1,2,3\n3,4\n5,6\n", "b", "3 fields"),
    ],
)
def test_csv_loader_errors_name_the_problem(tmp_path, text, target, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DatasetError, match=message):
        load_dataset(str(path), target=target)


def test_unknown_dataset_and_missing_file():
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("mnist")
    with pytest.raises(DatasetError, match="no such CSV"):
        load_dataset("/nonexistent/data.csv", target="y")


def test_iid_partition_covers_every_row_once():
    parts = partition(np.zeros(103), 5)
    assert sorted(np.concatenate(parts).tolist()) == list(range(103))
    assert {len(p) for p in parts} == {20, 21}


def test_dirichlet_partition_skews_labels_more_as_alpha_falls():
    y = np.repeat([0, 1], 500)

    def skew(alpha: float) -> float:
        parts = partition(y, 10, method="dirichlet", alpha=alpha, random_state=3)
        assert sorted(np.concatenate(parts).tolist()) == list(range(1000))
        return float(np.mean([abs(y[p].mean() - 0.5) for p in parts]))

    assert skew(0.1) > skew(100.0) + 0.2


def test_dirichlet_partition_works_for_regression_and_refuses_bad_input():
    y = np.linspace(0, 1, 300)
    parts = partition(y, 4, method="dirichlet", alpha=1.0, task="regression")
    assert min(len(p) for p in parts) >= 2
    with pytest.raises(ConfigurationError):
        partition(y, 4, method="round-robin")
    with pytest.raises(DatasetError):
        partition(np.zeros(5), 4)


def test_train_test_split_is_stratified():
    data = load_dataset("breast_cancer")
    _, _, y_train, y_test = train_test(data.X, data.y, task="classification", random_state=0)
    assert abs(y_train.mean() - y_test.mean()) < 0.01
