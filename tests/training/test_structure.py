"""Structure-inducing pretraining through `pretrain`: λ = 0 is plain MLM, the margin loss separates graph
components, runs resume, every loss trains, bad settings are refused."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.torch import load_file

from seqstruct.config import PretrainConfig, load_config
from seqstruct.data.fasta import FastaRecord, read_fasta, write_fasta
from seqstruct.models.embed import encode, load_encoder
from seqstruct.training.mlm import pretrain
from tests.helpers import tiny_overrides

HALF_A, HALF_B = "ACDEFGHIKL", "MNPQRSTVWY"


@pytest.fixture(scope="module")
def two_components(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_two_components(tmp_path_factory.mktemp("two"))


def write_two_components(root: Path) -> tuple[Path, Path]:
    """40 sequences in two cliques of 20 (seq.fasta, graph.tsv in `root`). Every other residue comes from
    the component's half of the alphabet, so the components can be told apart from the sequence, but only
    by counting."""
    rng = np.random.default_rng(0)
    records, edges = [], []
    for c, own in enumerate((HALF_A, HALF_B)):
        for i in range(20):
            mixed = rng.choice(list(HALF_A + HALF_B), size=40)
            mine = rng.choice(list(own), size=40)
            records.append(
                FastaRecord(f"c{c}_{i:02d}", "", "".join(x + y for x, y in zip(mixed, mine, strict=False)))
            )
        edges += [f"c{c}_{i:02d}\tc{c}_{j:02d}" for i in range(20) for j in range(i + 1, 20)]
    write_fasta(records, root / "seq.fasta")
    (root / "graph.tsv").write_text("\n".join(edges) + "\n")
    return root / "seq.fasta", root / "graph.tsv"


def _overrides(fasta: Path, out: Path, graph: Path | None, **extra: object) -> list[str]:
    values: dict[str, object] = {"data.max_length": 48}
    if graph is not None:
        values["structure.graph"] = graph
    values.update(extra)
    return tiny_overrides(fasta, out, **values)


def _run(fasta: Path, out: Path, graph: Path | None, resume: bool = False, **extra: object) -> dict:
    return pretrain(load_config(PretrainConfig, None, _overrides(fasta, out, graph, **extra)), resume=resume)


def _weights_equal(a: Path, b: Path, tolerance: float = 0.0) -> bool:
    first, second = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert first.keys() == second.keys()
    return all(float((first[k] - second[k]).abs().max()) <= tolerance for k in first)


def test_weight_zero_is_plain_mlm_exactly(two_components, tmp_path) -> None:
    fasta, graph = two_components
    plain = _run(fasta, tmp_path / "plain", None)
    zero = _run(fasta, tmp_path / "zero", graph, **{"structure.weight": 0.0})
    assert _weights_equal(tmp_path / "plain", tmp_path / "zero")
    assert zero["train_loss"] == plain["train_loss"]
    assert zero["structure"]["graph_edges"] == 2 * 190  # the graph was read and checked all the same
    _run(fasta, tmp_path / "half", graph, **{"structure.weight": 0.5})
    assert not _weights_equal(tmp_path / "plain", tmp_path / "half", tolerance=1e-4)  # the test can fail


def test_edge_weights_steer_the_run_and_only_their_ratios_matter(two_components, tmp_path) -> None:
    """Weights 1000 on every edge train the same model as no weights (they are relative per anchor);
    unequal weights draw other positives, and so train another model."""
    fasta, graph = two_components
    lines = graph.read_text().splitlines()
    flat, skewed = tmp_path / "flat.tsv", tmp_path / "skewed.tsv"
    flat.write_text("".join(f"{line}\t1000\n" for line in lines))
    skewed.write_text("".join(f"{line}\t{1 + 50 * (i % 3 == 0)}\n" for i, line in enumerate(lines)))
    settings = {"structure.weight": 0.5, "structure.negatives": 1}
    for name, edges in (("plain", graph), ("flat", flat), ("skewed", skewed)):
        _run(fasta, tmp_path / name, edges, **settings)
    assert _weights_equal(tmp_path / "plain", tmp_path / "flat")
    assert not _weights_equal(tmp_path / "plain", tmp_path / "skewed", tolerance=1e-6)


def _component_distances(model_dir: Path, fasta: Path) -> tuple[float, float, float]:
    """(distance between the components' centroids, closest cross-component pair, farthest same pair)."""
    model, tokenizer = load_encoder(model_dir)
    records = read_fasta(fasta)
    vectors = encode(model, tokenizer, [r.sequence for r in records], pooling="cls")
    component = np.array([r.id[1] for r in records])
    distance = np.linalg.norm(vectors[:, None] - vectors[None], axis=-1)
    cross = component[:, None] != component[None]
    same = ~cross & ~np.eye(len(records), dtype=bool)
    centroids = [vectors[component == c].mean(0) for c in ("0", "1")]
    return (
        float(np.linalg.norm(centroids[0] - centroids[1])),
        float(distance[cross].min()),
        float(distance[same].max()),
    )


def test_margin_loss_separates_two_components_by_the_margin(two_components, tmp_path) -> None:
    fasta, graph = two_components
    settings = {
        "train.max_steps": 80,
        "train.eval_steps": 80,
        "train.save_steps": 80,
        "data.eval_fraction": 0.05,
    }
    structure = {"structure.weight": 0.5, "structure.margin": 1.0, "structure.pooling": "cls"}
    _run(fasta, tmp_path / "structure", graph, **settings, **structure)
    _, closest_cross, farthest_same = _component_distances(tmp_path / "structure", fasta)
    # The margin loss's fixed point: every same-component pair within the margin, every other beyond it.
    assert farthest_same < 1.0 <= closest_cross
    # Masked-LM alone tells the components apart here too (the halves of the alphabet differ), but not
    # on the margin's scale: the condition above is not met without the structure term.
    _run(fasta, tmp_path / "mlm", None, **settings)
    _, mlm_cross, mlm_same = _component_distances(tmp_path / "mlm", fasta)
    assert not mlm_same < 1.0 <= mlm_cross


def test_structure_run_resumes_like_plain_pretraining(two_components, tmp_path) -> None:
    fasta, graph = two_components
    settings = {"structure.weight": 0.5, "structure.negatives": 2}
    straight = tmp_path / "straight"
    _run(fasta, straight, graph, **settings)
    resumed = tmp_path / "resumed"
    shutil.copytree(straight / "checkpoints" / "checkpoint-4", resumed / "checkpoints" / "checkpoint-4")
    metrics = _run(fasta, resumed, graph, resume=True, **settings)
    assert metrics["steps"] == 8
    assert _weights_equal(straight, resumed, tolerance=1e-6)


@pytest.mark.parametrize("loss", ["margin", "info_nce", "multi_similarity"])
def test_every_loss_trains_and_is_logged(two_components, tmp_path, loss) -> None:
    fasta, graph = two_components
    metrics = _run(
        fasta,
        tmp_path / loss,
        graph,
        **{"structure.weight": 0.3, "structure.loss": loss, "structure.pooling": "mean"},
    )
    assert metrics["structure"]["loss"] == loss
    with open(tmp_path / loss / "log.csv", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("structure_loss")]
    assert rows, "structure_loss is logged"
    assert all(math.isfinite(float(row["structure_loss"])) and float(row["mlm_loss"]) > 0 for row in rows)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"structure.weight": 0.5}, "needs structure.graph"),
        ({"structure.weight": 1.5, "structure.graph": "g.tsv"}, r"\[0, 1\]"),
        (
            {"structure.weight": 0.5, "structure.graph": "g.tsv", "structure.loss": "triplet"},
            "unknown structure loss",
        ),
        (
            {"structure.weight": 0.5, "structure.graph": "g.tsv", "structure.negatives": -1},
            "negatives must be >= 0",
        ),
        (
            {"structure.weight": 0.5, "structure.graph": "g.tsv", "structure.pooling": "first-last"},
            "structure.pooling",
        ),
    ],
)
def test_bad_structure_settings_are_refused_before_reading(tmp_path, settings, message) -> None:
    config = load_config(
        PretrainConfig, None, tiny_overrides(tmp_path / "absent.fasta", tmp_path / "out", **settings)
    )
    with pytest.raises(ValueError, match=message):
        pretrain(config)


