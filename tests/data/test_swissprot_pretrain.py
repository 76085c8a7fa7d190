"""The swissprot-pretrain recipe: its pure steps on hand-made inputs, then the whole recipe on the committed
metastudent fixture (tests/fixtures/swissprot_go) with real MMseqs2 searches and clusters, excluding two
hand-made evaluation datasets (one with the fixture's accessions, one with ids of another form)."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import pytest
from datasets import Dataset

from seqstruct.data import homology
from seqstruct.data.fasta import read_fasta
from seqstruct.data.prepared import DatasetInfo, Prepared, prepare, write_prepared
from seqstruct.data.sources import metastudent, swissprot_pretrain
from seqstruct.data.sources.swissprot_pretrain import (
    EvalSet,
    draw_shards,
    eval_members,
    fasta_gz,
    hold_out,
)

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "swissprot_go"
DUPLICATE = "ZZDUP01"  # added to a copy of the fixture: another accession with a test_close sequence

# --- pure steps ----------------------------------------------------------------------------------------------


def test_eval_members_match_by_accession_and_by_sequence() -> None:
    sequences = {"P1": "MKV", "P2": "MKV", "P3": "AAA", "P4": "CCC"}
    sets = [
        EvalSet("a", "test_close", ("P1",), ("MKV",)),  # P2 has the same sequence: out too
        EvalSet("b", "valid", ("sp|P3|X", "Q9"), ("AAA", "WWW")),  # another id form; one unknown protein
    ]
    excluded, counts = eval_members(sequences, sets)
    assert excluded == {"P1", "P2", "P3"}
    assert counts["a test_close: excluded by accession"] == 1
    assert counts["a test_close: excluded by identical sequence only (other accessions)"] == 1
    assert counts["b valid: excluded by accession"] == 0
    assert counts["b valid: excluded by identical sequence only (other accessions)"] == 1
    assert counts["b valid: not found in Swiss-Prot by accession or sequence"] == 1


def test_hold_out_is_seeded_and_bounded() -> None:
    reps = [f"r{i}" for i in range(50)]
    held = hold_out(reps, 10, seed=3)
    assert len(held) == 10 and held <= set(reps)
    assert hold_out(reversed(reps), 10, seed=3) == held  # order of the input does not matter
    assert hold_out(reps, 10, seed=4) != held
    assert hold_out(reps[:4], 10, seed=3) == set(reps[:4])


def test_draw_shards_takes_representatives_then_one_member_per_cluster() -> None:
    members = {"a": ["a", "a2", "a3"], "b": ["b"], "c": ["c", "c2"]}
    lengths = {p: 10 for group in members.values() for p in group}
    shards = draw_shards(members, 4, seed=0, lengths=lengths)
    assert shards[0] == ["a", "b", "c"]
    for shard in shards[1:]:
        assert len(shard) == 3 and "b" in shard
        assert all(sum(p in group for p in shard) == 1 for group in members.values())
    assert draw_shards(members, 4, seed=0, lengths=lengths) == shards
    assert len({tuple(shard) for shard in shards}) > 1  # draws differ between shards
    capped = draw_shards(members, 2, seed=0, lengths=lengths, max_residues=25)
    assert [len(shard) for shard in capped] == [2, 2]
    assert len(draw_shards(members, 1, seed=0, lengths=lengths, max_proteins=1)[0]) == 1


def test_fasta_gz_is_deterministic_and_readable(tmp_path: Path) -> None:
    sequences = {"P1": "M" * 130, "P2": "ACDEFGHIKL"}
    blob = fasta_gz(["P1", "P2"], sequences)
    assert blob == fasta_gz(["P1", "P2"], sequences)
    assert blob[4:8] == b"\x00\x00\x00\x00"  # gzip mtime field
    path = tmp_path / "s.fasta.gz"
    path.write_bytes(blob)
    assert [(r.id, r.sequence) for r in read_fasta(path)] == list(sequences.items())
    assert max(len(line) for line in gzip.decompress(blob).decode().splitlines()) == 60


# --- the recipe on the fixture -------------------------------------------------------------------------------


def _fixture_sequences(root: Path) -> dict[str, str]:
    sequences: dict[str, str] = {}
    for ontology in metastudent.ONTOLOGIES:
        for title, sequence in metastudent.read_blast_db(root / ontology / metastudent.DB_NAME):
            sequences.setdefault(metastudent.parse_title(title)[0], sequence)
    return sequences


def _eval_dataset(path: Path, splits: dict[str, list[tuple[str, str]]]) -> Path:
    info = DatasetInfo(name="eval", kind="protein", recipe="handmade", config={})
    columns = {
        name: Dataset.from_dict({"id": [i for i, _ in rows], "text": [s for _, s in rows]})
        for name, rows in splits.items()
    }
    write_prepared(path, info, columns)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A copy of the fixture with one duplicated sequence, two evaluation datasets, and the recipe's output."""
    sequences = _fixture_sequences(FIXTURE)
    ids = sorted(sequences)
    # Who is near whom at the recipe's remote criteria: the test_remote protein is one with neighbours.
    rows = homology.search_rows(
        [sequences[i] for i in ids],
        [sequences[i] for i in ids],
        min_seq_id=0.3,
        coverage=0.8,
        threads=1,
    )
    near: dict[str, set[str]] = {i: set() for i in ids}
    for q, t, *_ in rows:
        if q != t:
            near[ids[q]].add(ids[t])
    remote = max(ids, key=lambda i: (len(near[i]), i))
    others = [i for i in ids if i != remote and i not in near[remote]]
    close, valid, other_form, train = others[0], others[1], others[2], others[3:6]
    root = tmp_path_factory.mktemp("fixture") / "dataset_201401"
    shutil.copytree(FIXTURE, root)
    cco = root / "CCO" / metastudent.DB_NAME
    records = list(metastudent.read_blast_db(cco))
    metastudent.write_blast_db(cco, [*records, (f"{DUPLICATE}|GO:0005575", sequences[close])])

    base = tmp_path_factory.mktemp("eval")
    same_ids = _eval_dataset(
        base / "same-ids",
        {
            "train": [(i, sequences[i]) for i in train],
            "valid": [(valid, sequences[valid])],
            "test_close": [(close, sequences[close])],
            "test_remote": [(remote, sequences[remote])],
        },
    )
    other_ids = _eval_dataset(
        base / "other-ids",
        {"train": [("t1", sequences[train[0]])], "test_close": [(f"sp_{other_form}", sequences[other_form])]},
    )
    output = tmp_path_factory.mktemp("out") / "pretrain"
    options = dict(
        root=str(root), exclude=[str(same_ids), str(other_ids)], shards=3, valid_clusters=5, threads=1
    )
    prepared = prepare("swissprot-pretrain", output, **options)
    return {
        "prepared": prepared,
        "options": options,
        "sequences": {**sequences, DUPLICATE: sequences[close]},
        "near": near[remote] - {remote},
        "remote": remote,
        "eval": {remote, close, valid, other_form, DUPLICATE},
        "same_ids": same_ids,
        "other_ids": other_ids,
    }


