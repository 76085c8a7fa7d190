"""Methods: the probe against sklearn, baselines on data with a known signal, homology transfer with a
mocked search, tiny encoders probed and fine-tuned, and the errors for what does not apply."""

from __future__ import annotations

import sys
import types
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from transformers import AutoTokenizer

from seqstruct.evaluation.methods import (
    Encoder,
    MethodOptions,
    NotApplicable,
    build_method,
    encoder_kind,
)
from seqstruct.evaluation.probe import multi_label_probe, single_label_probe
from seqstruct.evaluation.run import run_task
from seqstruct.evaluation.tasks import Classification, Labelled, get_task
from tests.evaluation.tasks.datasets import protein_dataset, text_dataset

Hit = namedtuple("Hit", "query target identity evalue bits")


@pytest.fixture(scope="module")
def proteins(tmp_path_factory: pytest.TempPathFactory):
    return protein_dataset(tmp_path_factory.mktemp("proteins") / "data")


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory):
    return text_dataset(tmp_path_factory.mktemp("texts") / "data")


# ---------------------------------------------------------------------------------------------------
# The probe
# ---------------------------------------------------------------------------------------------------


def test_one_vs_rest_probe_is_a_logistic_regression_per_term() -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(120, 5))
    y = (raw @ rng.normal(size=(5, 3)) + rng.logistic(size=(120, 3)) > 0).astype(bool)  # [120, 3]
    x = raw * [1, 2, 3, 0.5, 1] + 4  # scaled and shifted: standardising matters
    train, valid, test = slice(0, 80), slice(80, 100), slice(100, 120)
    scores, fit = multi_label_probe((x[train], y[train]), (x[valid], y[valid]), {"test": x[test]}, grid=[0.3])
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    for term in range(3):
        sklearn = LogisticRegression(C=0.3, tol=1e-8, max_iter=10_000).fit(
            (x[train] - mean) / std, y[train, term]
        )
        expected = sklearn.predict_proba((x[test] - mean) / std)[:, 1]
        np.testing.assert_allclose(scores["test"][:, term], expected, atol=2e-3)
    assert fit["C"] == 0.3 and 0.0 <= fit["valid_fmax"] <= 1.0


def _multi_label_problem(seed: int = 2, n: int = 200, terms: int = 6):
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(n, 8))
    logits = raw @ rng.normal(size=(8, terms)) - np.linspace(0.5, 3.0, terms)  # common to rare terms
    y = (logits + rng.logistic(size=(n, terms)) > 0).astype(bool)
    return raw * np.arange(1, 9) + 2, y  # unscaled: the probe standardises


def test_multi_label_probe_picks_the_C_of_sklearn_one_vs_rest_without_warnings(recwarn) -> None:
    from seqstruct.evaluation.metrics import fmax

    x, y = _multi_label_problem()
    train, valid = slice(0, 140), slice(140, 200)
    grid = [0.001, 0.01, 0.1, 1.0, 10.0]
    _, fit = multi_label_probe((x[train], y[train]), (x[valid], y[valid]), {"valid": x[valid]}, grid)
    assert not [w for w in recwarn if issubclass(w.category, Warning)]  # converged: nothing printed
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    expected = {}
    for c in grid:  # sklearn fitted per term and per C from scratch, to a tight tolerance
        scores = np.stack(
            [
                LogisticRegression(C=c, tol=1e-8, max_iter=10_000)
                .fit((x[train] - mean) / std, y[train, t])
                .predict_proba((x[valid] - mean) / std)[:, 1]
                for t in range(y.shape[1])
            ],
            axis=1,
        )
        expected[c] = fmax(y[valid], scores)[0]
        assert fit["valid_by_C"][c] == pytest.approx(expected[c], abs=0.01)
    assert fit["C"] == max(grid, key=lambda c: (expected[c], -c))


