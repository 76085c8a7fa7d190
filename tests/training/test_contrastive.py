"""`seqstruct contrastive` end to end: a tiny protein encoder on graph pairs with hard negatives and
layer-attention pooling (outputs, reload with load_sentence_model(dir), resume, refusals), and MiniLM
unsupervised on real GO text (slow)."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

import seqstruct  # noqa: F401  (registers seqstruct's sentence-transformers modules)
from seqstruct.cli import main
from seqstruct.data.tokenizers import build_protein_tokenizer
from seqstruct.models.encoders import build_encoder
from seqstruct.models.io import save_model_dir
from seqstruct.models.sentence import load_sentence_model, sentence_model
from tests.data.test_pairs import protein_dataset

CONFIG = Path(__file__).parents[2] / "src" / "seqstruct" / "configs" / "contrastive-go-text.yaml"
PROBES = ["MKTAYIAKQRQISFVKSHFSRQ", "MSDNELIKAVE", "MGLSDGEWQLVLNVWGKVEAD"]


def contrastive_inputs(root: Path) -> dict[str, Path]:
    """A tiny seeded encoder and 60 real proteins in a ring with chords (FASTA, graph, prepared dataset)."""
    tokenizer = build_protein_tokenizer()
    torch.manual_seed(0)
    save_model_dir(build_encoder("tiny", tokenizer, dropout=0.1), tokenizer, root / "model")
    dataset = protein_dataset(root).path  # writes root/proteins.fasta and root/graph.tsv too
    return {
        "model": root / "model",
        "dataset": dataset,
        "fasta": root / "proteins.fasta",
        "graph": root / "graph.tsv",
    }


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return contrastive_inputs(tmp_path_factory.mktemp("contrastive"))


def overrides(inputs: dict[str, Path], out: Path, **extra: object) -> list[str]:
    values: dict[str, object] = {
        "output_dir": out,
        "model": inputs["model"],
        "dataset": inputs["dataset"],
        "pairs": "graph",
        "hard_negatives": True,
        "pooling": "layer-attention",
        "max_length": 48,
        "eval_pairs": 16,
        "train.max_steps": 4,
        "train.batch_size": 8,
        "train.eval_batch_size": 8,
        "train.learning_rate": 1e-3,
        "train.warmup_steps": 0,
        "train.logging_steps": 1,
        "train.eval_steps": 2,
        "train.save_steps": 2,
        "train.precision": "fp32",
    }
    values.update(extra)
    return [f"{key}={value}" for key, value in values.items()]


@pytest.fixture(scope="module")
def finished(inputs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["contrastive", str(CONFIG), *overrides(inputs, out)]) == 0
    return out


def _encode(path: Path) -> np.ndarray:
    return load_sentence_model(path, device="cpu").encode(PROBES)  # seqstruct's poolings included


def test_outputs_reload_and_hold_the_trained_weights(finished: Path, inputs: dict[str, Path]) -> None:
    for name in ("config.json", "model.safetensors", "tokenizer.json", "modules.json", "config.yaml"):
        assert (finished / name).is_file(), name
    modules = json.loads((finished / "modules.json").read_text())
    assert modules[0]["path"] == "" and modules[1]["type"].endswith("LayerAttentionPooling")
    assert (finished / modules[1]["path"] / "model.safetensors").is_file()
    metrics = json.loads((finished / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["pairs"] == "graph" and metrics["setting"] == "supervised"
    assert metrics["modules"] == ["Transformer", "LayerAttentionPooling"] and metrics["dropout"] == 0.1
    assert metrics["train_pairs"] == metrics["pairs_available"] > 10 and metrics["heldout_pairs"] > 0
    assert 0 <= metrics["pairs_without_negative"] < metrics["train_pairs"]
    assert np.isfinite(metrics["train_loss"]) and np.isfinite(metrics["heldout"]["loss"])
    with open(finished / "log.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert sum(bool(r.get("loss")) for r in rows) == 4 and sum(bool(r.get("eval_loss")) for r in rows) >= 2
    assert yaml.safe_load((finished / "config.yaml").read_text())["temperature"] == 0.05

    reloaded = load_sentence_model(finished, device="cpu")
    assert type(reloaded[1]).__name__ == "LayerAttentionPooling"
    final = reloaded.encode(PROBES)
    assert final.shape == (3, 32)
    # The saved model is the last checkpoint's, and training moved it away from where it started.
    np.testing.assert_allclose(final, _encode(finished / "checkpoints" / "checkpoint-4"), atol=1e-6)
    start = sentence_model(inputs["model"], pooling="layer-attention", max_length=48, seed=0)
    assert np.abs(final - start.encode(PROBES)).max() > 1e-3


def test_heldout_geometry_before_and_after(finished: Path, inputs: dict[str, Path]) -> None:
    """metrics.json holds the held-out pairs' alignment and uniformity before and after training. The
    untrained layer-attention is mean pooling, so `before` is mean pooling's geometry to the last digits;
    `after` is the trained model's."""
    from seqstruct.data.pairs import heldout_pairs
    from seqstruct.data.prepared import load_prepared
    from seqstruct.training.contrastive import heldout_geometry

    geometry = json.loads((finished / "metrics.json").read_text())["geometry"]
    pairs = heldout_pairs(load_prepared(inputs["dataset"]), "graph", max_pairs=16, seed=0)
    mean = sentence_model(inputs["model"], pooling="mean", max_length=48)
    expected = heldout_geometry(mean, pairs, batch_size=8)
    for key in ("alignment", "uniformity"):
        assert geometry["before"][key] == pytest.approx(expected[key], abs=1e-6)
    assert 0 <= geometry["after"]["alignment"] <= 4 and -8 <= geometry["after"]["uniformity"] <= 0
    trained = heldout_geometry(load_sentence_model(finished, device="cpu"), pairs, batch_size=8)
    assert geometry["after"] == pytest.approx(trained, abs=1e-6)
    assert geometry["after"] != pytest.approx(geometry["before"], abs=1e-4)  # training moved it