def _shards(prepared: Prepared) -> list[list[str]]:
    paths = sorted(prepared.path.glob("shard-*.fasta.gz"))
    return [[record.id for record in read_fasta(path)] for path in paths]


def test_layout_and_train_is_shard_0(world: dict) -> None:
    prepared: Prepared = world["prepared"]
    names = [path.name for path in sorted(prepared.path.glob("shard-*"))]
    assert names == ["shard-000.fasta.gz", "shard-001.fasta.gz", "shard-002.fasta.gz"]
    assert (prepared.path / "audit.json").is_file() and (prepared.path / "train.fasta").is_file()
    assert list(prepared.splits) == ["train", "valid"] and prepared.info.recipe == "swissprot-pretrain"
    shards = _shards(prepared)
    assert shards[0] == sorted(prepared.split("train")["id"])
    assert len(shards[1]) == len(shards[2]) == len(shards[0])
    assert prepared.info.splits["valid"] == 5
    for k, shard in enumerate(shards):
        assert prepared.info.counts[f"shard-{k:03d}.fasta.gz: proteins"] == len(shard)


def test_evaluation_proteins_are_excluded_by_accession_and_by_sequence(world: dict) -> None:
    prepared: Prepared = world["prepared"]
    everywhere = {i for shard in _shards(prepared) for i in shard} | set(prepared.split("valid")["id"])
    assert not everywhere & world["eval"]
    sequences = {world["sequences"][i] for i in world["eval"]}
    assert not sequences & {world["sequences"][i] for i in everywhere}
    counts = prepared.info.counts
    same, other = world["same_ids"], world["other_ids"]
    assert counts[f"{same} test_close: excluded by identical sequence only (other accessions)"] == 1
    assert counts[f"{other} test_close: excluded by accession"] == 0
    assert counts[f"{other} test_close: excluded by identical sequence only (other accessions)"] == 1
    assert counts["excluded: evaluation-split proteins (all datasets, by accession or sequence)"] == 5
    assert f"{same} train: proteins" not in counts  # train splits are not evaluation splits


