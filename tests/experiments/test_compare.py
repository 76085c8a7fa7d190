"""`seqstruct compare`: arms x seeds on a synthetic dataset, cached cells, mean ± std tables."""

from __future__ import annotations

import csv
import json

import pytest

import seqstruct.experiments.compare as compare_module
from seqstruct.cli import main
from seqstruct.config import PACKAGED_CONFIGS, load_config
from seqstruct.experiments.compare import CompareConfig, compare, summarise

TINY_PRETRAIN = [
    "model.preset=tiny",
    "data.max_length=48",
    "data.eval_fraction=0.1",
    "train.max_steps=4",
    "train.batch_size=8",
    "train.warmup_steps=1",
    "train.logging_steps=2",
    "train.eval_steps=4",
    "train.save_steps=2",
    "train.precision=fp32",
]


def _config(tmp_path, **extra: object) -> CompareConfig:
    values = {
        "output_dir": str(tmp_path / "cmp"),
        "synth": "cliques",
        "synth_overrides": ["topics=3", "clique_size=8", "min_length=20", "max_length=30"],
        "pretrain_overrides": TINY_PRETRAIN,
        "arms": {"mlm": ["structure.weight=0.0"], "structure": ["structure.weight=0.5"]},
        "seeds": [0, 1],
        "models": {"kmer": "baseline:kmer"},  # the composition baseline, evaluated per seed's dataset
    }
    values.update(extra)
    return load_config(CompareConfig, None, [f"{k}={json.dumps(v)}" for k, v in values.items()])


