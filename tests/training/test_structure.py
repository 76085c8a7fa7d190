"""Structure-inducing pretraining through `pretrain`: λ = 0 is plain MLM, the margin loss separates graph
components, runs resume (with a projection head too), every loss trains and is logged beside its chance
value and held-out link MRR, a run that never leaves chance says so, bad settings are refused."""

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
from seqstruct.data.graph import Graph
from seqstruct.models.embed import encode, load_encoder
from seqstruct.report import pretrain_summary
from seqstruct.training.mlm import pretrain
from seqstruct.training.structure import LEFT_CHANCE, chance_summary, check_structure, heldout_links
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
    structure = {
        "structure.weight": 0.5,
        "structure.loss": "margin_euclidean",  # the paper's loss, on Euclidean distance
        "structure.margin": 1.0,
        "structure.pooling": "cls",
    }
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
    """With a projection head as well: it is saved in every checkpoint, so a resumed run goes on with
    the trained head, and it is dropped from the saved model, which stays a plain masked-LM model."""
    fasta, graph = two_components
    settings = {"structure.weight": 0.5, "structure.negatives": 2, "structure.projection_dim": 8}
    straight = tmp_path / "straight"
    _run(fasta, straight, graph, **settings)
    resumed = tmp_path / "resumed"
    shutil.copytree(straight / "checkpoints" / "checkpoint-4", resumed / "checkpoints" / "checkpoint-4")
    metrics = _run(fasta, resumed, graph, resume=True, **settings)
    assert metrics["steps"] == 8
    assert _weights_equal(straight, resumed, tolerance=1e-6)
    head = "structure_projection.2.weight"
    assert load_file(straight / "checkpoints" / "checkpoint-8" / "model.safetensors")[head].shape == (8, 32)
    assert not any(k.startswith("structure_projection") for k in load_file(straight / "model.safetensors"))


