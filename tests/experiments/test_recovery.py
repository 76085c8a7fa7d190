"""`seqstruct distill` end to end on a tiny random BERT teacher and a tiny GO database (seconds)."""

from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizer

from seqstruct.cli import main
from seqstruct.config import DistillConfig, load_config
from seqstruct.experiments.recovery import distill, in_heldout
from tests.data.test_go import tiny_go_content, write_go_sqlite

POOLING = {
    "word_embedding_dimension": 32,
    "pooling_mode_cls_token": False,
    "pooling_mode_mean_tokens": True,
    "pooling_mode_max_tokens": False,
    "pooling_mode_mean_sqrt_len_tokens": False,
}
MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
]


def write_tiny_teacher(directory: Path, texts: list[str]) -> Path:
    """A 2-layer BERT with sharpened attention, a WordPiece vocabulary of the texts' words, and the
    sentence-transformers files of all-MiniLM-L6-v2 (mean pooling, then normalisation)."""
    words = sorted({w for text in texts for w in re.findall(r"\w+|[^\w\s]", text.lower())})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    model = BertModel(config)
    with torch.no_grad():  # attention as peaked and as weighty as a trained model's: FAVOR+ errs visibly
        for layer in model.encoder.layer:
            layer.attention.self.query.weight.mul_(20.0)
            layer.attention.self.key.weight.mul_(20.0)
            layer.attention.self.value.weight.mul_(10.0)  # and attention that moves the residual stream
            layer.attention.output.dense.weight.mul_(10.0)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "modules.json").write_text(json.dumps(MODULES))
    (directory / "sentence_bert_config.json").write_text('{"max_seq_length": 64, "do_lower_case": false}')
    (directory / "1_Pooling").mkdir()
    (directory / "1_Pooling" / "config.json").write_text(json.dumps(POOLING))
    return directory


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("distill-inputs")
    terms, edges, synonyms = tiny_go_content()
    go_path = write_go_sqlite(root / "GO.sqlite", terms, edges, synonyms)
    texts = [t[1] for t in terms] + [t[3] for t in terms if t[3]] + [s[1] for s in synonyms]
    teacher = root / "teacher"
    teacher.mkdir()
    return {"go": go_path, "teacher": write_tiny_teacher(teacher, texts)}


def overrides(inputs: dict[str, Path], out: Path, **extra: object) -> list[str]:
    values: dict[str, object] = {
        "output_dir": out,
        "model.teacher": inputs["teacher"],
        "model.favor.num_features": 8,
        "data.go_sqlite": inputs["go"],
        "data.heldout_fraction": 0.3,
        "data.synonyms": True,
        "data.max_length": 32,
        "data.eval_loss_texts": 4,
        "data.pairs": 12,
        "train.max_steps": 6,
        "train.batch_size": 8,
        "train.learning_rate": 3e-3,
        "train.warmup_steps": 0,
        "train.logging_steps": 1,
        "train.eval_steps": 3,
        "train.save_steps": 3,
        "train.eval_batch_size": 8,
        "train.precision": "fp32",
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


@pytest.fixture(scope="module")
def finished(inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("distill-run") / "student"
    config = tmp_path_factory.mktemp("distill-config") / "run.yaml"
    config.write_text("model:\n  favor:\n    num_features: 8\n")
    assert main(["distill", str(config), *overrides(inputs, out)]) == 0
    return out


def test_outputs_and_recovery(finished, inputs) -> None:
    from sentence_transformers import SentenceTransformer

    out = finished
    for name in (
        "config.yaml", "log.csv", "metrics.json", "summary.md", "similarity_pairs.tsv", "config.json",
        "model.safetensors", "tokenizer.json", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json",
    ):  # fmt: skip
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").iterdir()) and (out / "checkpoints" / "checkpoint-6").is_dir()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 6 and metrics["favor"]["num_features"] == 8
    assert metrics["before"]["cosine"]["n"] == metrics["after"]["cosine"]["n"] > 0
    assert set(metrics["targets"]) >= {"cosine_met", "spearman_met", "met"}
    assert "Targets" in (out / "summary.md").read_text()
    pairs = (out / "similarity_pairs.tsv").read_text().splitlines()
    assert pairs[0] == "id1\tid2\tlin\tkind" and len(pairs) == metrics["pairs"] + 1

    with open(out / "log.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    losses = [float(r["loss"]) for r in rows if r.get("loss")]
    assert any(r.get("eval_loss") for r in rows)
    improved = metrics["after"]["cosine"]["mean"] >= metrics["before"]["cosine"]["mean"]
    assert improved or losses[-1] < losses[0], (losses, metrics["before"], metrics["after"])

    # Held-out terms are exactly those the hash puts there: none of their definitions was trained on.
    heldout = {row.split("\t")[0] for row in pairs[1:]} | {row.split("\t")[1] for row in pairs[1:]}
    assert all(in_heldout(go_id, 0.3, 0) for go_id in heldout)

    model = SentenceTransformer(str(out), device="cpu")
    assert model[0].model.config._attn_implementation == "favor"
    embeddings = model.encode(["The chemical reactions and pathways involving glucose.", "membrane"])
    assert embeddings.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_resume_refuses_other_settings_and_finishes_a_finished_run(finished, inputs, capsys, caplog) -> None:
    out = finished
    config = load_config(DistillConfig, None, overrides(inputs, out))
    with pytest.raises(FileExistsError, match="--resume"):
        distill(config)
    changed = overrides(inputs, out, **{"data.heldout_fraction": 0.4})
    assert main(["distill", str(out / "config.yaml"), *changed, "--resume"]) == 2
    assert "data.heldout_fraction: 0.3 -> 0.4" in capsys.readouterr().err

    first = json.loads((out / "metrics.json").read_text())
    caplog.set_level(logging.INFO, logger="seqstruct")
    again = distill(config, resume=True)
    assert "already reached max_steps=6: evaluating and saving only" in caplog.text
    assert again["steps"] == 6 and again["before"] == first["before"]
    assert again["after"]["cosine"]["mean"] == pytest.approx(first["after"]["cosine"]["mean"], abs=1e-6)