def test_grid_writes_tables_and_skips_finished_cells(tmp_path, monkeypatch) -> None:
    config = _config(tmp_path)
    result = compare(config)
    root = tmp_path / "cmp"
    assert result["arms"] == ["mlm", "structure", "kmer"]
    for seed in (0, 1):
        assert (root / f"data-seed{seed}" / "dataset.json").exists()
        assert (root / f"seed{seed}" / "kmer" / "eval" / "knn.json").exists()  # synthetic data: per seed
        for arm in ("mlm", "structure"):
            assert (root / f"seed{seed}" / arm / "model.safetensors").exists()
    # the two seeds got different datasets (data seed = training seed)
    assert (root / "data-seed0" / "sequences.fasta").read_text() != (
        root / "data-seed1" / "sequences.fasta"
    ).read_text()
    with open(root / "results.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    figures = {row["figure"] for row in rows}
    assert {"knn accuracy (topic)", "knn AUROC (topic)", "link MRR", "link nDCG@10"} <= figures
    assert len([r for r in rows if r["figure"] == "knn accuracy (topic)"]) == 2 * 3  # seeds x arms
    table = (root / "results.md").read_text()
    assert "| knn accuracy (topic) |" in table and "structure − mlm" in table and " ± " in table
    summary = json.loads((root / "results.json").read_text())["summary"]
    assert summary["knn accuracy (topic)"]["mlm"]["n"] == 2

    # A second run finds every cell finished: nothing is trained again.
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(compare_module, "pretrain", refuse)
    again = compare(config)
    assert again["summary"] == result["summary"]
    evaluated = json.loads((root / "seed0" / "mlm" / "evaluation.json").read_text())["settings"]
    assert evaluated["trained_from"] == "" and evaluated["weights"] is None  # a fresh encoder

    # A finished cell made otherwise is refused, not mixed in: other evaluation options, other training.
    with pytest.raises(ValueError, match=r"evaluation.json was made with other settings \(eval_options"):
        compare(_config(tmp_path, eval_options=["k=3"]))
    with pytest.raises(
        FileExistsError, match=r"holds a run with other settings \(structure.weight: 0.0 -> 0.2"
    ):
        compare(
            _config(tmp_path, arms={"mlm": ["structure.weight=0.2"], "structure": ["structure.weight=0.5"]})
        )

    # A finished cell asked for another step budget (which a mere resume may change) is refused too.
    longer = [*TINY_PRETRAIN, "train.max_steps=6"]
    with pytest.raises(FileExistsError, match=r"holds a run with other settings \(train.max_steps: 4 -> 6\)"):
        compare(_config(tmp_path, pretrain_overrides=longer))

    # An arm whose structure loss never left chance at a seed is named above the table (issue 21).
    for seed, left in ((0, True), (1, False)):
        path = root / f"seed{seed}" / "structure" / "metrics.json"
        metrics = json.loads(path.read_text())
        assert metrics["structure"]["loss"] == "info_nce"  # the pretraining wrote its structure block
        metrics["structure"]["left_chance"] = left
        path.write_text(json.dumps(metrics))
    marked = compare(config)
    assert marked["structure_at_chance"] == {"structure": [1]}
    assert "never left its chance value in structure at seeds [1]" in (root / "results.md").read_text()


def test_interrupted_cell_resumes_from_its_checkpoint(tmp_path, monkeypatch) -> None:
    config = _config(tmp_path, seeds=[0], arms={"structure": ["structure.weight=0.5"]}, models={})
    compare(config)
    cell = tmp_path / "cmp" / "seed0" / "structure"
    for name in ("evaluation.json", "metrics.json"):
        (cell / name).unlink()
    calls = []
    original = compare_module.pretrain

    def spy(settings, resume: bool = False, overwrite: bool = False):
        calls.append(resume)
        return original(settings, resume=resume, overwrite=overwrite)

    monkeypatch.setattr(compare_module, "pretrain", spy)
    compare(config)
    assert calls == [True]
    assert (cell / "evaluation.json").exists()


def test_a_costly_arm_runs_at_its_own_seeds_only(tmp_path) -> None:
    config = _config(tmp_path, arm_seeds={"structure": [1]}, models={}, tasks=["knn"])
    result = compare(config)
    root = tmp_path / "cmp"
    assert sorted(p.relative_to(root).as_posix() for p in root.glob("seed*/*")) == [
        "seed0/mlm",
        "seed1/mlm",
        "seed1/structure",
    ]
    counts = result["summary"]["knn accuracy (topic)"]
    assert (counts["mlm"]["n"], counts["structure"]["n"], counts["structure - mlm"]["n"]) == (2, 1, 1)
    assert "(structure at seeds [1])" in (root / "results.md").read_text()


def test_a_model_cell_is_refused_once_the_model_is_re_saved(tmp_path, text_model) -> None:
    """A model evaluated as it is (a packaged encoder, say) records its weights: re-saved under the same
    name, its old figures are not reused."""
    import shutil

    from safetensors.torch import load_file, save_file

    encoder = tmp_path / "encoder"
    shutil.copytree(text_model, encoder)
    config = _config(tmp_path, seeds=[0], models={"encoder": str(encoder)}, tasks=["knn"])
    compare(config)
    tensors = load_file(encoder / "model.safetensors")
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1.0
    save_file(tensors, encoder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"made with other settings \(weights: "):
        compare(config)


def test_summary_pairs_differences_by_seed() -> None:
    rows = [
        {"seed": 0, "arm": "a", "figure": "f", "value": 0.1},
        {"seed": 1, "arm": "a", "figure": "f", "value": 0.3},
        {"seed": 0, "arm": "b", "figure": "f", "value": 0.4},
        {"seed": 1, "arm": "b", "figure": "f", "value": 0.5},
    ]
    summary, table = summarise(rows, ["a", "b"])
    assert summary["f"]["a"]["mean"] == pytest.approx(0.2)
    assert summary["f"]["a"]["std"] == pytest.approx(0.1414213, abs=1e-6)
    assert summary["f"]["b - a"]["mean"] == pytest.approx(0.25)  # (0.3 + 0.2) / 2
    assert summary["f"]["b - a"]["std"] == pytest.approx(0.0707107, abs=1e-6)
    assert "| f | 0.200 ± 0.141 | 0.450 ± 0.071 | +0.250 ± 0.071 |" in table


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"synth": ""}, "exactly one of synth"),
        ({"synth": "spirals"}, "unknown synthetic dataset"),
        ({"arms": {}}, "arms"),
        ({"pretrain": "nowhere.yaml"}, "neither a file nor a packaged config"),
        ({"arm_seeds": {"favor": [0]}}, "'favor' is not an arm"),
        ({"arm_seeds": {"structure": [2]}}, "subset of seeds"),
        ({"references": {"structure": "mlm-favor"}}, "neither arms nor models"),
        ({"kmer": 2}, r"now the baseline:kmer model; write `models: \{kmer: baseline:kmer\}`"),
    ],
)
def test_bad_comparisons_are_refused(tmp_path, extra, message) -> None:
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        compare(_config(tmp_path, **extra))


