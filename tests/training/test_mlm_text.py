"""Continued masked-LM pretraining of a pretrained text encoder (all-MiniLM-L6-v2) on a prepared text
dataset, plain and structure-inducing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import AutoModel, AutoTokenizer

from seqstruct.config import PretrainConfig, load_config
from seqstruct.data.collate import MaskedLMCollator
from seqstruct.data.graph import Graph
from seqstruct.data.prepared import DatasetInfo, write_prepared
from seqstruct.data.tokenizers import build_protein_tokenizer, replacement_token_ids
from seqstruct.models.io import resolve_model_path
from seqstruct.objectives.mlm import Unigram
from seqstruct.training.mlm import pretrain

# Glosses in the style of WordNet's (written for this test; the pipeline, not the words, is under test).
GLOSSES = [
    "a domesticated carnivorous mammal that typically has a long snout and an acute sense of smell",
    "a small domesticated carnivorous mammal with soft fur and retractable claws",
    "a large carnivorous feline mammal of Africa and Asia with a tawny coat",
    "an animal that feeds on the flesh of other animals",
    "a warm-blooded vertebrate animal that has hair and feeds its young with milk",
    "a device that computes, especially a programmable electronic machine",
    "a machine for performing calculations automatically",
    "a portable computer small enough to use on your lap",
    "an electronic device that stores and processes data",
    "the branch of engineering that deals with computers and their programs",
    "a body of water surrounded by land",
    "a large natural stream of water flowing in a channel to the sea",
    "a relatively narrow body of water linking two larger bodies",
    "an area of low-lying land with water and plants",
    "the part of the earth's surface covered with water",
    "a tall perennial woody plant having a main trunk and branches",
    "a plant having foliage that persists and remains green",
    "the hard fibrous substance under the bark of trees",
    "a flower with fragrant petals that grows on a prickly shrub",
    "a small plant with leaves and a flower used as decoration",
]


@pytest.fixture(scope="module")
def text_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ids = [f"g{i:02d}" for i in range(len(GLOSSES))]
    topic = [i // 5 for i in range(len(GLOSSES))]
    edges = [(a, b) for a in range(20) for b in range(a + 1, 20) if topic[a] == topic[b]]
    graph = Graph(tuple(ids), torch.tensor(edges).numpy(), torch.ones(len(edges)).numpy())
    splits = {"train": Dataset.from_dict({"id": ids, "text": GLOSSES, "topic": [str(t) for t in topic]})}
    info = DatasetInfo(name="glosses", kind="text", recipe="test", config={})
    out = tmp_path_factory.mktemp("data") / "glosses"
    write_prepared(out, info, splits, graph=graph)
    return out


def _config(dataset: Path, output: Path, **extra: object) -> PretrainConfig:
    overrides = {
        "output_dir": output,
        "data.dataset": dataset,
        "model.pretrained": "minilm",
        "data.max_length": 32,
        "data.eval_fraction": 0.2,
        "train.max_steps": 4,
        "train.batch_size": 4,
        "train.learning_rate": 1e-4,
        "train.warmup_steps": 1,
        "train.logging_steps": 2,
        "train.eval_steps": 4,
        "train.save_steps": 4,
        "train.precision": "fp32",
        **extra,
    }
    return load_config(PretrainConfig, None, [f"{k}={v}" for k, v in overrides.items()])


def test_text_collator_truncates_and_replaces_with_word_pieces() -> None:
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
    collator = MaskedLMCollator(tokenizer, max_length=8, mlm_probability=0.5)
    batch = collator([{"id": "a", "sequence": GLOSSES[0]}, {"id": "b", "sequence": "a lake"}])
    assert batch["input_ids"].shape == (2, 8)  # truncated to max_length, the short one padded
    assert batch["input_ids"][0, -1].item() == tokenizer.sep_token_id  # truncation keeps [SEP]
    pool = set(replacement_token_ids(tokenizer))
    assert tokenizer.mask_token_id not in pool and tokenizer.cls_token_id not in pool
    assert len(pool) == len(tokenizer) - len(set(tokenizer.all_special_ids))
    protein = build_protein_tokenizer()
    assert set(replacement_token_ids(protein)) == set(
        protein.convert_tokens_to_ids(list("LAGVSERTIDPKQNFYMHWC"))
    )


def test_text_unigram_counts_word_pieces() -> None:
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
    unigram = Unigram.fit(["water water land", "water"], tokenizer)
    water, land = tokenizer.convert_tokens_to_ids(["water", "land"])
    assert unigram.most_frequent == water
    # add-one smoothing: water 3+1, land 1+1
    assert unigram.log_probs[water] - unigram.log_probs[land] == pytest.approx(
        torch.log(torch.tensor(2.0)).item()
    )
    assert unigram.log_probs[tokenizer.mask_token_id] == -float("inf")


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_continued_pretraining_of_minilm_saves_a_loadable_encoder(text_dataset, tmp_path, weight) -> None:
    graph = text_dataset / "graph.tsv"
    config = _config(text_dataset, tmp_path / "run", **{"structure.graph": graph, "structure.weight": weight})
    metrics = pretrain(config)
    assert metrics["steps"] == 4 and metrics["train_proteins"] == 16
    assert metrics["heldout"]["perplexity"] > 1
    heldout = (tmp_path / "run" / "heldout.tsv").read_text().splitlines()
    assert heldout[0] == "id\ttext" and len(heldout) == 5 and heldout[1].split("\t")[1] in GLOSSES
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["architectures"] == ["BertForMaskedLM"]
    encoder = AutoModel.from_pretrained(tmp_path / "run")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "run")
    original = AutoModel.from_pretrained(resolve_model_path("minilm"))
    moved = [
        name
        for name, p in encoder.state_dict().items()
        if name in original.state_dict() and not torch.equal(p, original.state_dict()[name])
    ]
    assert moved, "continued pretraining left every weight of the encoder unchanged"
    assert tokenizer.vocab_size == 30522
    if weight > 0:
        assert metrics["structure"]["training_edges"] > 0


def test_exactly_one_data_source(text_dataset, tmp_path) -> None:
    config = _config(text_dataset, tmp_path / "run", **{"data.fasta": "x.fasta"})
    with pytest.raises(ValueError, match="exactly one of data.fasta"):
        pretrain(config)