def test_resume_equals_uninterrupted(finished: Path, inputs: dict[str, Path], tmp_path: Path) -> None:
    resumed = tmp_path / "resumed"
    shutil.copytree(finished / "checkpoints" / "checkpoint-2", resumed / "checkpoints" / "checkpoint-2")
    assert main(["contrastive", str(CONFIG), *overrides(inputs, resumed), "--resume"]) == 0
    assert json.loads((resumed / "metrics.json").read_text())["steps"] == 4
    for part in ("model.safetensors", "1_LayerAttentionPooling/model.safetensors"):
        a, b = load_file(finished / part), load_file(resumed / part)
        assert a.keys() == b.keys()
        for key in a:
            assert (a[key] - b[key]).abs().max() <= 1e-5, (part, key)


def test_a_finished_run_is_only_evaluated_and_saved_again(
    finished: Path, inputs: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    before = json.loads((finished / "metrics.json").read_text())
    caplog.set_level("INFO", logger="seqstruct")
    assert main(["contrastive", str(finished / "config.yaml"), "--resume"]) == 0
    assert "already reached max_steps=4: evaluating and saving only" in caplog.text
    after = json.loads((finished / "metrics.json").read_text())
    assert after["steps"] == 4 and after["train_loss"] == before["train_loss"]
    assert after["heldout"]["loss"] == pytest.approx(before["heldout"]["loss"], abs=1e-5)
    # The untrained model's geometry is carried over (the checkpoint is the trained one), the trained one
    # measured again.
    assert after["geometry"]["before"] == before["geometry"]["before"]
    assert after["geometry"]["after"] == pytest.approx(before["geometry"]["after"], abs=1e-5)


def test_refusals(
    finished: Path, inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["contrastive", str(CONFIG), *overrides(inputs, finished)]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err
    assert main(["contrastive", str(CONFIG), *overrides(inputs, finished, temperature=0.1), "--resume"]) == 2
    assert "temperature: 0.05 -> 0.1" in capsys.readouterr().err
    fresh = overrides(inputs, tmp_path / "unsup", setting="unsupervised", hard_negatives=False, dropout=0.0)
    assert main(["contrastive", str(CONFIG), *fresh]) == 2
    assert (
        "unsupervised contrastive training uses dropout as its only augmentation" in capsys.readouterr().err
    )
    assert main(["contrastive", str(CONFIG), *overrides(inputs, tmp_path / "x", setting="unsupervised")]) == 2
    assert "hard_negatives needs setting=supervised" in capsys.readouterr().err
    assert main(["contrastive", str(CONFIG), *overrides(inputs, tmp_path / "y", pooling="median")]) == 2
    assert "pooling must be one of" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


@pytest.mark.slow
def test_minilm_unsupervised_on_go_text(tmp_path: Path) -> None:
    from seqstruct.data.sources.go_text import prepare_go_text

    go = prepare_go_text(
        tmp_path / "go-text", go_sqlite=Path(__file__).parents[1] / "fixtures" / "go_text" / "GO.sqlite"
    )
    out = tmp_path / "minilm"
    args = [
        f"output_dir={out}",
        f"dataset={go.path}",
        "setting=unsupervised",
        "pooling=first-last",
        "max_length=32",
        "eval_pairs=16",
        "train.max_steps=3",
        "train.batch_size=8",
        "train.eval_batch_size=8",
        "train.logging_steps=1",
        "train.eval_steps=3",
        "train.save_steps=3",
        "train.precision=fp32",
    ]
    assert main(["contrastive", str(CONFIG), *args]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pairs"] == "unsupervised" and metrics["train_pairs"] == len(go.split("train"))
    assert metrics["modules"] == ["Transformer", "SeqPooling", "Normalize"] and metrics["dropout"] == 0.1
    embeddings = _encode(out)
    assert embeddings.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)  # MiniLM's Normalize kept


def test_favor_projections_are_redrawn_through_the_sentence_model(tmp_path: Path) -> None:
    from transformers import TrainerState

    from seqstruct.attention.interface import BUFFER
    from seqstruct.config import FavorConfig
    from seqstruct.training.contrastive import SentenceFavorRedrawCallback

    tokenizer = build_protein_tokenizer()
    favor = FavorConfig(num_features=16, redraw_interval=2)
    save_model_dir(build_encoder("tiny", tokenizer, "favor", 0.1, favor), tokenizer, tmp_path / "favor")
    model = sentence_model(tmp_path / "favor", pooling="mean")

    def projections() -> list[torch.Tensor]:
        return [b.clone() for name, b in model.named_buffers() if name.endswith(BUFFER)]

    before = projections()
    assert len(before) == 2  # one per layer of the tiny preset
    callback = SentenceFavorRedrawCallback()
    callback.on_step_end(None, TrainerState(global_step=1), None, model=model)  # not a redraw step
    assert all(torch.equal(a, b) for a, b in zip(before, projections(), strict=True))
    callback.on_step_end(None, TrainerState(global_step=2), None, model=model)
    assert all(not torch.equal(a, b) for a, b in zip(before, projections(), strict=True))


def test_pooling_learning_rate_reaches_the_optimizer(
    inputs: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """train.pooling_learning_rate puts the pooling module's weights, and only them, in their own group."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer

    from seqstruct.config import ContrastiveConfig, ContrastiveTrainConfig
    from seqstruct.objectives.contrastive import contrastive_loss
    from seqstruct.training.contrastive import contrastive_arguments, pooling_learning_rates
    from seqstruct.training.run import Run

    model = sentence_model(inputs["model"], pooling="layer-attention", max_length=48, seed=0)
    assert pooling_learning_rates(model, 0.0) == {}
    mean = sentence_model(inputs["model"], pooling="mean")  # a pooling without weights
    with caplog.at_level(logging.WARNING, logger="seqstruct.training.contrastive"):
        assert pooling_learning_rates(mean, 1e-3) == {}
    assert "pooling_learning_rate=0.001 is ignored" in caplog.text
    train = ContrastiveTrainConfig(learning_rate=1e-5, pooling_learning_rate=1e-3, precision="fp32")
    config = ContrastiveConfig(output_dir=str(tmp_path), train=train)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=contrastive_arguments(config, Run(config), evaluate=False, model=model),
        train_dataset=Dataset.from_dict({"anchor": ["MKTAY", "MSDNE"], "positive": ["MKTAY", "MSDNE"]}),
        loss=contrastive_loss(model, 0.05),
    )
    trainer.create_optimizer()
    rate = {id(p): group["lr"] for group in trainer.optimizer.param_groups for p in group["params"]}
    pooling = [id(p) for p in model[1].parameters()]
    encoder = [id(p) for p in model[0].parameters()]
    assert pooling and all(rate[p] == 1e-3 for p in pooling)
    assert all(rate[p] == 1e-5 for p in encoder)