def test_a_comparison_being_run_by_another_process_is_refused(tmp_path) -> None:
    from seqstruct.io import DirectoryBusy, DirectoryLock

    config = _config(tmp_path)
    with DirectoryLock(config.output_dir), pytest.raises(DirectoryBusy, match="cmp is being written by"):
        compare(config)
    assert sorted(p.name for p in (tmp_path / "cmp").iterdir()) == [".seqstruct.lock"]  # nothing written


def test_cli_prints_the_table(tmp_path, capsys) -> None:
    config = _config(tmp_path, seeds=[0], arms={"mlm": ["structure.weight=0.0"]}, tasks=["knn"])
    overrides = [f"{k}={json.dumps(v)}" for k, v in vars(config).items()]
    assert main(["compare", str(PACKAGED_CONFIGS / "compare-manifold.yaml"), *overrides]) == 0
    out = capsys.readouterr().out
    assert "| knn accuracy (topic) |" in out and "results.md" in out


def test_contrastive_arms_are_evaluated_with_their_own_pooling(tmp_path) -> None:
    """trainer: contrastive runs `seqstruct contrastive` per cell; each model is read with the pooling it
    was trained with, and a model evaluated as it is can take another pooling (model_poolings)."""
    from seqstruct.data.tokenizers import build_protein_tokenizer
    from seqstruct.models.encoders import build_encoder
    from seqstruct.models.io import save_model_dir
    from tests.evaluation.tasks.datasets import protein_dataset

    data = protein_dataset(tmp_path / "data")
    tokenizer = build_protein_tokenizer()
    save_model_dir(build_encoder("tiny", tokenizer, dropout=0.1), tokenizer, tmp_path / "model")
    tiny = [
        f"model={tmp_path / 'model'}",
        f"dataset={data.path}",
        "pairs=graph",
        "max_length=48",
        "eval_pairs=0",
        "train.max_steps=2",
        "train.batch_size=8",
        "train.warmup_steps=0",
        "train.logging_steps=1",
        "train.save_steps=2",
        "train.precision=fp32",
    ]
    config = _config(
        tmp_path,
        synth="",
        dataset=str(data.path),
        trainer="contrastive",
        pretrain="contrastive-go-text.yaml",
        pretrain_overrides=tiny,
        arms={"mean": ["pooling=mean"], "layer-attention": ["pooling=layer-attention"]},
        references={"layer-attention": "mean", "mean": "as-is"},
        seeds=[0],
        tasks=["go-mf-class"],
        pooling="",
        models={"as-is": str(tmp_path / "model")},
        model_poolings={"as-is": "max"},
        eval_options=["classifier=knn", "neighbours=3"],
    )
    result = compare(config)
    assert result["arms"] == ["mean", "layer-attention", "as-is"]
    root = tmp_path / "cmp"
    used = {}
    for cell in (root / "seed0" / "mean", root / "seed0" / "layer-attention", root / "models" / "as-is"):
        task = json.loads((cell / "eval" / "go-mf-class.json").read_text(encoding="utf-8"))
        used[cell.name] = task["pooling"]
    assert used == {"mean": "mean", "layer-attention": "layer-attention", "as-is": "max"}
    assert json.loads((root / "seed0" / "mean" / "metrics.json").read_text(encoding="utf-8"))["steps"] == 2
    assert "| go-mf-class test_close knn_accuracy |" in result["table"]
    header = result["table"].splitlines()[0]
    assert header.endswith("| as-is | layer-attention − mean | mean − as-is |")


@pytest.mark.parametrize("path", sorted(PACKAGED_CONFIGS.glob("compare-*.yaml")), ids=lambda p: p.name)
def test_packaged_comparisons_are_consistent(path) -> None:
    """Every packaged comparison loads and passes the checks a run starts with (arms, seeds, references)."""
    config = load_config(CompareConfig, path)
    compare_module.check_compare(config)
    assert config.output_dir.startswith("runs/compare/")
