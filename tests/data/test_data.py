"""Datasets, CSV loading and partitioning."""

from __future__ import annotations

import numpy as np
import pytest

from he_fed.data import (
    BUILTIN_DATASETS,
    MISSING_VALUES,
    DatasetWarning,
    load_dataset,
    parse_categorical,
    partition,
    split_by_group,
    target_kind,
    train_test,
)
from he_fed.exceptions import ConfigurationError, DatasetError


@pytest.mark.parametrize("name", BUILTIN_DATASETS)
def test_builtin_datasets_load_with_the_right_task(name):
    data = load_dataset(name, n_samples=200, n_features=6)
    assert data.X.shape[0] == data.y.shape[0] > 0
    assert len(data.feature_names) == data.X.shape[1]
    classes = {"breast_cancer": 2, "wine": 3, "digits": 10, "synthetic_classification": 2}
    if data.task == "classification":
        assert len(data.classes) == classes[name]
    assert data.task == (
        "regression" if name in ("diabetes", "synthetic_regression") else "classification"
    )


def test_wine_and_digits_are_their_multiclass_problems():
    wine = load_dataset("wine")
    assert np.bincount(wine.y).tolist() == [59, 71, 48]  # the 178 wines of three cultivars
    digits = load_dataset("digits")
    assert digits.X.shape == (1797, 64) and digits.classes.tolist() == list(range(10))


@pytest.mark.parametrize(
    ("y", "task", "reason"),
    [
        ([0, 1, 1, 0], "classification", "2 distinct whole numbers (type_of_target: binary)"),
        (["a", "b", "c", "a"], "classification", "3 distinct labels (type_of_target: multiclass)"),
        ([0.0, 1.0, 2.0, 1.0], "classification", "3 distinct whole numbers"),
        ([0.5, 1.0, 2.0, 1.0], "regression", "not all whole (type_of_target: continuous)"),
        (
            list(range(21)),
            "regression",
            "21 distinct whole numbers (type_of_target: multiclass), more than the 20 classes",
        ),
        (list(range(20)), "classification", "20 distinct whole numbers"),
    ],
)
def test_target_kind_follows_type_of_target_with_few_classes(y, task, reason):
    kind = target_kind(np.array(y))
    assert kind.task == task
    assert reason in kind.reason
    assert kind.n_values == len(set(y))


def test_a_constant_target_is_refused():
    with pytest.raises(DatasetError, match="the target is constant: all 3 rows hold 'x'"):
        target_kind(np.array(["x", "x", "x"]))
    with pytest.raises(DatasetError, match="all 2 rows hold 4.0"):
        target_kind(np.array([4.0, 4.0]))


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
        ("a,b\n1,x\n2,x\n3,x\n", "b", "target 'b' is constant: all 3 rows hold 'x'"),
        ("a,b\n1,7\n2,7\n3,7\n", "b", "target 'b' is constant: all 3 rows hold 7.0"),
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


# --- CSV files as pandas users write them (issue 17) ---------------------------------


