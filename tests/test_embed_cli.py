"""`seqstruct embed` end to end on tiny models: FASTA, .txt and .jsonl inputs, sentence-transformers dirs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertForMaskedLM

from seqstruct.cli import main
from seqstruct.models import extract as extract_module
from seqstruct.models.embed import encode, load_encoder
from seqstruct.models.io import resolve_model_path, save_model_dir
from seqstruct.models.sentence import load_sentence_model, sentence_model
from tests.helpers import sample_records, tiny_bert_config

TEXTS = ["The cell membrane.", "A kinase that phosphorylates serine.", "Apoptosis", "x"]


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised BERT masked LM with all-MiniLM-L6-v2's tokenizer (as pretrained)."""
    path = tmp_path_factory.mktemp("text")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
    config = tiny_bert_config(tokenizer)
    torch.manual_seed(0)
    save_model_dir(BertForMaskedLM(config), tokenizer, path)
    return path


def read_npz(path: Path) -> tuple[list[str], np.ndarray, str]:
    with np.load(path, allow_pickle=False) as data:
        return data["ids"].tolist(), data["embeddings"], str(data["pooling"])


def test_embed_fasta(protein_model, protein_fasta, tmp_path, capsys) -> None:
    out = tmp_path / "emb.npz"
    assert main(["embed", str(protein_model), str(protein_fasta), "-o", str(out), "--pooling", "max"]) == 0
    assert f"wrote 120 embeddings to {out}" in capsys.readouterr().out
    ids, vectors, pooling = read_npz(out)
    records = sample_records(120, max_residues=150)
    assert ids == [r.id for r in records] and vectors.shape == (120, 32) and pooling == "max"
    model, tokenizer = load_encoder(protein_model)
    np.testing.assert_allclose(
        vectors[:3], encode(model, tokenizer, [r.sequence for r in records[:3]], pooling="max"), atol=1e-5
    )


