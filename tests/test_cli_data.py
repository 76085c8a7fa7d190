"""`seqstruct data prepare` and `seqstruct data list`, on the text fixtures.

The registry here holds this package's text recipes only (imported directly), so these tests do not
depend on the protein recipes' modules.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from seqstruct.cli import main
from seqstruct.data import prepared
from seqstruct.data.prepared import load_prepared
from seqstruct.data.sources import files, go_text, wordnet

WORDNET = Path(__file__).parent / "fixtures" / "wordnet"


@pytest.fixture(autouse=True)
def text_recipes_only(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = {
        "files": files.prepare_files,
        "go-text": go_text.prepare_go_text,
        "wordnet": wordnet.prepare_wordnet,
    }
    monkeypatch.setattr(prepared, "RECIPES", registry)
    monkeypatch.setattr(prepared, "_load_builtin_recipes", lambda: None)


def test_prepare_parses_options_as_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "wn"
    argv = ["data", "prepare", "wordnet", f"root={WORDNET}", "seed=3", "test_fraction=0", "-o", str(out)]
    assert main(argv) == 0
    data = load_prepared(out)
    assert data.info.config["seed"] == 3 and data.info.config["test_fraction"] == 0.0
    assert set(data.splits) == {"train", "valid"}
    printed = capsys.readouterr().out
    assert f"wrote text dataset wordnet (train {len(data.split('train'))}" in printed and str(out) in printed


def test_prepare_refuses_to_overwrite_unless_told(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "t.tsv"
    table.write_text("id\ttext\na\tone\nb\ttwo\nc\tthree\n")
    argv = [
        "data",
        "prepare",
        "files",
        f"text={table}",
        "name=2024",
        "valid_fraction=0",
        "-o",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 0
    assert load_prepared(tmp_path / "o").info.name == "2024"  # a YAML int, read as the string it names
    assert main(argv) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


def test_unknown_options_and_recipes_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "prepare", "wordnet", "seeds=1", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "seqstruct data: error: recipe 'wordnet' has no option seeds" in err
    assert "its options are root='/usr/share/wordnet', valid_fraction=0.1, test_fraction=0.1, seed=0" in err
    assert main(["data", "prepare", "nope", "-o", str(tmp_path / "x")]) == 2
    assert (
        "unknown dataset recipe 'nope'; expected one of ['files', 'go-text', 'wordnet']"
        in capsys.readouterr().err
    )
    assert main(["data", "prepare", "wordnet", "seed", "-o", str(tmp_path / "x")]) == 2
    assert "expected key=value" in capsys.readouterr().err
    assert main(["data", "prepare", "wordnet", f"root={tmp_path}", "-o", str(tmp_path / "x")]) == 2
    assert "apt-get install -y wordnet-base" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_list_shows_each_recipe_with_its_summary_and_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name, recipe in prepared.RECIPES.items():
        assert f"{name}\n    {recipe.__doc__.splitlines()[0]}\n" in out
    assert "options: go_sqlite='' valid_fraction=0.1 test_fraction=0.1 seed=0" in out


def test_align_prints_the_table_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    out = tmp_path / "wn"
    assert main(["data", "prepare", "wordnet", f"root={WORDNET}", "-o", str(out)]) == 0
    capsys.readouterr()
    columns = list(load_prepared(out).info.columns)
    assert main(["data", "align", str(out), "--draws", "3", "--json", str(tmp_path / "a.json")]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| column | labelled nodes | homophily | random graphs |")
    assert "3 degree-preserving shuffles" in printed
    rows = json.loads((tmp_path / "a.json").read_text())
    assert [row["column"] for row in rows] == columns and all("aligned" in row for row in rows)
    assert main(["data", "align", str(out), "--columns", "nope"]) == 2
    assert "no label column ['nope']" in capsys.readouterr().err
