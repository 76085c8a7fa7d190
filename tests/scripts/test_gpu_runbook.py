"""The GPU run book (scripts/gpu/), run here on CPU at tiny scale, so that a GPU minute is never spent on
a typo: pretrain.sh from scratch, ship.sh, then pretrain.sh continuing the shipped model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import torch
from transformers import AutoModelForMaskedLM

from seqstruct.data.fasta import write_fasta
from tests.helpers import sample_records

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "model.preset=tiny",
    "data.max_length=128",
    "data.max_tokens=2048",
    "train.gradient_accumulation_steps=1",
    "train.learning_rate=3e-3",
    "train.eval_steps=1000",
    "train.save_steps=1000",
    "train.num_workers=0",
]


def _run(script: str, *args: str | Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu" / script), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def _bundle(tmp_path: Path) -> Path:
    records = sample_records(300, max_residues=150)
    bundle = tmp_path / "bundle"
    write_fasta(records[:260], bundle / "data" / "train.fasta.gz")
    write_fasta(records[260:], bundle / "data" / "heldout.fasta.gz")
    # What bundle.sh writes beside the shard it cut (tests/scripts/test_gpu_bundle.py runs it).
    sample = {"corpus": "swissprot-pretrain", "shard": "shard-001.fasta.gz", "proteins": 260, "of": 400}
    (bundle / "data" / "train.source.json").write_text(json.dumps(sample))
    return bundle


def _brought_back(out: Path) -> list[Path]:
    files = sorted(out.iterdir())
    # What the GPU machine gives back: at most 8 files of at most 16 MiB.
    assert 1 < len(files) <= 8 and all(f.stat().st_size <= 16 * 2**20 for f in files)
    assert {f.name for f in files} >= {"run.tar.gz", "model-00001-of-00001.safetensors"}
    return files


def test_pretrain_ship_and_continue_on_cpu(tmp_path) -> None:
    bundle = _bundle(tmp_path)
    first = tmp_path / "first"
    log = _run(
        "pretrain.sh",
        "--device",
        "cpu",
        "--minutes",
        "0.4",
        "--probe-steps",
        "3",
        "--scratch",
        "--bundle",
        bundle,
        "--out",
        first,
        *TINY,
    )
    assert "continuing nothing (from scratch)" in log and "probe:" in log
    _brought_back(first)
    with tarfile.open(first / "run.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"config.json", "tokenizer.json", "history.json", "README.md", "log.csv", "metrics.json"} <= names

    models = tmp_path / "models"
    shipping = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu" / "ship.sh"), str(first), "tiny-protein"],
        capture_output=True,
        text=True,
        env={**os.environ, "SEQSTRUCT_SHIP_DIR": str(models)},
        timeout=300,
    )
    assert shipping.returncode == 0, shipping.stderr[-3000:]
    shipped = models / "tiny-protein"
    model = AutoModelForMaskedLM.from_pretrained(shipped)  # plain transformers, no seqstruct needed
    assert next(model.parameters()).dtype == torch.float32  # stored in bf16, loaded in fp32
    history = json.loads((shipped / "history.json").read_text())
    assert len(history) == 1 and history[0]["continued_from"] is None and history[0]["train_tokens"] > 0
    # The history names the corpus's shard and the sample of it, not the bundle's file name.
    assert history[0]["data"] == "swissprot-pretrain/shard-001.fasta.gz"
    assert history[0]["data_sample"]["proteins"] == 260 and history[0]["data_sample"]["of"] == 400

    second = tmp_path / "second"
    log = _run(
        "pretrain.sh",
        "--device",
        "cpu",
        "--minutes",
        "0.4",
        "--probe-steps",
        "3",
        "--init",
        shipped,
        "--bundle",
        bundle,
        "--out",
        second,
        *TINY,
    )
    assert f"continuing {shipped}" in log
    _brought_back(second)
    with tarfile.open(second / "run.tar.gz") as tar:
        history = json.load(tar.extractfile("history.json"))
        card = tar.extractfile("README.md").read().decode()
    assert len(history) == 2 and history[1]["continued_from"] == str(shipped)
    assert "pretraining runs: 2" in card and "| 2 | swissprot-pretrain/shard-001.fasta.gz |" in card


def test_pretrain_sh_refuses_a_missing_bundle(tmp_path) -> None:
    done = subprocess.run(
        [
            "bash",
            str(ROOT / "scripts" / "gpu" / "pretrain.sh"),
            "--minutes",
            "1",
            "--out",
            str(tmp_path / "o"),
            "--bundle",
            str(tmp_path / "none"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "run scripts/gpu/bundle.sh here first" in done.stderr