def test_multi_label_probe_warns_once_when_it_does_not_converge() -> None:
    from sklearn.exceptions import ConvergenceWarning

    x, y = _multi_label_problem()
    with pytest.warns(ConvergenceWarning) as caught:
        multi_label_probe((x[:140], y[:140]), (x[140:], y[140:]), {}, [0.1, 10.0], max_iter=1)
    assert len(caught) == 1 and "C=0.1" in str(caught[0].message) and "C=10" in str(caught[0].message)


def test_multi_label_probe_scores_single_class_terms_by_frequency() -> None:
    x, y = _multi_label_problem(terms=3)
    y[:, 1] = False  # no positive train row: an infinite bias, not fitted
    scores, _ = multi_label_probe((x[:140], y[:140]), (x[140:], y[140:]), {"test": x[140:]}, [1.0])
    assert np.all(scores["test"][:, 1] == 0.0) and 0.0 < scores["test"][:, 0].mean() < 1.0


def test_single_label_probe_chooses_C_on_valid() -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 4)) * 3
    y = np.arange(90) % 3
    x = centres[y] + rng.normal(size=(90, 4))
    scores, fit = single_label_probe(
        (x[:60], y[:60]), (x[60:75], y[60:75]), {"test": x[75:]}, 3, [0.001, 1.0]
    )
    assert scores["test"].shape == (15, 3)
    np.testing.assert_allclose(scores["test"].sum(axis=1), 1.0)
    best = max(fit["valid_by_C"].values())
    assert fit["C"] == min(c for c, v in fit["valid_by_C"].items() if v == best)
    assert (scores["test"].argmax(axis=1) == y[75:]).mean() > 0.8  # well-separated centres


