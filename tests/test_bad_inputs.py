"""The bad-input matrix (issue 20, items 4, 6 and 7), through the `seqstruct` command as a user meets it:
every bad setting refused by name when its config loads, before anything is deleted; files that are no
text (a directory, binary data, a truncated gzip, a pickled model) named as such in one line, without a
traceback; a UTF-8 BOM simply read. Each case asserts the exact outcome: the error text, or equality with
the good input's result."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pytest

from seqstruct.cli import main
from seqstruct.config import MIN_MAX_LENGTH
from seqstruct.data.fasta import write_fasta
from seqstruct.data.graph import read_edge_list
from seqstruct.data.labels import read_labels
from seqstruct.io import InputFileError
from tests.helpers import sample_records

FASTA_EXPECTED = "expected a protein FASTA file (UTF-8 text, plain or gzipped)"


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """The one stderr line of a command that refuses its input (exit 2, no traceback)."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip()


# ---------------------------------------------------------------------------------------------------------
# Settings: refused when the config loads, so an old run under --overwrite is never touched
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.mlm_probability=1.5", "config key data.mlm_probability must be in (0, 1]; got 1.5"),
        (
            "train.gradient_accumulation_steps=0",
            "config key train.gradient_accumulation_steps must be >= 1; got 0",
        ),
        ("train.logging_steps=0", "config key train.logging_steps must be >= 1; got 0"),
        (
            "train.max_steps=-1",
            "config key train.max_steps must be >= 1 (0 and -1 would not train max_steps steps); got -1",
        ),
        (
            "train.max_steps=0",
            "config key train.max_steps must be >= 1 (0 and -1 would not train max_steps steps); got 0",
        ),
        ("data.eval_fraction=-0.05", "config key data.eval_fraction must be in [0, 1); got -0.05"),
        (
            "data.max_length=1",
            "config key data.max_length must be >= 3 (one residue or word piece plus <cls> and <eos>); got 1",
        ),
    ],
)
def test_a_bad_setting_is_refused_by_name_before_an_old_run_is_touched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, message: str
) -> None:
    old = tmp_path / "run"
    for part in ("checkpoints/checkpoint-4", "tensorboard"):
        (old / part).mkdir(parents=True)
    (old / "model.safetensors").write_bytes(b"weights")
    before = sorted(p.relative_to(old) for p in old.rglob("*"))
    config = tmp_path / "run.yaml"
    config.write_text(f"output_dir: {old}\n", encoding="utf-8")
    argv = ["pretrain", str(config), f"data.fasta={tmp_path / 'x.fasta'}", override, "--overwrite"]
    assert _refused(capsys, argv) == f"seqstruct pretrain: error: {config}: {message}"
    assert sorted(p.relative_to(old) for p in old.rglob("*")) == before


def test_an_unknown_lr_scheduler_is_refused_before_an_old_run_is_touched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers.trainer_utils import SchedulerType

    old = tmp_path / "run"
    (old / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    (old / "tensorboard").mkdir()
    config = tmp_path / "run.yaml"
    config.write_text(f"output_dir: {old}\n", encoding="utf-8")
    argv = ["pretrain", str(config), "train.lr_scheduler=bogus", "--overwrite"]
    names = [s.value for s in SchedulerType]
    assert _refused(capsys, argv) == (
        f"seqstruct pretrain: error: {config}: config key train.lr_scheduler must be one of {names}; got 'bogus'"
    )
    assert (old / "checkpoints" / "checkpoint-4").is_dir() and (old / "tensorboard").is_dir()


def test_a_directory_or_binary_file_as_config_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _refused(capsys, ["pretrain", str(tmp_path)]) == (
        f"seqstruct pretrain: error: {tmp_path}: is a directory; expected a YAML config file"
    )
    binary = tmp_path / "run.yaml"
    binary.write_bytes(b"\x00\x01\x02" * 10)
    assert _refused(capsys, ["distill", str(binary)]) == (
        f"seqstruct distill: error: {binary}, line 1: binary data (a NUL byte), not text; expected a YAML config file"
    )


def test_a_config_with_a_utf8_bom_loads_as_without(tmp_path: Path) -> None:
    from seqstruct.config import ContrastiveConfig, load_config

    text = "setting: unsupervised\ntrain:\n  max_steps: 7\n"
    plain, bom = tmp_path / "plain.yaml", tmp_path / "bom.yaml"
    plain.write_text(text, encoding="utf-8")
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_config(ContrastiveConfig, bom) == load_config(ContrastiveConfig, plain)


# ---------------------------------------------------------------------------------------------------------
# embed: --max-length, the model directory, the FASTA input
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [-5, 0, 1, MIN_MAX_LENGTH - 1])
def test_embed_refuses_a_max_length_that_holds_no_residue_before_loading_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], length: int
) -> None:
    out = tmp_path / "e.npz"
    argv = ["embed", str(tmp_path / "no-model"), str(tmp_path / "no.fasta"), "-o", str(out)]
    assert _refused(capsys, [*argv, "--max-length", str(length)]) == (
        f"seqstruct embed: error: --max-length {length}: must be at least 3 (one residue or word piece plus "
        "the two special tokens), or left out for no truncation"
    )
    assert not out.exists()


