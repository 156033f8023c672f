"""``probkit cluster FILE.csv``: reading tables, writing labels, refusing to overwrite."""

from __future__ import annotations

import json

import numpy as np
import pytest

from probkit._cli_cluster import read_table
from probkit.cli import main


def _write(path, X, header=True):
    lines = ["a,b,name"] if header else []
    lines += [
        f"{x:.6f},{y:.6f},p{i}" if header else f"{x:.6f},{y:.6f}" for i, (x, y) in enumerate(X)
    ]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(0, 1, (200, 2)), rng.normal(10, 1, (150, 2))])


def test_writes_labels_and_prints_the_tree(tmp_path, points, capsys):
    path = tmp_path / "points.csv"
    _write(path, points)
    assert main(["cluster", str(path), "--columns", "a,b", "--json", str(tmp_path / "t.json")]) == 0
    out = capsys.readouterr().out
    assert "2 clusters" in out
    assert "split" in out
    rows = (tmp_path / "points.labels.csv").read_text().splitlines()
    assert rows[0] == "label,core"
    assert len(rows) == 351
    labels = np.array([int(r.split(",")[0]) for r in rows[1:]])
    assert len(set(labels[:200])) == 1
    assert len(set(labels[200:])) == 1
    summary = json.loads((tmp_path / "t.json").read_text())
    assert summary["n_clusters"] == 2
    assert summary["columns"] == ["a", "b"]
    assert summary["tree"][0]["action"] == "split"


def test_reports_the_columns_it_used_and_dropped(tmp_path, points, capsys):
    path = tmp_path / "table.csv"
    lines = ["x_m,y,x_mm,flag"] + [f"{x:.6f},{y:.6f},{1000 * x:.3f},1" for x, y in points]
    path.write_text("\n".join(lines) + "\n")
    assert main(["cluster", str(path), "--json", str(tmp_path / "t.json")]) == 0
    captured = capsys.readouterr()
    assert "columns used (2, scale 'standard'): x_m, y" in captured.out
    assert "column dropped: 'x_mm': duplicates 'x_m' up to units and offset" in captured.out
    assert "column dropped: 'flag': constant" in captured.out
    assert "UserWarning" not in captured.err
    summary = json.loads((tmp_path / "t.json").read_text())
    assert summary["columns_used"] == ["x_m", "y"]
    assert summary["columns_dropped"] == {
        "x_mm": "duplicates 'x_m' up to units and offset",
        "flag": "constant",
    }
    assert summary["n_clusters"] == 2


def test_a_single_cluster_that_is_not_gaussian_is_reported(tmp_path, capsys):
    rng = np.random.default_rng(0)
    centres = rng.normal(0.0, 1.5, (3, 10))
    X = np.concatenate([rng.normal(c, 1.0, (60, 10)) for c in centres])
    path = tmp_path / "small.csv"
    path.write_text("\n".join(",".join(f"{v:.6f}" for v in row) for row in X) + "\n")
    assert main(["cluster", str(path)]) == 0
    captured = capsys.readouterr()
    assert "1 clusters" in captured.out
    assert "read 180 rows × 10 columns" in captured.err
    assert "PPP " in captured.err
    assert "level 1: 1 clusters after testing 1, 0 split" in captured.err
    assert "warning: PPP found one cluster" in captured.err
    assert main(["cluster", str(path), "--validate", "gaussian", "--overwrite"]) == 0
    assert "3 clusters" in capsys.readouterr().out