def test_single_label_probe_reaches_the_optimum_of_a_cold_tight_fit() -> None:
    """The warm-started newton-cg grid ends where a cold lbfgs fit at the chosen C with a tight tol does."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(2)
    centres = rng.normal(size=(5, 12))
    y = np.arange(300) % 5
    x = centres[y] + rng.normal(size=(300, 12)) * 1.5  # overlapping classes: a finite optimum
    scores, fit = single_label_probe(
        (x[:200], y[:200]), (x[200:250], y[200:250]), {"t": x[250:]}, 5, [0.1, 10.0]
    )
    mean, std = x[:200].mean(axis=0), x[:200].std(axis=0)
    cold = LogisticRegression(C=fit["C"], tol=1e-10, max_iter=10_000).fit((x[:200] - mean) / std, y[:200])
    np.testing.assert_allclose(scores["t"], cold.predict_proba((x[250:] - mean) / std), atol=1e-3)


# ---------------------------------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------------------------------


def test_composition_baselines_find_the_biased_residue(proteins) -> None:
    result = get_task("go-mf-class").run(proteins, build_method("baseline:aac"), 0)
    assert result.metrics["test_close"]["accuracy"] > 0.8 and result.metrics["test_remote"]["accuracy"] > 0.8
    result = get_task("go-mf").run(proteins, build_method("baseline:kmer"), 0, min_count=3)
    assert result.metrics["test_close"]["fmax"] > 0.8
    assert build_method("baseline:kmer3").features(["ACDA"], "protein").shape == (1, 8000)


def test_text_baselines(texts) -> None:
    tfidf = build_method("baseline:tfidf")
    assert get_task("go-category").run(texts, tfidf, 0).metrics["test"]["accuracy"] == 1.0
    # a synonym 'the test3 binds' shares the unique word 'test3' with its term's name only
    for name in ("baseline:bm25", "baseline:tfidf"):
        result = get_task("go-synonym-search").run(texts, build_method(name), 0)
        assert result.metrics["test"]["mrr@10"] == 1.0, name


def test_what_does_not_apply_is_a_clear_error(proteins, texts, tmp_path) -> None:
    with pytest.raises(NotApplicable, match="baseline:aac reads protein data, not text"):
        get_task("go-category").run(texts, build_method("baseline:aac"), 0)
    with pytest.raises(NotApplicable, match="baseline:tfidf reads text data, not protein"):
        get_task("go-mf-class").run(proteins, build_method("baseline:tfidf"), 0)
    with pytest.raises(NotApplicable, match="does not classify"):
        get_task("go-category").run(texts, build_method("baseline:bm25"), 0)
    with pytest.raises(NotApplicable, match="protein classification tasks only"):
        build_method("baseline:mmseqs").search(["A"], ["A"], 1, "protein")
    with pytest.raises(ValueError, match="has no finetune mode"):
        build_method("baseline:kmer", mode="finetune")
    with pytest.raises(ValueError, match=r"does not read option\(s\) \['lr'\]"):
        build_method("baseline:kmer", overrides=["lr=0.1"])
    with pytest.raises(ValueError, match="unknown baseline 'baseline:blast'"):
        build_method("baseline:blast")
    from seqstruct.models.embed import save_embeddings

    save_embeddings(tmp_path / "x.npz", ["a"], np.ones((1, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="holds embeddings: it has no finetune mode"):
        build_method(str(tmp_path / "x.npz"), mode="finetune")
    with pytest.raises(NotApplicable, match="cannot embed a query"):
        build_method(str(tmp_path / "x.npz")).search(["A"], ["A"], 1, "protein")
    with pytest.raises(NotApplicable, match="these texts are not records"):
        build_method(str(tmp_path / "x.npz")).embed(["A"], "protein")  # no ids: not records
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        build_method(str(tmp_path))


def _problem(multilabel: bool) -> Classification:
    """Train t0, t1, t2: terms {a, c}, {b, c}, {} or classes b, a, b; tests q0, q1."""
    targets = np.array([[1, 0, 1], [0, 1, 1], [0, 0, 0]], dtype=bool) if multilabel else np.array([1, 0, 1])
    train = Labelled(["t0", "t1", "t2"], ["MKA", "MKB", "MKC"], targets)
    test = Labelled(["q0", "q1"], ["MKA", "WWW"], targets[:2])
    return Classification("protein", multilabel, ["a", "b", "c"], train, test, {"test": test})


def test_homology_transfer_with_a_mocked_search(monkeypatch) -> None:
    calls = []

    def search(query_ids, query_seqs, target_ids, target_seqs, max_hits=10):
        calls.append((list(query_ids), list(target_ids), max_hits))
        return [Hit("q0", "t0", 0.9, 1e-20, 100.0), Hit("q0", "t1", 0.5, 1e-30, 200.0)]

    monkeypatch.setitem(sys.modules, "seqstruct.data.homology", types.SimpleNamespace(search=search))
    method = build_method("baseline:mmseqs", overrides=["max_hits=5"])
    scores = method.classify(_problem(multilabel=True), 0)["test"]
    # q0: term a from t0 (0.9), term b from t1 (0.5), term c from both (max 0.9); q1: no hit, nothing
    np.testing.assert_allclose(scores, [[0.9, 0.5, 0.9], [0.0, 0.0, 0.0]])
    assert calls[0] == (["q0", "q1"], ["t0", "t1", "t2"], 5)
    assert method.last_fit == {"queries_without_hits": {"test": 1}}
    single = method.classify(_problem(multilabel=False), 0)["test"]
    # q0: the hit with the most bits (t1, class a), not the most identical (t0); q1: the train majority, b
    np.testing.assert_array_equal(single, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])

    def percent(*args, **kwargs):
        return [Hit("q0", "t0", 90.0, 1e-20, 100.0)]

    monkeypatch.setitem(sys.modules, "seqstruct.data.homology", types.SimpleNamespace(search=percent))
    with pytest.raises(ValueError, match=r"identity must be a fraction in \[0, 1\]"):
        method.classify(_problem(multilabel=True), 0)


def test_homology_transfer_searches_only_the_capped_train_sample(monkeypatch) -> None:
    targets: list[list[str]] = []

    def search(query_ids, query_seqs, target_ids, target_seqs, max_hits=10):
        targets.append(list(target_ids))
        return []

    monkeypatch.setitem(sys.modules, "seqstruct.data.homology", types.SimpleNamespace(search=search))
    build_method("baseline:mmseqs", overrides=["max_train=2"]).classify(_problem(multilabel=True), 0)
    # the same fixed sample the probes get with max_train=2: an equal label budget
    assert len(targets[0]) == 2 and set(targets[0]) < {"t0", "t1", "t2"}


def test_naive_baseline_predicts_train_frequencies() -> None:
    method = build_method("baseline:naive")
    scores = method.classify(_problem(multilabel=True), 0)["test"]
    np.testing.assert_allclose(scores, [[1 / 3, 1 / 3, 2 / 3]] * 2)  # a in 1 of 3, b 1, c 2
    single = method.classify(_problem(multilabel=False), 0)["test"]
    np.testing.assert_allclose(single, [[1 / 3, 2 / 3, 0.0]] * 2)  # classes b, a, b
    with pytest.raises(NotApplicable, match="no embedding"):
        method.embed(["MKA"], "protein")


# ---------------------------------------------------------------------------------------------------
# Encoders
# ---------------------------------------------------------------------------------------------------


def test_encoder_kind_from_the_tokenizer(protein_model, text_model) -> None:
    assert encoder_kind(protein_model) == "protein"
    assert encoder_kind(text_model) == "text"


def test_protein_encoder_probe_and_link(protein_model, proteins, texts) -> None:
    method = build_method(str(protein_model), pooling="mean", overrides=["batch_size=16"])
    assert not method.stochastic and method.describe()["pooling"] == "mean"
    result = get_task("go-mf-class").run(proteins, method, 0)
    assert 0.0 <= result.metrics["test_close"]["accuracy"] <= 1.0
    assert method.last_fit["C"] in MethodOptions().grid
    first = method.embed(["MKTAYIAK", "MKW"], "protein")
    assert first.shape == (2, 32)
    # Each text is embedded once: a later subset, in another order, comes from the cache, not the encoder.
    encoder, method._model = method._model, None  # would be reloaded (and recorded) on a cache miss
    again = method.embed(["MKW", "MKTAYIAK"], "protein")
    assert method._model is None and np.array_equal(again, first[::-1])
    method._model = encoder
    link = get_task("protein-link").run(proteins, method, 0)
    assert 0.0 < link.metrics["heldout"]["mrr"] <= 1.0
    with pytest.raises(NotApplicable, match="reads protein data, not text"):
        get_task("go-category").run(texts, method, 0)


def test_encoder_embeds_each_protein_once_across_tasks(protein_model, proteins, monkeypatch) -> None:
    import seqstruct.models.embed as embed

    embedded: list[str] = []
    real = embed.encode

    def counting(model, tokenizer, texts, *args, **kwargs):
        embedded.extend(texts)
        return real(model, tokenizer, texts, *args, **kwargs)

    monkeypatch.setattr(embed, "encode", counting)
    method = build_method(str(protein_model), pooling="mean", overrides=["batch_size=16"])
    for task in ("go-mf", "go-mf-class", "protein-link"):  # one prepared dataset, overlapping proteins
        get_task(task).run(proteins, method, 0)
    assert embedded and len(embedded) == len(set(embedded))  # the memo: never the same protein twice
    seen = len(embedded)
    get_task("go-mf").run(proteins, method, 0)
    assert len(embedded) == seen  # a second pass is all hits
    # The memo belongs to one (model, pooling, max_length, precision): another setting embeds anew.
    for overrides, pooling in ((["batch_size=16"], "cls"), (["max_length=8"], "mean")):
        get_task("go-mf").run(
            proteins, build_method(str(protein_model), pooling=pooling, overrides=overrides), 0
        )
        assert len(embedded) > seen
        seen = len(embedded)


def test_text_encoder_probe_and_search(text_model, texts) -> None:
    method = build_method(str(text_model), pooling="cls")
    assert (
        method.kind == "text" and method._max_length(AutoTokenizer.from_pretrained(text_model), False) == 512
    )
    result = get_task("go-category").run(texts, method, 0)
    assert 0.0 <= result.metrics["test"]["macro_f1"] <= 1.0
    search = get_task("go-synonym-search").run(texts, method, 0)
    assert 0.0 <= search.metrics["test"]["mrr@10"] <= 1.0
    finetuned = Encoder(text_model, "finetune", "mean")
    with pytest.raises(NotApplicable, match="retrieval has no finetune mode; use --mode probe"):
        get_task("go-synonym-search").run(texts, finetuned, 0)


def test_finetune_protein_encoder_over_seeds(protein_model, proteins) -> None:
    options = ["max_steps=4", "eval_steps=2", "batch_size=8", "lr=1e-3", "precision=fp32"]
    method = build_method(str(protein_model), mode="finetune", overrides=options)
    assert method.stochastic
    result = run_task(method, "go-mf-class", proteins.path, seeds=2)
    assert result["seeds"] == [0, 1] and not result["deterministic"] and len(result["per_seed"]) == 2
    values = [run["test_close"]["accuracy"] for run in result["per_seed"]]
    assert result["metrics"]["test_close"]["accuracy"] == pytest.approx(np.mean(values))
    assert result["std"]["test_close"]["accuracy"] == pytest.approx(np.std(values, ddof=1))
    assert result["fit"][0]["steps"] <= 4 and result["fit"][0]["best_step"] in (2, 4)
    multi = run_task(method, "go-mf", proteins.path, seeds=1, min_count=3)
    assert 0.0 <= multi["metrics"]["test_remote"]["fmax"] <= 1.0


def test_max_valid_caps_valid_with_a_fixed_sample(texts) -> None:
    from seqstruct.evaluation.methods import capped

    rows = Labelled([f"r{i}" for i in range(10)], [f"text {i}" for i in range(10)], np.arange(10) % 2)
    problem = Classification("text", False, ["a", "b"], rows, rows, {"test": rows})
    cut = capped(problem, 0, 4)
    assert len(cut.valid) == 4 and cut.train is rows and cut.tests == problem.tests
    assert cut.valid.ids == capped(problem, 0, 4).valid.ids  # the same sample every time
    assert capped(problem, 6, 0).valid is rows and len(capped(problem, 6, 0).train) == 6


def test_finetune_in_a_work_dir_resumes_from_its_checkpoints(
    text_model, texts, tmp_path, monkeypatch, caplog
) -> None:
    """A fit interrupted after a checkpoint resumes from it and scores as an uninterrupted fit does."""
    from transformers import EarlyStoppingCallback

    options = ["max_steps=4", "eval_steps=2", "batch_size=8", "lr=1e-3", "precision=fp32"]
    task = get_task("wordnet-supersense")
    scores = {}

    def fitted(work_dir: Path) -> Encoder:
        method = build_method(str(text_model), mode="finetune", overrides=options)
        method.work_dir = work_dir
        classify = method.classify
        method.classify = lambda problem, seed: scores.setdefault(work_dir.name, classify(problem, seed))
        return method

    whole = fitted(tmp_path / "whole")
    task.run(texts, whole, 0)
    assert whole.last_fit["resumed_from"] is None and whole.last_fit["steps"] == 4
    assert not (tmp_path / "whole" / "checkpoints").exists()  # removed once the scores exist

    def stop(self, args, state, control, **kwargs):
        if state.global_step == 2:
            raise KeyboardInterrupt("stopped after the step-2 checkpoint")

    monkeypatch.setattr(EarlyStoppingCallback, "on_save", stop, raising=False)
    cut = fitted(tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        task.run(texts, cut, 0)
    monkeypatch.undo()
    assert (tmp_path / "cut" / "checkpoints" / "checkpoint-2").is_dir()
    # A later checkpoint the process was killed while writing (no trainer_state.json): set aside, not used.
    (tmp_path / "cut" / "checkpoints" / "checkpoint-3").mkdir()
    (tmp_path / "cut" / "checkpoints" / "checkpoint-3" / "model.safetensors").write_bytes(b"half")
    with caplog.at_level("WARNING", logger="seqstruct"):
        task.run(texts, cut, 0)
    assert "checkpoint-3 was not finished (no complete trainer_state.json): set aside" in caplog.text
    assert cut.last_fit["resumed_from"] == "checkpoint-2" and cut.last_fit["steps"] == 4
    np.testing.assert_allclose(scores["cut"]["test"], scores["whole"]["test"], atol=1e-5)


def test_lstm_method_trains_from_scratch_with_the_encoders_tokenizer(text_model, texts) -> None:
    with pytest.raises(ValueError, match="use --mode finetune"):
        build_method(f"lstm:{text_model}", mode="probe")
    with pytest.raises(FileNotFoundError, match="lstm:DIR takes its tokenizer"):
        build_method("lstm:/nonexistent", mode="finetune")
    options = ["epochs=1", "min_steps=6", "patience=100", "batch_size=8", "lr=3e-3", "precision=fp32"]
    options += ["lstm_hidden=16", "lstm_embedding=8"]
    method = build_method(f"lstm:{text_model}", mode="finetune", overrides=options)
    assert method.stochastic and method.kinds == ("text",)
    result = run_task(method, "wordnet-supersense", texts.path, seeds=2)
    assert result["mode"] == "finetune" and len(result["per_seed"]) == 2
    assert 0.0 <= result["metrics"]["test"]["accuracy"] <= 1.0
    assert all(fit["steps"] >= 6 for fit in result["fit"])  # min_steps: more than the one epoch asked
    model = method.build(3, "single_label_classification")
    assert model.get_input_embeddings().weight.shape[1] == 8
    with pytest.raises(NotApplicable, match="no embedding"):
        method.embed(["a text"], "text")


def test_lstm_embeddings_from_the_encoder(text_model) -> None:
    from safetensors.torch import load_file

    method = build_method(f"lstm:{text_model}", mode="finetune", overrides=["lstm_init=encoder"])
    model = method.build(3, "single_label_classification")
    encoder = load_file(str(text_model / "model.safetensors"))
    words = next(v for k, v in encoder.items() if k.endswith("word_embeddings.weight"))
    assert torch.equal(model.get_input_embeddings().weight.detach(), words)  # width 32, the encoder's
    with pytest.raises(ValueError, match="lstm_init must be one of"):
        build_method(f"lstm:{text_model}", mode="finetune", overrides=["lstm_init=glove"])


def test_what_an_encoder_encodes_is_read_from_its_config(tmp_path) -> None:
    import json

    from transformers import AutoTokenizer

    from seqstruct.data.tokenizers import build_protein_tokenizer
    from seqstruct.evaluation.methods.encoders import encoder_kind
    from seqstruct.models.encoders import build_encoder
    from seqstruct.models.io import resolve_model_path, save_model_dir

    tokenizer = build_protein_tokenizer()
    save_model_dir(build_encoder("tiny", tokenizer), tokenizer, tmp_path / "protein")
    assert json.loads((tmp_path / "protein" / "config.json").read_text())["sequence_kind"] == "protein"
    assert encoder_kind(tmp_path / "protein") == "protein"
    config = tmp_path / "protein" / "config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {"sequence_kind": "text"}))
    assert encoder_kind(tmp_path / "protein") == "text"  # said, not guessed from the tokenizer
    config.write_text(json.dumps(json.loads(config.read_text()) | {"sequence_kind": "dna"}))
    with pytest.raises(ValueError, match="sequence_kind must be one of"):
        encoder_kind(tmp_path / "protein")
    minilm = resolve_model_path("minilm")  # saved elsewhere, without the key: its tokenizer decides
    assert "sequence_kind" not in json.loads((minilm / "config.json").read_text())
    assert encoder_kind(minilm) == "text" and len(AutoTokenizer.from_pretrained(minilm)) > 64