def test_test_remote_neighbours_are_excluded(world: dict) -> None:
    prepared: Prepared = world["prepared"]
    assert world["near"], "the fixture should give the test_remote protein a 30% neighbour"
    everywhere = {i for shard in _shards(prepared) for i in shard} | set(prepared.split("valid")["id"])
    assert not everywhere & world["near"]
    key = next(k for k in prepared.info.counts if k.startswith("excluded: test_remote 30%-cluster members"))
    assert prepared.info.counts[key] == len(world["near"] - world["eval"])


def test_shards_avoid_the_held_out_clusters(world: dict) -> None:
    prepared: Prepared = world["prepared"]
    valid = prepared.split("valid")["id"]
    counts = prepared.info.counts
    held = counts["held out: proteins in all those clusters (in no shard)"]
    assert held >= len(valid) == 5
    shards = _shards(prepared)
    placed = sorted({i for shard in shards for i in shard})
    assert not set(valid) & set(placed)
    assert (
        len(placed) <= counts["proteins left to cluster"] - held
    )  # members of held-out clusters are nowhere
    # Nothing in a shard is within the clustering's criteria of a valid protein, whatever linclust missed.
    sequences = world["sequences"]
    rows = homology.search_rows(
        [sequences[i] for i in valid], [sequences[i] for i in placed], min_seq_id=0.5, coverage=0.8, threads=1
    )
    assert rows == []


def test_audit_is_written_and_remote_stays_remote(world: dict) -> None:
    prepared: Prepared = world["prepared"]
    audit = json.loads((prepared.path / "audit.json").read_text(encoding="utf-8"))
    same = world["same_ids"]
    assert set(audit) == {
        f"{same} valid",
        f"{same} test_close",
        f"{same} test_remote",
        f"{world['other_ids']} test_close",
        "swissprot-pretrain (this dataset) valid",
    }
    assert audit[f"{same} test_remote"][">=0.3"] == 0.0
    assert audit["swissprot-pretrain (this dataset) valid"]["n"] == 5
    card = (prepared.path / "README.md").read_text(encoding="utf-8")
    for text in (
        "CC BY 4.0",
        "Exclusion rule",
        "| split | n | no hit |",
        "metastudent",
        "shard-002.fasta.gz: MiB",
    ):
        assert text in card


def test_output_is_deterministic(world: dict, tmp_path: Path) -> None:
    again = prepare("swissprot-pretrain", tmp_path / "again", **{**world["options"], "audit": False})
    for path in sorted(world["prepared"].path.glob("shard-*.fasta.gz")):
        assert (tmp_path / "again" / path.name).read_bytes() == path.read_bytes()
    assert again.split("valid")["id"] == world["prepared"].split("valid")["id"]
    assert not (tmp_path / "again" / "audit.json").exists()


def test_bad_exclude_path_is_named(tmp_path: Path) -> None:
    absent = tmp_path / "no-such-dataset"
    with pytest.raises(
        FileNotFoundError, match=rf"exclude: {re.escape(str(absent))}: not a prepared dataset"
    ):
        prepare("swissprot-pretrain", tmp_path / "out", root=str(FIXTURE), exclude=[str(absent)])
    assert not (tmp_path / "out").exists()


def test_dataset_without_evaluation_splits_is_refused(tmp_path: Path) -> None:
    train_only = _eval_dataset(tmp_path / "train-only", {"train": [("a", "MKV")]})
    with pytest.raises(ValueError, match="has no evaluation split"):
        prepare("swissprot-pretrain", tmp_path / "out", root=str(FIXTURE), exclude=str(train_only))


def test_an_oversized_shard_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(swissprot_pretrain, "MAX_SHARD_BYTES", 1000)
    with pytest.raises(ValueError, match=r"shard-000.fasta.gz would be .* MiB, over .* max_residues="):
        prepare(
            "swissprot-pretrain",
            tmp_path / "out",
            root=str(FIXTURE),
            audit=False,
            threads=1,
            valid_clusters=5,
        )
    assert not (tmp_path / "out").exists()
    capped = prepare(
        "swissprot-pretrain",
        tmp_path / "capped",
        root=str(FIXTURE),
        audit=False,
        threads=1,
        valid_clusters=5,
        max_residues=800,
    )
    assert capped.info.counts["shard-000.fasta.gz: residues"] <= 800


def test_holding_out_every_cluster_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"valid_clusters=1000 would hold out all \d+ clusters"):
        prepare("swissprot-pretrain", tmp_path / "out", root=str(FIXTURE), audit=False, threads=1)