def _csv(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _refused(path, **options):
    with pytest.raises(DatasetError) as info:
        load_dataset(str(path), **options)
    return str(info.value)


def test_nan_in_the_target_is_a_missing_value_on_its_line_not_a_regression_target(tmp_path):
    path = _csv(tmp_path, "a,b,y\n1,2,0\n3,4,1\n5,6,NaN\n7,8,1\n")
    assert _refused(path, target="y") == (
        f"{path}, line 4: column 'y' holds 'NaN', a missing value; fill it in, "
        "or pass --missing drop to drop incomplete rows"
    )


def test_an_empty_target_cell_names_its_line(tmp_path):
    path = _csv(tmp_path, "a,b,y\n1,2,0\n3,4,\n5,6,1\n")
    assert _refused(path, target="y").startswith(f"{path}, line 3: column 'y' is empty; ")


def test_a_missing_feature_names_its_line_and_column(tmp_path):
    path = _csv(tmp_path, "a,b,y\n1,2,0\n3,4,1\n\n5,null,1\n")  # the blank line still counts
    assert _refused(path, target="y").startswith(
        f"{path}, line 5: column 'b' holds 'null', a missing value"
    )


def test_missing_drop_drops_incomplete_rows_and_warns_how_many(tmp_path):
    path = _csv(tmp_path, "a,b,y\n1,2,0\n3,,1\n5,6,NaN\n7,8,1\n9, NA ,0\n2,3,?\n")
    with pytest.warns(DatasetWarning) as caught:
        data = load_dataset(str(path), target="y", missing="drop")
    assert [str(w.message) for w in caught] == [
        f"{path}: dropped 4 of 6 rows with a missing value (lines 3, 4, 6, 7)"
    ]
    np.testing.assert_array_equal(data.X, [[1, 2], [7, 8]])
    assert data.task == "classification" and data.y.tolist() == ["0", "1"]


def test_dropping_every_row_but_one_is_an_error(tmp_path):
    path = _csv(tmp_path, "a,y\n1,0\n,1\n3,\n")
    with pytest.warns(DatasetWarning):
        message = _refused(path, target="y", missing="drop")
    assert message == (
        f"{path}: 1 complete row left after dropping 2 with a missing value; needs at least two"
    )


@pytest.mark.parametrize("token", sorted(MISSING_VALUES))
def test_every_missing_token_is_missing_as_pandas_reads_it(tmp_path, token):
    pd = pytest.importorskip("pandas")
    path = _csv(tmp_path, f"a,y\n1,0\n{token},1\n3,1\n4,0\n")
    with pytest.warns(DatasetWarning, match="dropped 1 of 4 rows"):
        data = load_dataset(str(path), target="y", missing="drop")
    np.testing.assert_array_equal(data.X, [[1], [3], [4]])
    # pandas' default na_values, plus "?" (the UCI repository's marker), which pandas keeps.
    read = pd.read_csv(path)["a"]
    assert bool(read.isna().iloc[1]) == (token != "?")


def test_pandas_default_index_column_is_ignored_with_a_warning(tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": [0.5, 1.5, 2.5, 3.5], "b": [1.0, 0.0, 1.0, 0.0], "y": [0, 0, 1, 1]})
    path = tmp_path / "sorted.csv"
    frame.to_csv(path)  # index=True by default: a first column with no name, 0..3
    assert path.read_text().splitlines()[:2] == [",a,b,y", "0,0.5,1.0,0"]
    with pytest.warns(DatasetWarning) as caught:
        data = load_dataset(str(path), target="y")
    assert [str(w.message) for w in caught] == [
        f"{path}: ignored the first column: it has no name in the header and holds the row "
        "numbers 0..3, like the index pandas' to_csv writes by default (write with "
        "index=False to leave it out)"
    ]
    assert data.feature_names == ("a", "b")
    np.testing.assert_array_equal(data.X, frame[["a", "b"]].to_numpy())


def test_an_unnamed_index_of_a_filtered_frame_is_ignored_too(tmp_path):
    path = _csv(tmp_path, ",a,y\n3,0.5,0\n7,1.5,1\n9,2.5,1\n")
    with pytest.warns(
        DatasetWarning, match=r"ignored the first column: it has no name in the header, like"
    ):
        data = load_dataset(str(path), target="y")
    np.testing.assert_array_equal(data.X, [[0.5], [1.5], [2.5]])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,,y\n1,2,0\n3,4,1\n", "column 2 has no name in the header"),
        ("a,a,y\n1,2,0\n3,4,1\n", "column 'a' appears twice in the header"),
        ("y\n0\n1\n", "no feature columns besides the target 'y'"),
        ("a;b;y\n1;2;0\n3;4;1\n", "is it separated by ';'? pass --delimiter ';'"),
        ("a,y\ninf,0\n3,1\n", "line 2: column 'a' holds 'inf', not finite"),
        ("a,y\n1,2\n3,-inf\n4,5\n", "line 3: target 'y' holds '-inf', not finite"),
        ("a,b,y\n1,1e300,0\n3,4,1\n", "column(s) ['b'] whose squares overflow a double"),
        ("a,y\n1,2\n3,-1e200\n4,5\n5,6\n", "column(s) ['y'] whose squares overflow a double"),
        ("a,y\n" + "x" * 200_000 + ",0\n3,1\n", "line 2: field larger than field limit"),
    ],
)
def test_csv_columns_and_cells_are_checked_with_their_line(tmp_path, text, message):
    assert message in _refused(_csv(tmp_path, text), target="y")


