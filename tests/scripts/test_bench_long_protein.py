"""scripts/bench_long_protein.py at tiny scale: one 1,500-residue protein through `seqstruct embed` with a
FAVOR+ and an SDPA encoder of the same weights, each in its own process, every residue written."""

from __future__ import annotations

import json

import numpy as np

from tests.helpers import load_script


def _script():
    return load_script("bench_long_protein")


def test_one_long_protein_embeds_in_one_pass_with_both_attentions(tmp_path, capsys) -> None:
    length = 1500  # longer than every preset's training crop: no hidden cap on the way
    sequence = "".join(np.random.default_rng(0).choice(list("ACDEFGHIKLMNPQRSTVWY"), length))
    fasta = tmp_path / "one.fasta"
    fasta.write_text(f">long_one\n{sequence}\n")
    found = _script().main([str(tmp_path / "out"), "--fasta", str(fasta), "--preset", "tiny"])
    assert set(found) == {"favor", "sdpa"}
    for attention in ("favor", "sdpa"):
        assert (
            found[attention]["seconds"] > 0 and found[attention]["peak_rss_mib"] > 50
        )  # a Python with torch
        stored = np.load(tmp_path / "out" / f"{attention}.npz")
        assert stored["ids"].tolist() == ["long_one"] and not stored["truncated"].any()
        residues = next(stored[k] for k in stored.files if k.startswith("per_residue"))
        assert residues.shape[0] == length and np.isfinite(residues.astype(np.float32)).all()
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == found
    table = capsys.readouterr().out
    assert "| favor |" in table and "| sdpa |" in table and "SDPA / FAVOR+ wall time" in table