def test_graph_ids_must_match_the_fasta(two_components, tmp_path) -> None:
    fasta, _ = two_components
    bad = tmp_path / "bad.tsv"
    bad.write_text("c0_00\tc0_01\nc0_00\tnobody\n")
    with pytest.raises(ValueError, match=r"'nobody' \(line 2\)"):
        _run(fasta, tmp_path / "out", bad, **{"structure.weight": 0.5})


def test_groups_file_restricts_negatives_and_is_checked(two_components, tmp_path) -> None:
    fasta, graph = two_components
    ids = [record.id for record in read_fasta(fasta)]
    groups = tmp_path / "groups.tsv"
    groups.write_text(
        "id\tspecies\n" + "".join(f"{i}\t{'even' if n % 2 else 'odd'}\n" for n, i in enumerate(ids))
    )
    settings = {"structure.weight": 0.5, "structure.negatives": 2, "structure.groups": groups}
    metrics = _run(fasta, tmp_path / "grouped", graph, **settings)
    assert metrics["steps"] == 8
    with pytest.raises(ValueError, match="no column 'genus'"):
        _run(fasta, tmp_path / "bad", graph, **settings, **{"structure.group_column": "genus"})


def test_run_saved_before_the_structure_section_still_resumes(two_components, tmp_path) -> None:
    """A config.yaml written before `structure:` existed reads as its defaults, not as changed settings."""
    fasta, _ = two_components
    out = tmp_path / "old"
    _run(fasta, out, None, **{"train.max_steps": 4})
    saved = yaml.safe_load((out / "config.yaml").read_text())
    del saved["structure"]
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    assert _run(fasta, out, None, resume=True, **{"train.max_steps": 6})["steps"] == 6