def _log(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "log.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("loss", ["info_nce", "margin_cosine", "margin_euclidean", "multi_similarity"])
def test_every_loss_trains_and_is_logged_beside_its_chance_value(two_components, tmp_path, loss) -> None:
    fasta, graph = two_components
    metrics = _run(
        fasta,
        tmp_path / loss,
        graph,
        **{"structure.weight": 0.3, "structure.loss": loss, "structure.pooling": "mean"},
    )
    structure = metrics["structure"]
    assert structure["loss"] == loss
    rows = [row for row in _log(tmp_path / loss) if row.get("structure_loss")]
    assert rows, "structure_loss is logged"
    assert all(math.isfinite(float(row["structure_loss"])) and float(row["mlm_loss"]) > 0 for row in rows)
    assert all(float(row["structure_chance"]) > 0 for row in rows)
    # λ ramps over train.warmup_steps (2): steps 0 and 1 of the first window weigh 0 and 0.15.
    assert [float(row["structure_weight"]) for row in rows] == pytest.approx([0.075, 0.3, 0.3, 0.3])
    last = rows[-1]
    assert structure["final_loss"] == pytest.approx(float(last["structure_loss"]))
    assert structure["chance"] == pytest.approx(float(last["structure_chance"]))
    assert structure["left_chance"] == (structure["final_loss"] < LEFT_CHANCE * structure["chance"])
    if loss == "info_nce":  # R rows of a batch: ln(R - 1) candidates; 8 anchors + positives + negatives
        assert math.log(8 - 1) < structure["chance"] < math.log(24 - 1) + 1e-6


def test_heldout_link_mrr_is_logged_to_csv_and_tensorboard(two_components, tmp_path) -> None:
    """The held-out proteins' edges, cut from training, are retrieved at every evaluation: eval_link_mrr
    in log.csv and TensorBoard, for masked-LM alone on the graph (λ = 0) as for structure-inducing."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    fasta, graph = two_components
    for name, weight in (("mlm", 0.0), ("structure", 0.5)):
        metrics = _run(fasta, tmp_path / name, graph, **{"structure.weight": weight})
        evaluations = [row for row in _log(tmp_path / name) if row.get("eval_loss")]
        assert [row["step"] for row in evaluations] == ["4", "8"]
        assert all(0.0 < float(row["eval_link_mrr"]) <= 1.0 for row in evaluations)
        assert metrics["heldout"]["link_mrr"] == pytest.approx(float(evaluations[-1]["eval_link_mrr"]))
        assert metrics["structure"]["link_mrr"] == metrics["heldout"]["link_mrr"]
        assert metrics["structure"]["link_queries"] == 4  # 10% of 40 held out, every one with edges
        events = EventAccumulator(str(tmp_path / name / "tensorboard"))
        events.Reload()
        assert [e.step for e in events.Scalars("eval/link_mrr")] == [4, 8]
    assert metrics["structure"]["left_chance"] is not None
    no_links = _run(fasta, tmp_path / "off", graph, **{"structure.weight": 0.5, "structure.link_queries": 0})
    assert "link_mrr" not in no_links["heldout"] and no_links["structure"]["link_queries"] is None


def test_a_run_that_never_leaves_chance_says_so(two_components, tmp_path) -> None:
    """At a learning rate that moves nothing the pooled vectors stay as initialised, nearly parallel, and
    InfoNCE stays at ln(R - 1): metrics.json and the summary say the run learned nothing of the graph."""
    fasta, graph = two_components
    out = tmp_path / "still"
    metrics = _run(fasta, out, graph, **{"structure.weight": 0.5, "train.learning_rate": 1e-9})
    structure = metrics["structure"]
    # Not 1 exactly: the untrained encoder already sets the two components' compositions a little apart.
    assert LEFT_CHANCE < structure["loss_to_chance"] < 1.0 + 1e-6
    assert structure["left_chance"] is False
    assert "never left chance" in pretrain_summary(out).read_text(encoding="utf-8")


def test_chance_summary_reads_the_last_logged_window() -> None:
    history = [
        {"step": 2, "loss": 3.0, "structure_loss": 4.0, "structure_chance": 4.1},
        {"step": 2, "eval_loss": 3.0},
        {"step": 4, "loss": 2.0, "structure_loss": 2.0, "structure_chance": 4.0},
    ]
    found = chance_summary(history)
    assert (found["final_loss"], found["chance"], found["loss_to_chance"]) == (2.0, 4.0, 0.5)
    assert found["left_chance"] is True and found["left_chance_threshold"] == LEFT_CHANCE
    assert (found["best_loss_to_chance"], found["best_step"]) == (0.5, 4)
    assert chance_summary(history[:2])["left_chance"] is False  # 4.0 / 4.1 is chance
    fell_back = chance_summary([*history, {"step": 6, "structure_loss": 3.9, "structure_chance": 4.0}])
    assert fell_back["left_chance"] is False and fell_back["best_loss_to_chance"] == 0.5
    assert chance_summary([{"step": 2, "loss": 3.0}])["left_chance"] is None  # λ = 0: no structure loss


def test_heldout_links_query_heldout_nodes_with_edges_among_capped_candidates() -> None:
    """Nodes 0-9 train; 10-13 are held out, 13 without edges. Candidates: all nodes up to the cap, else the
    queries, their neighbours and a seeded sample of the rest."""
    edges = np.array([[0, 1], [0, 10], [2, 11], [11, 12], [3, 4]])
    graph = Graph(tuple(f"n{i}" for i in range(14)), edges, np.ones(len(edges), dtype=np.float32))
    train = np.arange(14) < 10
    sequences = [f"S{i}" for i in range(14)]
    links = heldout_links(graph, train, sequences, max_queries=10, max_candidates=100, seed=0)
    assert links is not None and links.sequences == sequences
    assert links.queries.tolist() == [10, 11, 12]
    assert [r.tolist() for r in links.relevant] == [[0], [2, 12], [11]]
    capped = heldout_links(graph, train, sequences, max_queries=2, max_candidates=6, seed=0)
    assert capped is not None and len(capped.queries) == 2 and len(capped.sequences) == 6
    neighbours = graph.neighbours()
    for query, relevant in zip(capped.queries, capped.relevant, strict=True):
        node = int(capped.sequences[query][1:])  # positions in the pool back to node indices
        assert node in (10, 11, 12)
        assert sorted(int(capped.sequences[r][1:]) for r in relevant) == neighbours[node].tolist()
    again = heldout_links(graph, train, sequences, max_queries=2, max_candidates=6, seed=0)
    assert again is not None and again.sequences == capped.sequences  # deterministic in the seed
    assert heldout_links(graph, train, sequences, max_queries=0, max_candidates=6, seed=0) is None
    assert heldout_links(graph, np.ones(14, dtype=bool), sequences, 10, 100, 0) is None


def test_a_saved_config_without_the_new_structure_keys_still_loads(tmp_path) -> None:
    """A config.yaml saved before the chance diagnostics: its keys as they were, the new ones at their
    defaults (λ ramp over the schedule's warm-up, no projection head, link queries on)."""
    saved = tmp_path / "config.yaml"
    old = {
        "structure": {
            "graph": "g.tsv",
            "directed": False,
            "weight": 0.5,
            "loss": "margin",
            "pooling": "cls",
            "margin": 1.0,
            "temperature": 0.05,
            "negatives": 0,
            "groups": "",
            "group_column": "",
        }
    }
    saved.write_text(yaml.safe_dump(old))
    config = load_config(PretrainConfig, saved)
    assert config.structure.loss == "margin" and config.structure.weight_warmup_steps is None
    assert config.structure.projection_dim == 0 and config.structure.link_queries > 0
    # 'margin' meant the Euclidean loss then and is no name now: such a run is refused before it resumes
    # under another loss, the message naming both successors.
    with pytest.raises(ValueError, match="margin_euclidean for it, or margin_cosine"):
        check_structure(config.structure)


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