def test_headerless_file_and_existing_output(tmp_path, points, capsys):
    path = tmp_path / "raw.csv"
    _write(path, points, header=False)
    output = tmp_path / "out" / "labels.csv"
    assert main(["cluster", str(path), "-o", str(output)]) == 0
    assert output.is_file()
    assert main(["cluster", str(path), "-o", str(output)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["cluster", str(path), "-o", str(output), "--overwrite"]) == 0


@pytest.mark.parametrize(
    ("text", "args", "message"),
    [
        ("a,b\n1,2\n3,x\n", [], "line 3: a field is not a number"),
        ("a,b\n\n1,2\n\n3,x\n", [], "line 5: a field is not a number"),
        ("a,b\n1,2\n3\n", [], "line 3: 1 fields where 2 expected"),
        ("a,b\n1,2\n3,4\n", ["--columns", "c"], "no column 'c'"),
        ("", [], "is empty"),
        ("a,b,c\n1,2,3\n4,5\n", ["--columns", "a,b"], "line 3: 2 fields where 3 expected"),
        ("a,b\n1,2\n3,4,5\n", [], "line 3: 3 fields where 2 expected"),
        ("a,b\n1,\n3,4\n", [], "line 2: a field is not a number"),
        ("a,b\n1,2\n3,4\n", ["--tree-rows", "500"], "`--tree-rows` must be 0"),
        ("a,b\n1,2\n3,4\n", ["--tree-rows", "-1"], "or at least 1000; got -1"),
    ],
)
def test_bad_files_are_reported(tmp_path, text, args, message, capsys):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    assert main(["cluster", str(path), *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "columns", "names", "expected"),
    [
        ("\n\na,b\n1,2\n\n3,4\n", None, ["a", "b"], [[1, 2], [3, 4]]),
        ("a,b,c\n1,2,3\n4,5,6\n", "c,a", ["c", "a"], [[3, 1], [6, 4]]),
        ("a,a\n1,2\n", None, ["a", "a"], [[1, 2]]),
        ('"x,y",b\n"1.5",2\n', None, ["x,y", "b"], [[1.5, 2]]),
        ("name,v\np0,1e3\np1,-2\n", "v", ["v"], [[1000.0], [-2.0]]),
        ("1;2\n3;4\n", None, ["0", "1"], [[1, 2], [3, 4]]),
        ("a,b\n", None, ["a", "b"], np.zeros((0, 2))),
    ],
)
def test_tables_are_read_as_written(tmp_path, text, columns, names, expected):
    # The fast reader (pandas) and the line-by-line one behind it agree with what the file
    # says: blank lines, column order, repeated names, quotes, text columns left out.
    path = tmp_path / "table.csv"
    path.write_text(text)
    delimiter = ";" if ";" in text else ","
    data, read_names = read_table(path, delimiter, columns)
    assert read_names == names
    np.testing.assert_array_equal(data, np.asarray(expected, dtype=float).reshape(data.shape))
    assert data.shape == np.asarray(expected, dtype=float).reshape(-1, len(names)).shape


def test_a_written_nan_is_read_as_a_number_and_refused_by_ppp(tmp_path, capsys):
    path = tmp_path / "nan.csv"
    path.write_text("a,b\n1,nan\n2,3\n4,5\n6,7\n")
    data, _ = read_table(path)
    assert np.isnan(data[0, 1])
    assert main(["cluster", str(path)]) == 2
    assert "NaN or inf in rows [0]" in capsys.readouterr().err


def test_missing_file(tmp_path, capsys):
    assert main(["cluster", str(tmp_path / "none.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_tree_rows_grows_the_tree_on_a_subsample_and_labels_every_row(tmp_path, capsys):
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(0, 1, (700, 2)), rng.normal(10, 1, (600, 2))])
    path = tmp_path / "large.csv"
    _write(path, X, header=False)
    summary_path = tmp_path / "t.json"
    arguments = ["cluster", str(path), "--tree-rows", "1000", "--json", str(summary_path)]
    assert main(arguments) == 0
    assert "grown on 1000 rows" in capsys.readouterr().out
    summary = json.loads(summary_path.read_text())
    assert (summary["tree_rows"], summary["n_rows"], summary["n_clusters"]) == (1000, 1300, 2)
    assert summary["tree"][0]["size"] == 1000
    rows = (tmp_path / "large.labels.csv").read_text().splitlines()
    labels = np.array([int(r.split(",")[0]) for r in rows[1:]])
    assert labels.size == 1300
    assert len(set(labels[:700])) == 1
    assert len(set(labels[700:])) == 1
    assert main(["cluster", str(path), "--tree-rows", "0", "--overwrite"]) == 0
    assert "grown on 1300 rows" in capsys.readouterr().out