@pytest.mark.parametrize("command", ["embed", "evaluate-probe", "evaluate-finetune"])
def test_a_model_directory_holding_only_a_pickle_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """Refused by name before any data is read (evaluate's dataset does not even exist here)."""
    model = tmp_path / "pickled"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert"}', encoding="utf-8")
    (model / "pytorch_model.bin").write_bytes(b"\x80\x04\x95not for loading")
    fasta = tmp_path / "in.fasta"
    write_fasta(sample_records(2), fasta)
    name, _, mode = command.partition("-")
    argv = (
        ["embed", str(model), str(fasta), "-o", str(tmp_path / "e.npz")]
        if name == "embed"
        else ["evaluate", str(model), "--task", "go-mf", "--mode", mode, "--data", str(tmp_path / "none")]
    )
    assert _refused(capsys, argv) == (
        f"seqstruct {name}: error: {model}: holds no model.safetensors, only pickled weights (pytorch_model.bin); "
        "seqstruct loads weights from safetensors only (unpickling can run code). Convert the model where you "
        "trust it: from_pretrained(dir).save_pretrained(dir) writes model.safetensors"
    )


def _bad_fasta(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A FASTA input of `kind` and the reason the error must give after its path."""
    if kind == "directory":
        path = tmp_path / "proteins.fasta"
        path.mkdir()
        return path, f": is a directory; {FASTA_EXPECTED}"
    if kind == "truncated-gzip":
        path = tmp_path / "proteins.fasta.gz"
        write_fasta(sample_records(200), path)
        path.write_bytes(path.read_bytes()[:-200])
        reason = (
            "truncated or corrupt gzip (Compressed file ended before the end-of-stream marker was reached)"
        )
        return path, f": {reason}; {FASTA_EXPECTED}"
    if kind == "binary":
        path = tmp_path / "proteins.fasta"
        path.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00")
        return path, f", line 1: binary data (a NUL byte), not text; {FASTA_EXPECTED}"
    path = tmp_path / "proteins.fasta"  # UTF-16, as some Windows editors save
    path.write_bytes(">P1\nACD\n".encode("utf-16"))
    return (
        path,
        f", line 1: UTF-16 text (it starts with a UTF-16 byte-order mark), not UTF-8; {FASTA_EXPECTED}",
    )


@pytest.mark.parametrize("kind", ["directory", "truncated-gzip", "binary", "utf-16"])
def test_embed_names_a_fasta_that_is_no_fasta_text(
    protein_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    fasta, reason = _bad_fasta(tmp_path, kind)
    out = tmp_path / "e.npz"
    assert _refused(capsys, ["embed", str(protein_model), str(fasta), "-o", str(out)]) == (
        f"seqstruct embed: error: {fasta}{reason}"
    )
    assert not out.exists()


def test_embed_reads_a_fasta_with_a_utf8_bom_as_without(protein_model: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain.fasta"
    write_fasta(sample_records(5, max_residues=40), plain)
    bom = tmp_path / "bom.fasta"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    vectors = []
    for fasta in (plain, bom):
        out = tmp_path / f"{fasta.stem}.npz"
        assert main(["embed", str(protein_model), str(fasta), "-o", str(out)]) == 0
        with np.load(out, allow_pickle=False) as data:
            vectors.append((data["ids"].tolist(), data["embeddings"]))
    assert vectors[0][0] == vectors[1][0] == [r.id for r in sample_records(5)]
    np.testing.assert_array_equal(vectors[0][1], vectors[1][1])


def test_a_verbose_run_keeps_the_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    argv = ["-v", "embed", str(tmp_path / "m"), str(tmp_path / "in.fasta"), "-o", str(tmp_path / "e.npz")]
    with caplog.at_level(logging.DEBUG, logger="seqstruct"):
        assert main([*argv, "--max-length", "0"]) == 2
    assert capsys.readouterr().err.startswith("seqstruct embed: error: --max-length 0: must be at least 3")
    (record,) = [r for r in caplog.records if r.getMessage() == "traceback"]
    assert (
        record.levelno == logging.DEBUG and record.exc_info is not None and record.exc_info[0] is ValueError
    )


# ---------------------------------------------------------------------------------------------------------
# Graph and label files
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reader", "expected"),
    [
        (read_edge_list, "expected an edge list (TSV lines id_a<TAB>id_b[<TAB>weight])"),
        (read_labels, "expected a label table (TSV: a header line, then id<TAB>label...)"),
    ],
)
def test_graph_and_label_files_that_are_no_text_are_named(tmp_path: Path, reader, expected: str) -> None:
    ids = ["a", "b"]
    with pytest.raises(InputFileError) as err:
        reader(tmp_path, ids)
    assert str(err.value) == f"{tmp_path}: is a directory; {expected}"
    binary = tmp_path / "file.tsv"
    binary.write_bytes(b"a\tb\n\x00\x00\x00")
    with pytest.raises(InputFileError) as err:
        reader(binary, ids)
    assert str(err.value) == f"{binary}, line 2: binary data (a NUL byte), not text; {expected}"
    cut = tmp_path / "file.tsv.gz"
    cut.write_bytes(gzip.compress(b"a\tb\n" * 1000)[:-30])
    with pytest.raises(InputFileError) as err:
        reader(cut, ids)
    reason = "truncated or corrupt gzip (Compressed file ended before the end-of-stream marker was reached)"
    assert str(err.value) == f"{cut}: {reason}; {expected}"


def test_graph_and_label_files_with_a_bom_read_as_without(tmp_path: Path) -> None:
    ids = ["a", "b", "c"]
    for name, text, reader in (
        ("graph", "a\tb\nb\tc\t2.0\n", read_edge_list),
        ("labels", "id\tfamily\na\tx\nb\ty\nc\tx\n", read_labels),
    ):
        plain, bom = tmp_path / f"{name}.tsv", tmp_path / f"{name}-bom.tsv"
        plain.write_text(text, encoding="utf-8")
        bom.write_bytes(b"\xef\xbb\xbf" + text.encode())
        first, second = reader(plain, ids), reader(bom, ids)
        if name == "graph":
            graph_a, graph_b = first[0], second[0]
            assert graph_a.nodes == graph_b.nodes
            np.testing.assert_array_equal(graph_a.degrees(), graph_b.degrees())
        else:
            assert first.keys() == second.keys() == {"family"}
            np.testing.assert_array_equal(first["family"], second["family"])


# ---------------------------------------------------------------------------------------------------------
# The report page
# ---------------------------------------------------------------------------------------------------------


def test_report_escapes_raw_html_and_inlines_no_image_from_outside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    run, outside = tmp_path / "run", tmp_path / "elsewhere"
    run.mkdir()
    outside.mkdir()
    (outside / "private.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # inlined by name: any bytes would do
    (run / "results.md").write_text(
        "<script>steal()</script>\n\n<iframe src=x></iframe>\n\n[go](javascript:steal())\n\n"
        "![private](../elsewhere/private.png)\n",
        encoding="utf-8",
    )
    out = tmp_path / "report.html"
    with caplog.at_level(logging.WARNING, logger="seqstruct.report"):
        assert main(["report", str(run), "-o", str(out)]) == 0
    body = out.read_text(encoding="utf-8").split("</nav>", 1)[1]
    assert "<script" not in body and "<iframe" not in body and "javascript:" not in body
    assert "<p>&lt;script&gt;steal()&lt;/script&gt;</p>" in body and "<span>go</span>" in body
    assert "private" not in body.replace("<span>private</span>", "") and "data:image" not in body
    assert [r.getMessage() for r in caplog.records] == [
        f"report: {run / 'results.md'}: image ../elsewhere/private.png lies outside the report's directories; "
        "left out"
    ]
