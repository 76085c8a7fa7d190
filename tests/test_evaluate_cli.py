"""`seqstruct evaluate` end to end: registered tasks on tiny prepared datasets (JSON + one-row markdown per
task, tables gathered from several), fine-tuning over seeds, knn/link on a `synth` dataset, and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seqstruct.cli import main
from seqstruct.data.fasta import read_fasta
from seqstruct.data.tokenizers import build_protein_tokenizer
from seqstruct.evaluation.methods.baselines import kmer_composition
from seqstruct.evaluation.tables import results_table
from seqstruct.models.embed import save_embeddings
from seqstruct.models.encoders import build_encoder
from seqstruct.models.io import save_model_dir
from tests.evaluation.tasks.datasets import go_text, protein_dataset, text_dataset  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def proteins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return protein_dataset(tmp_path_factory.mktemp("proteins") / "data").path


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return text_dataset(tmp_path_factory.mktemp("texts") / "data").path


def test_tasks_write_json_and_a_table_row(proteins, tmp_path, capsys) -> None:
    out = tmp_path / "aac"
    args = [
        "evaluate",
        "baseline:aac",
        "--task",
        "go-mf-class",
        "go-mf",
        "min_count=3",
        "--data",
        str(proteins),
    ]
    assert main([*args, "-o", str(out), "--seeds", "3"]) == 0
    printed = capsys.readouterr().out
    assert "go-mf [baseline:aac] test_close: fmax" in printed
    assert f"go-mf-class.json and go-mf-class.md, go-mf.json and go-mf.md in {out}" in printed

    result = json.loads((out / "go-mf.json").read_text())
    assert result["task"] == "go-mf" and result["model"] == result["method"] == "baseline:aac"
    assert result["deterministic"] and result["seeds"] == [0]  # a deterministic method runs once
    assert result["note"] == "deterministic: ran once (seeds=3 asked)"
    assert result["dataset"] == {
        "path": str(proteins),
        "name": "tiny-proteins",
        "recipe": "test",
        "kind": "protein",
        "splits": {"train": 30, "valid": 9, "test_close": 9, "test_remote": 9},
    }
    assert result["task_options"]["min_count"] == 3 and result["counts"]["terms"] == 4
    assert result["task_options"]["test_splits"] == ["test_close", "test_remote"]  # resolved, not only given
    assert result["metrics"]["test_close"]["threshold"] >= 0.0  # in the JSON, not in the table
    assert set(result["metrics"]) == {"test_close", "test_remote"}
    assert result["options"] == {
        "max_train": 0,
        "max_valid": 0,
        "grid": [0.01, 0.1, 1.0, 10.0],
        "probe_iter": 500,
    }
    assert result["fit"][0]["C"] in (0.01, 0.1, 1.0, 10.0) and result["wall_seconds"] > 0

    lines = (out / "go-mf.md").read_text().splitlines()
    assert len(lines) == 3  # header, rule, one row
    assert lines[0].startswith(
        "| model | mode | seeds | test_close fmax | test_close micro_aupr | test_remote fmax |"
    )
    fmax = result["metrics"]["test_close"]["fmax"]
    assert lines[2].startswith(f"| baseline:aac | - | 1 | {fmax:.3f} |")

    other = tmp_path / "kmer"
    assert (
        main(
            [
                "evaluate",
                "baseline:kmer",
                "--data",
                str(proteins),
                "--task",
                "go-mf",
                "min_count=3",
                "-o",
                str(other),
            ]
        )
        == 0
    )
    table = results_table([out / "go-mf.json", other / "go-mf.json", out / "go-mf-class.json"])
    sections = table.split("## ")
    assert sections[1].startswith("go-mf\n") and sections[2].startswith("go-mf-class\n")
    rows = [line for line in sections[1].splitlines() if line.startswith("| baseline:")]
    assert [row.split(" | ")[0] for row in rows] == ["| baseline:aac", "| baseline:kmer"]
    # the two .md files concatenate into the same table: same header
    assert (other / "go-mf.md").read_text().splitlines()[0] == lines[0]


def test_finetune_over_seeds_reports_mean_and_std(proteins, tmp_path) -> None:
    model = tmp_path / "model"
    tokenizer = build_protein_tokenizer()
    save_model_dir(build_encoder("tiny", tokenizer), tokenizer, model)
    out = tmp_path / "out"
    options = ["max_steps=2", "eval_steps=1", "batch_size=8", "precision=fp32"]
    args = ["evaluate", str(model), *options, "--task", "go-mf-class", "--data", str(proteins)]
    assert main([*args, "--mode", "finetune", "--seeds", "2", "-o", str(out)]) == 0
    result = json.loads((out / "go-mf-class.json").read_text())
    assert result["mode"] == "finetune" and result["seeds"] == [0, 1] and not result["deterministic"]
    assert result["options"]["max_steps"] == 2 and "grid" not in result["options"]
    row = (out / "go-mf-class.md").read_text().splitlines()[2]
    assert row.startswith(f"| {model} | finetune | 2 | ") and row.count("±") == 4  # 2 splits x 2 metrics


def test_minilm_on_synonym_search(texts, tmp_path) -> None:
    out = tmp_path / "out"
    assert (
        main(["evaluate", "minilm", "--task", "go-synonym-search", "--data", str(texts), "-o", str(out)]) == 0
    )
    result = json.loads((out / "go-synonym-search.json").read_text())
    assert result["kind"] == "text" and result["pooling"] == "mean" and result["counts"]["queries"] == 6
    # 'the test3 binds' against 36 names such as 'binds process test3': a sentence encoder finds most
    assert result["metrics"]["test"]["recall@10"] >= 0.5


def test_text_encoder_on_go_similarity_and_knn(go_text, text_model, tmp_path) -> None:  # noqa: F811
    out = tmp_path / "out"
    args = ["evaluate", str(text_model), "--task", "go-similarity", "go-category", "classifier=knn"]
    args += ["neighbours=3", "max_length=64"]  # the tiny BERT has 128 positions; some definitions are longer
    assert main([*args, "--data", str(go_text.path), "-o", str(out)]) == 0
    similarity = json.loads((out / "go-similarity.json").read_text())
    assert similarity["kind"] == "text" and similarity["task_options"]["pairs"] == 2000
    assert similarity["counts"]["pairs"] == 71 and similarity["counts"]["related_pairs"] == 12
    assert -1.0 <= similarity["metrics"]["test"]["spearman"] <= 1.0
    lines = (out / "go-similarity.md").read_text().splitlines()
    assert lines[0] == "| model | mode | seeds | test spearman | test pearson |"
    knn = json.loads((out / "go-category.json").read_text())
    assert set(knn["metrics"]["test"]) == {"knn_accuracy", "knn_macro_f1"}
    assert knn["task_options"]["classifier"] == "knn" and knn["counts"]["neighbours"] == 3


@pytest.mark.slow
def test_minilm_on_go_similarity(go_text, tmp_path) -> None:  # noqa: F811
    out = tmp_path / "out"
    args = ["evaluate", "minilm", "--task", "go-similarity", "split=train", "pairs=300"]
    assert main([*args, "--data", str(go_text.path), "-o", str(out)]) == 0
    result = json.loads((out / "go-similarity.json").read_text())
    # definitions of related GO terms read alike: a sentence encoder's cosine follows Lin
    assert result["counts"]["pairs"] == 300 and result["metrics"]["train"]["spearman"] > 0.3


def test_errors_are_one_line_with_exit_code_2(proteins, texts, capsys) -> None:
    assert main(["evaluate", "baseline:aac", "--task", "go-xx", "--data", str(proteins)]) == 2
    err = capsys.readouterr().err
    assert "unknown task(s) ['go-xx']; expected some of [" in err and "'go-mf'" in err and "knn" in err
    assert main(["evaluate", "baseline:bm25", "--task", "go-category", "--data", str(texts)]) == 2
    assert "task 'go-category' with baseline:bm25: baseline:bm25 ranks documents" in capsys.readouterr().err
    assert main(["evaluate", "baseline:aac", "colour=red", "--task", "go-mf", "--data", str(proteins)]) == 2
    assert "unknown option 'colour'" in capsys.readouterr().err
    assert main(["evaluate", "baseline:aac", "--task", "knn", "go-mf", "--data", str(proteins)]) == 2
    assert "dataset.json names no label column; give columns=" in capsys.readouterr().err
    assert main(["evaluate", "baseline:aac", "--task", "go-mf", "--data", str(texts)]) == 2
    assert "task 'go-mf' reads a protein dataset" in capsys.readouterr().err
    # --batch-size reaches the method, which says that a baseline has no use for it
    assert (
        main(["evaluate", "baseline:aac", "--task", "go-mf", "--data", str(proteins), "--batch-size", "8"])
        == 2
    )
    assert "baseline:aac (probe) does not read option(s) ['batch_size']" in capsys.readouterr().err
    assert main(["evaluate", "baseline:aac", "--task", "go-mf", "--data", str(proteins), "--k", "5"]) == 2
    assert "apply to the knn and link tasks only" in capsys.readouterr().err


def test_knn_and_link_on_a_synth_dataset(tmp_path, capsys) -> None:
    data = tmp_path / "synth"
    synth = [
        "synth",
        "cliques",
        "topics=3",
        "clique_size=8",
        "min_length=20",
        "max_length=30",
        "-o",
        str(data),
    ]
    assert main(synth) == 0
    records = read_fasta(data / "sequences.fasta")
    npz = tmp_path / "kmer.npz"
    save_embeddings(npz, [r.id for r in records], kmer_composition([r.sequence for r in records], k=2))
    out = tmp_path / "eval"
    assert main(["evaluate", str(npz), "--data", str(data), "--task", "knn", "link", "-o", str(out)]) == 0
    assert f"knn [{npz}] topic: accuracy" in capsys.readouterr().out
    knn, link = (json.loads((out / f"{task}.json").read_text()) for task in ("knn", "link"))
    assert knn["counts"]["topic"]["n"] == 24 and "mrr" in link["metrics"]["heldout"]
    # baseline:kmer is the same bigram composition: the same figures without a .npz
    again = tmp_path / "again"
    assert main(["evaluate", "baseline:kmer", "--data", str(data), "--task", "knn", "-o", str(again)]) == 0
    assert json.loads((again / "knn.json").read_text())["metrics"] == knn["metrics"]


def test_pooling_defaults_to_the_models_own(proteins, tmp_path) -> None:
    from seqstruct.models.sentence import sentence_model

    plain = tmp_path / "plain"
    tokenizer = build_protein_tokenizer()
    save_model_dir(build_encoder("tiny", tokenizer), tokenizer, plain)
    saved = tmp_path / "st"
    sentence_model(plain, pooling="layer-attention-1q", seed=0).save(str(saved))
    base = ["--task", "go-mf-class", "--data", str(proteins)]
    for model, extra, expected in [
        (saved, [], "layer-attention-1q"),  # the saved (trained) pooling, no --pooling needed
        (saved, ["--pooling", "max"], "max"),
        (plain, [], "mean"),  # a plain HF directory: mean over residues
    ]:
        out = tmp_path / f"{model.name}-{expected}"
        assert main(["evaluate", str(model), *base, *extra, "-o", str(out)]) == 0
        assert json.loads((out / "go-mf-class.json").read_text())["pooling"] == expected

    data = tmp_path / "synth"
    synth = [
        "synth",
        "cliques",
        "topics=3",
        "clique_size=4",
        "min_length=20",
        "max_length=30",
        "-o",
        str(data),
    ]
    assert main(synth) == 0
    out = tmp_path / "knn"
    assert main(["evaluate", str(saved), "--data", str(data), "--task", "knn", "-o", str(out)]) == 0
    assert json.loads((out / "knn.json").read_text())["pooling"] == "layer-attention-1q"


def test_a_search_task_does_not_record_the_previous_tasks_fit(texts, tmp_path) -> None:
    out = tmp_path / "out"
    args = ["evaluate", "baseline:tfidf", "--task", "go-category", "go-synonym-search", "--data", str(texts)]
    assert main([*args, "-o", str(out)]) == 0
    assert json.loads((out / "go-category.json").read_text())["fit"][0]["C"] > 0  # the probe's choice
    assert json.loads((out / "go-synonym-search.json").read_text())["fit"] == [{}]  # search fits nothing
