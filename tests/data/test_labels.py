from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from seqstruct.data.labels import LabelError, read_labels

NODES = ["n0", "n1", "n2"]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_columns_aligned_with_node_order(tmp_path) -> None:
    path = _write(
        tmp_path / "labels.tsv",
        "# made by hand\nid\tfamily\tec\n\nn2\tF2\t1.1\nn0\tF1\t2\nn1 \t F1\t3.4.5\r\n",
    )
    labels = read_labels(path, NODES)
    assert list(labels) == ["family", "ec"]
    assert labels["family"].tolist() == ["F1", "F1", "F2"]
    assert labels["ec"].tolist() == ["2", "3.4.5", "1.1"]  # strings, however numeric they look
    assert labels["family"].shape == (3,)


def test_pick_columns_and_unknown_column(tmp_path) -> None:
    path = _write(tmp_path / "labels.tsv", "id\ta\tb\nn0\tx\ty\nn1\tx\ty\nn2\tx\tz\n")
    assert list(read_labels(path, NODES, columns=["b"])) == ["b"]
    with pytest.raises(LabelError, match=r"no label column 'c'; the file has \['a', 'b'\]"):
        read_labels(path, NODES, columns=["c"])


def test_gzip_input(tmp_path) -> None:
    path = tmp_path / "labels.tsv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("id\ta\nn0\tx\nn1\ty\nn2\tz\n")
    assert read_labels(path, NODES)["a"].tolist() == ["x", "y", "z"]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("node\ta\nn0\tx\n", 1, "first column is 'id'"),
        ("id\n", 1, "no label column"),
        ("id\ta\ta\n", 1, "'a' is repeated"),
        ("id\ta\nn0\tx\nn1\tx\textra\n", 3, "expected 2 tab-separated columns, got 3"),
        ("id\ta\tb\nn0\tx\n", 2, "expected 3 tab-separated columns, got 2"),
        ("id\ta\nn0\tx\nn1\t \n", 3, "empty 'a' label for 'n1'"),
        ("id\ta\nn0\tx\nn1\ty\nn0\tz\n", 4, "id 'n0' repeats line 2"),
    ],
)
def test_errors_name_file_and_line(tmp_path, text: str, line: int, reason: str) -> None:
    path = _write(tmp_path / "labels.tsv", text)
    with pytest.raises(LabelError) as err:
        read_labels(path, NODES)
    assert err.value.line == line
    assert reason in str(err.value)
    assert str(err.value).startswith(f"{path}, line {line}: ")


def test_empty_file(tmp_path) -> None:
    path = _write(tmp_path / "labels.tsv", "# nothing\n\n")
    with pytest.raises(LabelError, match="no header"):
        read_labels(path, NODES)


def test_unknown_ids_named_with_count(tmp_path) -> None:
    rows = "".join(f"x{i}\tF\n" for i in range(7))
    path = _write(tmp_path / "labels.tsv", "id\ta\nn0\tF\nn1\tF\nn2\tF\n" + rows)
    with pytest.raises(LabelError) as err:
        read_labels(path, NODES)
    message = str(err.value)
    assert err.value.line is None
    assert "7 ids match no record: 'x0', 'x1', 'x2', 'x3', 'x4' ..." in message
    assert "'x5'" not in message


def test_nodes_without_labels_named_with_count(tmp_path) -> None:
    nodes = [f"n{i}" for i in range(8)]
    path = _write(tmp_path / "labels.tsv", "id\ta\nn3\tF\n")
    with pytest.raises(LabelError, match=r"7 records have no labels: 'n0', 'n1', 'n2', 'n4', 'n5' \.\.\."):
        read_labels(path, nodes)


def test_error_rebuilds_from_its_fields(tmp_path) -> None:
    import copy

    error = LabelError(tmp_path / "labels.tsv", 3, "bad")
    again = copy.deepcopy(error)  # goes through __reduce__, as a trip back from a worker process does
    assert (again.path, again.line, again.reason, str(again)) == (error.path, 3, "bad", str(error))
