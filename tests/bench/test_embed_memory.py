"""`seqstruct bench embed-memory` on a few tiny proteins: the proteins it draws, one measured embed run."""

from __future__ import annotations

import dataclasses
import json

from seqstruct.bench.cli import settings
from seqstruct.bench.embed_memory import EmbedMemoryConfig, embed_memory_report, random_fasta
from seqstruct.cli import build_parser
from seqstruct.data.fasta import read_fasta


def test_random_fasta_is_seeded_and_within_the_lengths(tmp_path) -> None:
    residues = random_fasta(tmp_path / "a.fasta", 50, 5, 9, seed=3)
    random_fasta(tmp_path / "b.fasta", 50, 5, 9, seed=3)
    records = read_fasta(tmp_path / "a.fasta")
    assert (tmp_path / "a.fasta").read_text() == (tmp_path / "b.fasta").read_text()
    assert len(records) == 50 and {len(r.sequence) for r in records} <= set(range(5, 10))
    assert residues == sum(len(r.sequence) for r in records)


def test_parsed_defaults_are_the_dataclass_defaults() -> None:
    args = build_parser().parse_args(["bench", "embed-memory"])
    assert dataclasses.asdict(settings(EmbedMemoryConfig, args)) == dataclasses.asdict(EmbedMemoryConfig())


def test_one_tiny_run_is_measured(tmp_path) -> None:
    config = EmbedMemoryConfig(
        sizes=(30,), min_residues=10, max_residues=40, max_length=16, workdir=str(tmp_path)
    )
    table = embed_memory_report(config, tmp_path / "result.json")
    assert table.splitlines()[0].startswith("| proteins | residues |") and "| 30 |" in table
    run = json.loads((tmp_path / "result.json").read_text())["runs"][0]
    assert run["proteins"] == 30 and run["peak_rss_mib"] > 0 and run["seconds"] > 0
    assert (tmp_path / "random-30.npz").is_file() and not (tmp_path / "random-30.fasta").exists()
