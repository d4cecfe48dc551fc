"""``he-fed run --dataset file.csv`` on the CSV files newcomers bring (issue 17)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from he_fed.cli import main

FAST = ["--key-bits", "1024", "--allow-insecure", "--clients", "2", "--rounds", "1"]


def _rows(n: int = 24) -> list[str]:
    """``n`` rows of two numeric features and a 0/1 label, sorted by class."""
    return [f"{i % 7}.5,{(3 * i) % 5},{int(i >= n // 2)}" for i in range(n)]


def _write(tmp_path, lines: list[str], name: str = "data.csv"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _run(path, *options: str, json_path=None):
    args = ["run", "--dataset", str(path), *FAST, "--quiet", *options]
    if json_path is not None:
        args += ["--json", str(json_path)]
    return CliRunner().invoke(main, args)


def _one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.stdout == "" and result.stderr.count("\n") == 1
    return result.stderr


def test_nan_in_the_target_is_a_one_line_error_naming_the_line(tmp_path):
    lines = ["a,b,y", *_rows()]
    lines[6] = "1.5,2,NaN"  # file line 7
    path = _write(tmp_path, lines)
    assert _one_line_error(_run(path, "--target", "y")) == (
        f"Error: DatasetError: {path}, line 7: column 'y' holds 'NaN', a missing value; "
        "fill it in, or pass --missing drop to drop incomplete rows\n"
    )


def test_an_empty_target_cell_is_a_one_line_error_naming_the_line(tmp_path):
    lines = ["a,b,y", *_rows()]
    lines[12] = "1.5,2,"
    path = _write(tmp_path, lines)
    assert _one_line_error(_run(path, "--target", "y")) == (
        f"Error: DatasetError: {path}, line 13: column 'y' is empty; "
        "fill it in, or pass --missing drop to drop incomplete rows\n"
    )


def test_missing_drop_trains_on_the_complete_rows_and_says_how_many_it_dropped(tmp_path):
    lines = ["a,b,y", *_rows(27)]
    lines[2], lines[9], lines[20] = "NA,1,0", "1.5,,0", "2.5,3,null"
    path = _write(tmp_path, lines)
    out = tmp_path / "result.json"
    result = _run(path, "--target", "y", "--missing", "drop", json_path=out)
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"Warning: {path}: dropped 3 of 27 rows with a missing value (lines 3, 10, 21)\n"
    )
    dataset = json.loads(out.read_text())["dataset"]
    assert dataset["n_train"] + dataset["n_test"] == 24 and dataset["n_features"] == 2
    assert json.loads(out.read_text())["config"]["missing"] == "drop"


def test_pandas_default_index_column_is_dropped_with_a_warning(tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.read_csv(_write(tmp_path, ["a,b,y", *_rows()], name="plain.csv"))
    path = tmp_path / "pandas.csv"
    frame.to_csv(path)  # pandas' default: an unnamed index column 0..23, sorted like y
    assert path.read_text().startswith(",a,b,y\n0,0.5,0,0\n")
    out = tmp_path / "result.json"
    result = _run(path, "--target", "y", json_path=out)
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"Warning: {path}: ignored the first column: it has no name in the header and "
        "holds the row numbers 0..23, like the index pandas' to_csv writes by default "
        "(write with index=False to leave it out)\n"
    )
    assert json.loads(out.read_text())["dataset"]["n_features"] == 2


def test_delimiter_option_and_tab_separated_files(tmp_path):
    semicolons = _write(tmp_path, ["a;b;y", *(r.replace(",", ";") for r in _rows())])
    refused = _one_line_error(_run(semicolons, "--target", "y"))
    assert refused.endswith("is it separated by ';'? pass --delimiter ';'\n")
    out = tmp_path / "result.json"
    result = _run(semicolons, "--target", "y", "--delimiter", ";", json_path=out)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["dataset"]["n_features"] == 2
    tabs = _write(tmp_path, ["a\tb\ty", *(r.replace(",", "\t") for r in _rows())], "data.tsv")
    result = _run(tabs, "--target", "y", json_path=out)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["dataset"]["n_features"] == 2
    commas_named_tsv = _write(tmp_path, ["a,b,y", *_rows()], "commas.tsv")
    assert _run(commas_named_tsv, "--target", "y", "--delimiter", ",").exit_code == 0
    assert "must be one character" in _one_line_error(
        _run(semicolons, "--target", "y", "--delimiter", ";;")
    )


def test_a_text_feature_is_an_error_suggesting_categorical(tmp_path):
    path = _write(tmp_path, ["age,ward,y", *(f"{r.split(',')[0]},A,{r[-1]}" for r in _rows())])
    assert _one_line_error(_run(path, "--target", "y")) == (
        f"Error: DatasetError: {path}, line 2: column 'ward' holds 'A', not a number; "
        "if it is categorical, declare its values: --categorical ward=v1,v2,...\n"
    )


def test_categorical_one_hot_encodes_under_the_declared_vocabulary(tmp_path):
    wards, labels = "ABBCA", ("well", "sick")
    rows = [f"{30 + i},{wards[i % 5]},{labels[i >= 12]}" for i in range(24)]
    path = _write(tmp_path, ["age,ward,outcome", *rows])
    out = tmp_path / "result.json"
    declared = ["--categorical", "ward=A,B,C,D"]  # D: a ward this file does not have
    result = _run(path, "--target", "outcome", *declared, json_path=out)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["dataset"]["n_features"] == 5 and len(data["final"]["coef"]) == 5
    assert data["dataset"]["task"] == "classification"
    assert data["config"]["categorical"] == ["ward=A,B,C,D"]
    assert _one_line_error(_run(path, "--target", "outcome", "--categorical", "ward=A,B")) == (
        f"Error: DatasetError: {path}, line 5: column 'ward' holds 'C', which is not in "
        "its declared vocabulary (A,B)\n"
    )
    assert _one_line_error(_run(path, "--target", "outcome", "--categorical", "ward")) == (
        "Error: DatasetError: --categorical 'ward' is not COLUMN=v1,v2,...\n"
    )


def test_missing_accepts_only_error_or_drop(tmp_path):
    path = _write(tmp_path, ["a,b,y", *_rows()])
    result = _run(path, "--target", "y", "--missing", "fill")
    assert result.exit_code == 2 and "'fill' is not one of 'error', 'drop'" in result.output
