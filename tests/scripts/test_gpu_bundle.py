"""scripts/gpu/bundle.sh on a hand-made corpus in the swissprot-pretrain layout (a prepared dataset whose
`valid` split is the held-out clusters, with shard-00k.fasta.gz beside it): which shard it takes, what it
writes, and that it names the shard for the model's history."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from datasets import Dataset

from seqstruct.data.fasta import FastaRecord, read_fasta, write_fasta
from seqstruct.data.prepared import DatasetInfo, write_prepared

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_HISTORY = ROOT / "src" / "seqstruct" / "resources" / "models" / "protein-small" / "history.json"
SHARDS = 3


def _corpus(path: Path) -> dict[str, list[str]]:
    """Three shards of 4 proteins each (distinct ids per shard) and a valid split of 2; returns the ids."""
    ids = {f"shard-{k:03d}.fasta.gz": [f"S{k}P{i}" for i in range(4)] for k in range(SHARDS)}
    ids["valid"] = ["V0", "V1"]
    info = DatasetInfo(name="corpus", kind="protein", recipe="handmade", config={})
    splits = {
        "train": Dataset.from_dict({"id": ids["shard-000.fasta.gz"], "text": ["MKVLA"] * 4}),
        "valid": Dataset.from_dict({"id": ids["valid"], "text": ["ACDEF", "GHIKL"]}),
    }
    write_prepared(path, info, splits)
    for k in range(SHARDS):
        name = f"shard-{k:03d}.fasta.gz"
        write_fasta((FastaRecord(i, "", "MKVLAGHIK") for i in ids[name]), path / name)
    return ids


def _bundle(*args: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu" / "bundle.sh"), "--no-wheels", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )


def test_bundle_takes_the_next_shard_and_names_it(tmp_path: Path) -> None:
    corpus = tmp_path / "swissprot-pretrain"
    ids = _corpus(corpus)
    runs = len(json.loads(SHIPPED_HISTORY.read_text())) if SHIPPED_HISTORY.is_file() else 0
    expected = f"shard-{runs % SHARDS:03d}.fasta.gz"  # each run of the shipped model continues on fresh data

    done = _bundle("--corpus", corpus, "--out", tmp_path / "auto")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    data = tmp_path / "auto" / "data"
    assert [r.id for r in read_fasta(data / "train.fasta.gz")] == ids[expected]
    assert [r.id for r in read_fasta(data / "heldout.fasta.gz")] == ids["valid"]
    sample = json.loads((data / "train.source.json").read_text())
    assert sample == {"corpus": "swissprot-pretrain", "shard": expected, "proteins": 4, "of": 4}

    done = _bundle("--corpus", corpus, "--shard", "2", "--out", tmp_path / "two")
    assert done.returncode == 0, done.stderr[-2000:]
    assert [r.id for r in read_fasta(tmp_path / "two" / "data" / "train.fasta.gz")] == ids[
        "shard-002.fasta.gz"
    ]
    assert (
        json.loads((tmp_path / "two" / "data" / "train.source.json").read_text())["shard"]
        == "shard-002.fasta.gz"
    )


def test_bundle_names_a_missing_shard(tmp_path: Path) -> None:
    _corpus(tmp_path / "corpus")
    done = _bundle("--corpus", tmp_path / "corpus", "--shard", "7", "--out", tmp_path / "out")
    assert (
        done.returncode == 1 and "shard-007.fasta.gz" in done.stderr and "prepare the corpus" in done.stderr
    )