def test_embed_txt_and_jsonl(text_dir, tmp_path) -> None:
    txt = tmp_path / "texts.txt"
    txt.write_text("\n".join(TEXTS[:2]) + "\n\n" + "\n".join(TEXTS[2:]) + "\n", encoding="utf-8")
    assert (
        main(["embed", str(text_dir), str(txt), "-o", str(tmp_path / "txt.npz"), "--pooling", "first-last"])
        == 0
    )
    ids, from_txt, pooling = read_npz(tmp_path / "txt.npz")
    assert ids == ["1", "2", "4", "5"] and from_txt.shape == (4, 32) and pooling == "first-last"

    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text("".join(json.dumps({"id": f"t{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    out = tmp_path / "jsonl.npz"
    assert (
        main(["embed", str(text_dir), str(jsonl), "-o", str(out), "--pooling", "first-last", "--normalize"])
        == 0
    )
    ids, from_jsonl, _ = read_npz(out)
    assert ids == ["t0", "t1", "t2", "t3"]
    expected = from_txt / np.linalg.norm(from_txt, axis=1, keepdims=True)
    np.testing.assert_allclose(from_jsonl, expected, atol=1e-5)


def test_a_bad_jsonl_line_is_named(text_dir, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "txt": "typo"}\n', encoding="utf-8")
    out = tmp_path / "x.npz"
    assert main(["embed", str(text_dir), str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert 'bad.jsonl, line 2: expected a JSON object with an "id"' in err and "['id', 'txt']" in err
    assert not out.exists()


def test_embed_a_saved_sentence_model_uses_its_pooling(protein_model, tmp_path) -> None:
    model = sentence_model(protein_model, pooling="layer-attention", seed=0)
    with torch.no_grad():
        for parameter in model[1].parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))  # as if trained
    model.save(str(tmp_path / "st"))
    proteins = [r.sequence for r in sample_records(5, max_residues=80)]
    fasta = tmp_path / "p.fasta"
    fasta.write_text("".join(f">P{i}\n{s}\n" for i, s in enumerate(proteins)))

    assert main(["embed", str(tmp_path / "st"), str(fasta), "-o", str(tmp_path / "la.npz")]) == 0
    _, vectors, pooling = read_npz(tmp_path / "la.npz")
    assert pooling == "layer-attention"
    np.testing.assert_allclose(vectors, load_sentence_model(tmp_path / "st").encode(proteins), atol=1e-5)

    assert (
        main(
            ["embed", str(tmp_path / "st"), str(fasta), "-o", str(tmp_path / "mean.npz"), "--pooling", "mean"]
        )
        == 0
    )
    _, means, pooling = read_npz(tmp_path / "mean.npz")
    body, tokenizer = load_encoder(protein_model)
    assert pooling == "mean"
    np.testing.assert_allclose(means, encode(body, tokenizer, proteins, pooling="mean"), atol=1e-5)


@pytest.mark.parametrize(("output", "message"), [("out.npz", "is a directory"), ("out.csv", "*.npz")])
def test_the_output_is_refused_before_the_model_or_input_is_opened(tmp_path, capsys, output, message) -> None:
    (tmp_path / "out.npz").mkdir()
    missing = tmp_path / "missing"
    args = ["embed", str(missing / "model"), str(missing / "in.fasta"), "-o", str(tmp_path / output)]
    assert main(args) == 2
    err = capsys.readouterr().err
    # About the output alone: neither the model directory nor the input file was looked at.
    assert f"error: {tmp_path / output}: " in err and message in err and str(missing) not in err


def test_sigterm_mid_embedding_leaves_no_output_and_no_temporary_files(protein_model, tmp_path) -> None:
    records = sample_records(120, max_residues=150)
    fasta = tmp_path / "many.fasta"
    with fasta.open("w") as handle:  # enough proteins that embedding outlasts the signal's journey
        for copy in range(20):
            handle.writelines(f">{r.id}-{copy}\n{r.sequence}\n" for r in records)
    out = tmp_path / "out" / "emb.npz"
    command = [sys.executable, "-m", "seqstruct.cli", "embed", str(protein_model), str(fasta), "-o", str(out)]
    with (tmp_path / "stderr").open("w") as stderr:
        child = subprocess.Popen([*command, "--batch-size", "4"], stderr=stderr)
    try:
        deadline = time.monotonic() + 300  # imports alone take half a minute on a busy machine
        # The parts directory's manifest: written once the input is counted, before the model loads.
        while not (out.parent / "emb.npz.parts" / "manifest.json").exists() and child.poll() is None:
            assert time.monotonic() < deadline, "embed never started writing"
            time.sleep(0.01)
        time.sleep(0.5)  # into loading the model or embedding
        child.send_signal(signal.SIGTERM)
        code = child.wait(timeout=60)
    finally:
        child.kill()
    assert code == 128 + signal.SIGTERM, (tmp_path / "stderr").read_text()[-2000:]
    assert list(out.parent.iterdir()) == []  # no chunk finished: nothing to resume is kept


def test_embed_per_residue_and_layers_resumed_after_an_interruption(
    protein_model, tmp_path, monkeypatch, capsys
) -> None:
    fasta = tmp_path / "p.fasta"
    records = sample_records(20, max_residues=40)
    fasta.write_text("".join(f">{r.id}\n{r.sequence}\n" for r in records))
    flags = ["--include", "mean", "bos", "--per-residue", "--layers", "-1", "0", "--chunk-size", "5"]
    whole = tmp_path / "whole.npz"
    assert main(["embed", str(protein_model), str(fasta), "-o", str(whole), *flags]) == 0

    out = tmp_path / "out.npz"
    represent, calls = extract_module.represent, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("CUDA out of memory")  # as a GPU run might, two chunks in
        return represent(*args, **kwargs)

    monkeypatch.setattr(extract_module, "represent", failing)
    with pytest.raises(RuntimeError, match="out of memory"):
        main(["embed", str(protein_model), str(fasta), "-o", str(out), *flags])
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["embed", str(protein_model), str(fasta), "-o", str(out), *flags[:-2], "--resume"]) == 2
    assert (
        "other settings than the interrupted run's: chunk_size (5 then, 4096 now)" in capsys.readouterr().err
    )
    assert main(["embed", str(protein_model), str(fasta), "-o", str(out), *flags, "--resume"]) == 0

    with np.load(out, allow_pickle=False) as data, np.load(whole, allow_pickle=False) as reference:
        assert sorted(data.files) == sorted(reference.files)
        assert "embeddings" not in data.files and data["layers"].tolist() == [2, 0]
        for name in reference.files:
            np.testing.assert_array_equal(data[name], reference[name])  # the same batches: bit for bit
        assert data["ids"].tolist() == [r.id for r in records]
        assert data["offsets"][-1] == sum(len(r.sequence) for r in records)


def test_layers_without_a_representation_that_has_layers_are_refused(
    protein_model, protein_fasta, tmp_path, capsys
) -> None:
    out = tmp_path / "x.npz"
    assert main(["embed", str(protein_model), str(protein_fasta), "-o", str(out), "--layers", "0"]) == 2
    assert "layers [0] apply to mean, per_residue and bos" in capsys.readouterr().err
    assert not out.exists()
