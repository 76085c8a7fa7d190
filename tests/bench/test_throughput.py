from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import torch

from seqstruct.bench import throughput
from seqstruct.bench.throughput import (
    EncodeBenchConfig,
    ThroughputConfig,
    benchmark_texts,
    st_encode_report,
    throughput_report,
)


def test_throughput_report_runs_on_tiny_settings(protein_fasta, tmp_path) -> None:
    """The benchmark code path (not its speed): tables and JSON come out with positive figures."""
    out = tmp_path / "bench.json"
    config = ThroughputConfig(
        fasta=protein_fasta,
        preset="tiny",
        lengths=[64],
        batch_size=4,
        steps=2,
        precision="fp32",
        embed_n=24,
        embed_batch_size=8,
        embed_max_length=128,
        repeats=1,
        attentions=("sdpa", "favor"),
    )
    table = throughput_report(config, str(out))
    assert "| tiny | sdpa | 64 | 4 | False | 2 |" in table
    assert "| tiny | favor | 64 | 4 | False | 2 |" in table
    figures = json.loads(out.read_text())
    assert [row["attention"] for row in figures["pretrain"]] == ["sdpa", "favor"]
    assert all(row["tokens_per_second"] > 0 and row["peak_rss_gib"] > 0 for row in figures["pretrain"])
    assert figures["embed"]["encode_seq_per_s"] > 0 and figures["embed"]["plain_seq_per_s"] > 0
    assert len(figures["embed"]["ratios"]) == 1


# ---------------------------------------------------------------------------------------------------
# encode() against SentenceTransformer.encode
# ---------------------------------------------------------------------------------------------------

GO_FIXTURE = Path(__file__).parents[1] / "fixtures" / "go_text" / "GO.sqlite"  # 210 real GO terms


def tiny_encode_config(protein_dir: Path, **changes: object) -> EncodeBenchConfig:
    """MiniLM (its own mean Pooling + Normalize) on 6 GO definitions of 18 to 41 tokens cut to 32, a tiny
    protein model on 7 sample proteins of 51 to 500 tokens cut to 256: some cut, every batch padded, and
    batch 4 leaves a ragged last one."""
    settings: dict[str, object] = dict(
        text_model="minilm",
        texts=str(GO_FIXTURE),
        text_n=6,
        text_max_length=32,
        protein_model=str(protein_dir),
        protein_n=7,
        protein_max_length=256,
        batch_sizes=(4,),
        poolings=("mean", "layer-attention"),
        repeats=1,
        device="cpu",
    )
    settings.update(changes)
    return EncodeBenchConfig(**settings)


def test_benchmark_texts_from_go_sqlite_and_txt(tmp_path) -> None:
    with closing(sqlite3.connect(GO_FIXTURE)) as db:
        rows = db.execute(
            "SELECT definition FROM go_term WHERE ontology IN ('BP', 'MF', 'CC') AND definition != '' "
            "ORDER BY go_id LIMIT 3"
        ).fetchall()
    texts, source = benchmark_texts(GO_FIXTURE, 3)
    assert texts == [row[0] for row in rows] and "GO term definitions" in source
    lines = tmp_path / "texts.txt"
    lines.write_text("alpha helix\n\nbeta sheet\ncoil\n", encoding="utf-8")
    assert benchmark_texts(lines, 2) == (["alpha helix", "beta sheet"], str(lines))


def test_st_encode_report_structure_and_agreement(protein_model, tmp_path) -> None:
    """Output structure and that both sides give the same vectors (not timings)."""
    out = tmp_path / "encode.json"
    table = st_encode_report(tiny_encode_config(protein_model), out)
    figures = json.loads(out.read_text())
    machine = figures["machine"]
    assert machine["torch_threads"] == torch.get_num_threads() and machine["device"] == "cpu"
    assert set(machine) >= {"cpu_model", "torch", "transformers", "sentence_transformers"}
    assert figures["complete"] and str(GO_FIXTURE) in figures["sources"]["texts"]
    assert figures["sources"]["proteins"].endswith("(first 7)")
    cases = figures["cases"]
    assert [(c["kind"], c["pooling"]) for c in cases] == [
        ("text", "mean"),
        ("text", "layer-attention"),
        ("protein", "mean"),
        ("protein", "layer-attention"),
    ]
    # MiniLM's mean is sentence-transformers' own Pooling (then its Normalize): the ST-native case.
    assert cases[0]["modules"] == ["Pooling", "Normalize"]
    assert [c["items"] for c in cases] == [6, 6, 7, 7]
    assert [c["max_length"] for c in cases] == [32, 32, 256, 256]
    for case in cases:
        assert case["batch_size"] == 4 and len(case["ratios"]) == 1 and len(case["st_seconds"]) == 1
        assert case["agree"] and case["max_abs_diff"] < 1e-5
        assert case["seqstruct_per_s"] > 0 and case["st_per_s"] > 0
    assert "| text | minilm | mean | 6 | 4 | 32 |" in table


def test_st_encode_report_refuses_disagreeing_vectors(protein_model, tmp_path, monkeypatch) -> None:
    """The agreement check can fail: our side shifted by 1e-3 is caught, and the figures still written."""
    real = throughput.encode
    monkeypatch.setattr(throughput, "encode", lambda *args, **kwargs: real(*args, **kwargs) + 1e-3)
    config = tiny_encode_config(protein_model, text_n=0, poolings=("mean",), repeats=1)
    out = tmp_path / "encode.json"
    with pytest.raises(RuntimeError, match="disagree.*protein mean batch 4"):
        st_encode_report(config, out)
    (case,) = json.loads(out.read_text())["cases"]
    assert case["max_abs_diff"] == pytest.approx(1e-3, rel=1e-3) and not case["agree"]