def test_a_target_of_text_or_few_whole_numbers_is_multiclass_and_keeps_its_text(tmp_path):
    text = load_dataset(str(_csv(tmp_path, "a,y\n1,sick\n2,well\n3,well\n4,Sick\n")), target="y")
    assert text.task == "classification" and text.classes.tolist() == ["Sick", "sick", "well"]
    numbers = load_dataset(str(_csv(tmp_path, "a,y\n1,3\n2,1\n3,2\n4,1\n")), target="y")
    assert numbers.task == "classification" and numbers.y.tolist() == ["3", "1", "2", "1"]
    many = "a,y\n" + "".join(f"{i},{i}\n" for i in range(21))
    regression = load_dataset(str(_csv(tmp_path, many)), target="y")
    assert regression.task == "regression" and regression.y.dtype == np.float64


def test_delimiter_option_and_tsv_extension(tmp_path):
    semicolons = _csv(tmp_path, "a;b;y\n1;2.5;0\n3;4;1\n")
    data = load_dataset(str(semicolons), target="y", delimiter=";")
    assert data.feature_names == ("a", "b") and data.X.shape == (2, 2)
    tabs = _csv(tmp_path, "a\tb\ty\n1\t2\tx\n3\t4\tz\n", name="data.tsv")
    np.testing.assert_array_equal(load_dataset(str(tabs), target="y").X, [[1, 2], [3, 4]])
    for spelling in ("tab", "\\t", "\t"):
        comma_named = _csv(tmp_path, "a\tb\ty\n1\t2\tx\n3\t4\tz\n", name="tabs.csv")
        assert load_dataset(str(comma_named), target="y", delimiter=spelling).X.shape == (2, 2)
    commas_in_tsv = _csv(tmp_path, "a,b,y\n1,2,x\n3,4,z\n", name="commas.tsv")
    assert load_dataset(str(commas_in_tsv), target="y", delimiter=",").X.shape == (2, 2)
    assert "must be one character" in _refused(semicolons, target="y", delimiter=";;")


def test_a_non_numeric_feature_suggests_declaring_it_categorical(tmp_path):
    path = _csv(tmp_path, "age,ward,y\n50,A,0\n61,B,1\n")
    assert _refused(path, target="y") == (
        f"{path}, line 2: column 'ward' holds 'A', not a number; if it is categorical, "
        "declare its values: --categorical ward=v1,v2,..."
    )


def test_categorical_columns_are_one_hot_under_the_declared_vocabulary(tmp_path):
    path = _csv(tmp_path, "age,ward,region,y\n50,B,NA,0\n61,A,EU,1\n45,B,EU,0\n")
    data = load_dataset(
        str(path),
        target="y",
        categorical={"ward": ["A", "B", "C"], "region": ("EU", "NA")},  # NA: North America
    )
    assert data.feature_names == ("age", "ward=A", "ward=B", "ward=C", "region=EU", "region=NA")
    np.testing.assert_array_equal(
        data.X, [[50, 0, 1, 0, 0, 1], [61, 1, 0, 0, 1, 0], [45, 0, 1, 0, 1, 0]]
    )
    # Another client's file with only wards A and B gets the same columns.
    other = _csv(tmp_path, "age,ward,region,y\n30,A,EU,0\n40,A,EU,1\n", name="other.csv")
    other_data = load_dataset(
        str(other), target="y", categorical={"ward": ["A", "B", "C"], "region": ["EU", "NA"]}
    )
    assert other_data.feature_names == data.feature_names


@pytest.mark.parametrize(
    ("categorical", "message"),
    [
        (
            {"ward": ["A"]},
            "line 3: column 'ward' holds 'D', which is not in its declared vocabulary (A)",
        ),
        ({"y": ["0", "1"]}, "the target 'y' cannot be --categorical"),
        ({"room": ["1"]}, "--categorical names no column 'room'"),
        ({"ward": ["A", "A"]}, "--categorical ward: 'A' repeated"),
        ({"ward": ["A", ""]}, "--categorical ward: every value must be non-empty"),
    ],
)
def test_categorical_declarations_are_checked(tmp_path, categorical, message):
    path = _csv(tmp_path, "age,ward,y\n50,A,0\n61,D,1\n")
    assert message in _refused(path, target="y", categorical=categorical)


