"""The `wordnet` recipe, run on real lines of WordNet 3.0 (tests/fixtures/wordnet, made by
scripts/make_text_fixtures.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from seqstruct.data.graph import read_edge_list
from seqstruct.data.prepared import Prepared
from seqstruct.data.sources.wordnet import (
    LEXNAMES,
    WordNetError,
    _parse,
    iter_synsets,
    prepare_wordnet,
    read_wordnet,
)

FIXTURE = Path(__file__).parents[1] / "fixtures" / "wordnet"
INSTALLED = Path("/usr/share/wordnet")
DOG, CANINE, DOMESTIC_ANIMAL = "n02084071", "n02083346", "n01317541"
EINSTEIN, PHYSICIST = "n10954498", "n10428004"  # an instance hypernym (@i)
RUN = "v01926329"  # "move fast by using one's feet"; a verb line, frames and all


def _data_lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("  ")]


@pytest.fixture(scope="module")
def wordnet(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    return prepare_wordnet(tmp_path_factory.mktemp("wn") / "wordnet", root=FIXTURE, seed=0)


def _row(prepared: Prepared, record_id: str) -> dict:
    for split in prepared.splits.values():
        matches = split.filter(lambda row: row["id"] == record_id)
        if len(matches):
            return matches[0]
    raise AssertionError(f"{record_id} in no split")


def _all_edges(prepared: Prepared) -> set[frozenset[str]]:
    ids = [i for split in prepared.splits.values() for i in split["id"]]
    edges: set[frozenset[str]] = set()
    for path in (prepared.graph_path, prepared.heldout_graph_path):
        graph, _ = read_edge_list(path, ids)
        edges |= {frozenset((ids[a], ids[b])) for a, b in graph.edges.tolist()}
    return edges


def test_lexnames_are_the_45_of_lexnames_5wn() -> None:
    assert len(LEXNAMES) == 45 == len(set(LEXNAMES))
    assert (LEXNAMES[0], LEXNAMES[3], LEXNAMES[5], LEXNAMES[29], LEXNAMES[44]) == (
        "adj.all", "noun.Tops", "noun.animal", "verb.body", "adj.ppl",
    )  # fmt: skip


def test_every_synset_becomes_one_record(wordnet: Prepared) -> None:
    expected = {
        letter + line[:8]
        for letter, name in (("n", "data.noun"), ("v", "data.verb"), ("a", "data.adj"), ("r", "data.adv"))
        for line in _data_lines(FIXTURE / name)
    }
    ids = [i for split in wordnet.splits.values() for i in split["id"]]
    assert sorted(ids) == sorted(expected)
    tenth = round(0.1 * len(ids))
    assert wordnet.info.splits == {"train": len(ids) - 2 * tenth, "valid": tenth, "test": tenth}
    assert wordnet.info.kind == "text" and wordnet.info.counts["synsets"] == len(ids)


def test_a_known_synset_has_its_lemmas_gloss_pos_and_supersense(wordnet: Prepared) -> None:
    dog = _row(wordnet, DOG)
    assert dog["lemmas"] == ["dog", "domestic dog", "Canis familiaris"]
    assert dog["pos"] == "n" and dog["supersense"] == "noun.animal"
    assert dog["text"].startswith("a member of the genus Canis") and dog["text"].endswith(
        '"the dog barked all night"'
    )
    run = _row(wordnet, RUN)
    assert run["lemmas"] == ["run"] and run["supersense"] == "verb.motion" and run["pos"] == "v"


def test_satellites_keep_the_file_letter_in_the_id_and_s_as_pos(wordnet: Prepared) -> None:
    going = _row(wordnet, "a00036163")  # `going(a)`: a satellite with a position marker
    assert going["pos"] == "s" and going["lemmas"] == ["going"] and going["supersense"] == "adj.all"
    assert not any(i.startswith("s") for split in wordnet.splits.values() for i in split["id"])


def test_hypernym_and_instance_hypernym_pointers_are_the_graph(wordnet: Prepared) -> None:
    edges = _all_edges(wordnet)
    assert frozenset((DOG, CANINE)) in edges
    assert frozenset((EINSTEIN, PHYSICIST)) in edges
    assert frozenset((DOG, DOMESTIC_ANIMAL)) in edges
    hypernyms = sum(
        sum(1 for token in line.partition(" | ")[0].split() if token in ("@", "@i"))
        for name in ("data.noun", "data.verb")
        for line in _data_lines(FIXTURE / name)
    )
    dropped = wordnet.info.counts["hypernym pointers to absent synsets (dropped)"]
    assert len(edges) + dropped == hypernyms


def test_graph_tsv_holds_only_train_edges(wordnet: Prepared) -> None:
    train = set(wordnet.split("train")["id"])
    ids = [i for split in wordnet.splits.values() for i in split["id"]]
    inside, _ = read_edge_list(wordnet.graph_path, ids)
    outside, _ = read_edge_list(wordnet.heldout_graph_path, ids)
    assert len(inside.edges) and len(outside.edges)
    assert all(ids[a] in train and ids[b] in train for a, b in inside.edges.tolist())
    assert all(ids[a] not in train or ids[b] not in train for a, b in outside.edges.tolist())


def test_card_counts_and_licence(wordnet: Prepared) -> None:
    counts = wordnet.info.counts
    nouns = len(_data_lines(FIXTURE / "data.noun"))
    assert counts["pos: n"] == nouns
    assert sum(value for key, value in counts.items() if key.startswith("supersense: ")) == counts["synsets"]
    assert "Princeton" in wordnet.info.licence and "sha256" in wordnet.info.source
    readme = (wordnet.path / "README.md").read_text()
    assert "supersense: noun.animal" in readme and "WordNet 3.0 licence" in readme


def test_the_split_is_seeded(wordnet: Prepared, tmp_path: Path) -> None:
    same = prepare_wordnet(tmp_path / "same", root=str(FIXTURE), seed=0)
    other = prepare_wordnet(tmp_path / "other", root=str(FIXTURE), seed=1)
    assert same.split("test")["id"] == wordnet.split("test")["id"]
    assert other.split("test")["id"] != wordnet.split("test")["id"]


def test_adjective_markers_are_removed() -> None:
    # A real line of data.adj, with the postnominal marker "(ip)".
    line = '00014358 00 s 02 abounding 0 galore(ip) 0 001 & 00013887 a 0000 | existing in abundance; "whiskey galore"  '
    synset = _parse(line, "a", Path("data.adj"), 7)
    assert synset.lemmas == ("abounding", "galore") and synset.id == "a00014358" and synset.hypernyms == ()


def test_missing_files_say_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(
        FileNotFoundError, match=r"data.noun not found; install it with `apt-get install -y wordnet-base`"
    ):
        read_wordnet(tmp_path)
    shutil.copy(FIXTURE / "data.noun", tmp_path)
    with pytest.raises(FileNotFoundError, match="data.verb not found"):
        prepare_wordnet(tmp_path / "out", root=tmp_path)


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda line: line.replace(" | ", " "), "no ' | ' before the gloss"),
        (lambda line: line[:9] + "99" + line[11:], "lex_filenum 99 is not one of 0..44"),
        (lambda line: line[:12] + "v" + line[13:], "ss_type 'v'; this file holds n"),
        (lambda line: line.partition(" | ")[0].rsplit(" ", 4)[0] + " | gloss", "line ends where a pointer"),
        (lambda line: line.replace(" | ", " extra | "), "unexpected 'extra' after the counted fields"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path: Path, edit, reason: str) -> None:
    lines = (FIXTURE / "data.noun").read_text(encoding="utf-8").splitlines(keepends=True)
    target = next(i for i, line in enumerate(lines) if line.startswith(DOG[1:]))
    lines[target] = edit(lines[target].rstrip("\n")) + "\n"
    broken = tmp_path / "data.noun"
    broken.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(WordNetError, match=f"data.noun, line {target + 1}: {reason}"):
        list(iter_synsets(broken, "n"))


def test_a_repeated_offset_names_both_lines(tmp_path: Path) -> None:
    lines = (FIXTURE / "data.adv").read_text(encoding="utf-8").splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if not line.startswith("  "))
    broken = tmp_path / "data.adv"
    broken.write_text("".join([*lines, lines[first]]), encoding="utf-8")
    with pytest.raises(
        WordNetError, match=f"line {len(lines) + 1}: synset offset .* repeats line {first + 1}"
    ):
        list(iter_synsets(broken, "r"))


@pytest.mark.slow
@pytest.mark.skipif(not (INSTALLED / "data.noun").is_file(), reason="needs Debian's wordnet-base")
def test_the_installed_wordnet_has_the_published_counts() -> None:
    # wnstats(7WN), WordNet 3.0: 82,115 noun, 13,767 verb, 18,156 adjective and 3,621 adverb synsets.
    synsets = read_wordnet(INSTALLED)
    letters = [s.id[0] for s in synsets]
    assert [letters.count(x) for x in "nvar"] == [82115, 13767, 18156, 3621]
