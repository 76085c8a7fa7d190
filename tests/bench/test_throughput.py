from __future__ import annotations

import json

from seqstruct.bench.throughput import throughput_report


def test_throughput_report_runs_on_tiny_settings(protein_fasta, tmp_path) -> None:
    """The benchmark code path (not its speed): tables and JSON come out with positive figures."""
    out = tmp_path / "bench.json"
    table = throughput_report(
        protein_fasta, "tiny", [64], 4, 2, "fp32", 24, 8, 128, 1, str(out), attentions=("sdpa", "favor")
    )
    assert "| tiny | sdpa | 64 | 4 | False | 2 |" in table
    assert "| tiny | favor | 64 | 4 | False | 2 |" in table
    figures = json.loads(out.read_text())
    assert [row["attention"] for row in figures["pretrain"]] == ["sdpa", "favor"]
    assert all(row["tokens_per_second"] > 0 and row["peak_rss_gib"] > 0 for row in figures["pretrain"])
    assert figures["embed"]["encode_seq_per_s"] > 0 and figures["embed"]["plain_seq_per_s"] > 0
    assert len(figures["embed"]["ratios"]) == 1