def test_parse_categorical_reads_the_command_line_declarations():
    assert parse_categorical(["ward = A, B ,C", "sex=f,m"]) == {
        "ward": ("A", "B", "C"),
        "sex": ("f", "m"),
    }
    assert parse_categorical("ward=A,B") == {"ward": ("A", "B")}
    for specs, message in (
        (["ward"], "not COLUMN=v1,v2,..."),
        (["=A,B"], "not COLUMN=v1,v2,..."),
        (["ward=A", "ward=B"], "declares column 'ward' twice"),
        (["ward=A,,B"], "every value must be non-empty"),
    ):
        with pytest.raises(DatasetError, match=message):
            parse_categorical(specs)


def test_csv_options_are_refused_for_builtin_datasets_and_unknown_policies(tmp_path):
    with pytest.raises(DatasetError, match="apply to CSV files"):
        load_dataset("wine", categorical={"x": ["a"]})
    with pytest.raises(DatasetError, match="apply to CSV files"):
        load_dataset("wine", delimiter=";")
    with pytest.raises(DatasetError, match="delimiter, missing and categorical apply to CSV"):
        load_dataset("wine", missing="drop")  # taken and unused before (an audit, stop 43)
    with pytest.raises(DatasetError, match="missing must be one of error, drop"):
        load_dataset(str(_csv(tmp_path, "a,y\n1,0\n2,1\n")), target="y", missing="fill")


def test_a_byte_order_mark_and_a_pandas_index_together(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf,a,y\r\n0,1.5,0\r\n1,2.5,1\r\n")
    with pytest.warns(DatasetWarning, match="row numbers 0..1"):
        data = load_dataset(str(path), target="y")
    assert data.feature_names == ("a",) and data.X.tolist() == [[1.5], [2.5]]


def test_iid_partition_covers_every_row_once():
    parts = partition(np.zeros(103), 5)
    assert sorted(np.concatenate(parts).tolist()) == list(range(103))
    assert {len(p) for p in parts} == {20, 21}


@pytest.mark.parametrize("groups", [np.array([3, 1, 3, 2, 1, 3]), np.array(list("cacbac"))])
def test_split_by_group_gives_each_group_its_rows_in_their_order(groups):
    X = np.arange(12, dtype=float).reshape(6, 2)
    y = np.arange(6) * 10
    ids, parts = split_by_group(X, y, groups)
    assert ids.tolist() == np.unique(groups).tolist()
    assert [p[1].tolist() for p in parts] == [[10, 40], [30], [0, 20, 50]]
    assert [p[0].tolist() for p in parts][0] == [[2.0, 3.0], [8.0, 9.0]]
    for g, (X_g, y_g) in zip(ids, parts, strict=True):  # what the mask per group gives
        assert np.array_equal(X_g, X[groups == g]) and X_g.dtype == X.dtype
        assert np.array_equal(y_g, y[groups == g])


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


def test_a_stratified_split_keeps_every_class_in_training_or_refuses():
    X = np.arange(24, dtype=np.float64).reshape(12, 2)
    y = np.array(["a"] * 5 + ["b"] * 5 + ["c"] * 2)
    _, _, y_train, y_test = train_test(X, y, task="classification", test_size=0.25)
    assert set(y_train) == set(y_test) == {"a", "b", "c"} and len(y_test) == 3
    with pytest.raises(DatasetError, match="class 'c' has a single row"):
        train_test(X[:11], y[:11], task="classification")
    with pytest.raises(DatasetError, match=r"single class \('a'\)"):
        train_test(X[:3], y[:3], task="classification")
    with pytest.raises(DatasetError, match="cannot split the data by class: The test_size = 2"):
        train_test(X[3:], y[3:], task="classification", test_size=0.2)


def test_class_labels_become_numbers_for_a_linear_model_and_text_is_refused():
    from he_fed.data import regression_target

    assert regression_target(np.array(["no", "yes", "no"])).tolist() == [0.0, 1.0, 0.0]
    assert regression_target(np.array([3, 1, 2])).tolist() == [3.0, 1.0, 2.0]
    with pytest.raises(ConfigurationError, match="3 text labels"):
        regression_target(np.array(["a", "b", "c"]))
