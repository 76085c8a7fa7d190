"""`seqstruct demo` end to end on tiny settings, on the swissprot-go recipe's real 300-protein fixture
(the embedded sample itself takes minutes to cluster: `make demo` runs that)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from seqstruct.cli import main
from seqstruct.data.prepared import prepare
from seqstruct.experiments.demo import SAMPLE_OPTIONS, demo_config

FIXTURE = Path(__file__).parents[1] / "fixtures" / "swissprot_go"
TINY = [
    "model.preset=tiny",
    "train.max_steps=4",
    "train.eval_steps=2",
    "train.save_steps=2",
    "data.eval_max=16",
    "data.max_length=64",
    "train.warmup_steps=1",
    "train.precision=fp32",
]


@pytest.fixture(scope="module")
def swissprot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "swissprot-go"
    options = dict(remote_fraction=0.15, close_fraction=0.1, valid_fraction=0.1, class_min_size=5)
    prepare("swissprot-go", out, root=str(FIXTURE), max_term_size=30, max_length=130, threads=1, **options)
    return out


def test_demo_compares_mlm_and_structure_and_resumes(swissprot, tmp_path, capsys, caplog) -> None:
    out = tmp_path / "demo #1"  # a path is taken as given, not parsed as YAML
    args = ["demo", "-o", str(out), *TINY, "--data", str(swissprot)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "go-mf test_remote fmax" in printed and "structure − mlm" in printed
    for name in ("summary.md", "results.md", "results.json", "compare.yaml"):
        assert (out / name).is_file(), name
    for arm in ("mlm", "structure"):
        cell = out / "seed0" / arm
        for name in ("model.safetensors", "summary.md", "loss_curve.png", "eval/go-mf.json", "eval/go-mf.md"):
            assert (cell / name).is_file(), (arm, name)
    structure = json.loads((out / "seed0" / "structure" / "metrics.json").read_text())
    assert structure["structure"]["weight"] == 0.5 and structure["steps"] == 4
    assert json.loads((out / "seed0" / "mlm" / "metrics.json").read_text())["structure"]["weight"] == 0.0
    results = json.loads((out / "results.json").read_text())
    assert results["arms"][:2] == ["mlm", "structure"] and set(results["arms"][2:]) == {"naive", "kmer"}
    fmax = results["summary"]["go-mf test_remote fmax"]
    assert all(0.0 < fmax[arm]["mean"] <= 1.0 for arm in results["arms"])
    summary = (out / "summary.md").read_text()
    assert "## Results" in summary and "seed0/structure/summary.md" in summary
    # One sentence first, then the figure it summarises; the table in words, its splits explained once.
    answer = summary.split("\n")[2]
    assert answer.startswith("**This run does not answer whether structure-inducing beats MLM only")
    assert "one seed, so no spread was measured" in answer
    assert "![each model per task" in summary and (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert "| GO-MF Fmax, close homology |" in summary and "*remote homology*: the `test_remote`" in summary
    assert "± 0.000" not in summary
    time_row = next(line for line in summary.splitlines() if line.startswith("| pretraining time (s)"))
    assert time_row.endswith("| — | — | — | — | — |")  # baselines do not pretrain; times are not differenced
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings["models"]) == {"mlm", "structure", "naive", "kmer"} and timings["wall_seconds"] > 0
    assert (
        timings["models"]["mlm"]["pretrain_seconds"] > 0
        and timings["models"]["naive"]["pretrain_seconds"] == 0
    )
    assert "| **this run, end to end** |" in summary and "load average at the end" in summary
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') >= 3  # the comparison and both loss curves, inlined

    # Running again finds every cell finished: nothing is trained or evaluated anew.
    stamps = {p: p.stat().st_mtime_ns for p in (out / "seed0").glob("*/evaluation.json")}
    caplog.set_level(logging.INFO, logger="seqstruct")
    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps and len(stamps) == 2
    reused = sorted(r.getMessage() for r in caplog.records if "evaluation.json reused" in r.getMessage())
    cells = sorted(
        [
            out / "models" / "kmer",
            out / "models" / "naive",
            out / "seed0" / "mlm",
            out / "seed0" / "structure",
        ]
    )
    assert reused == [
        f"comparison cell {cell}: finished earlier, its evaluation.json reused" for cell in cells
    ]
    assert not [r for r in caplog.records if "resuming from" in r.getMessage()]  # nothing trained
    # Other settings in the same place are refused, not mixed in; --fresh starts over.
    assert main(["demo", "-o", str(out), *TINY, "train.seed=1", "--data", str(swissprot)]) == 2
    assert "other settings" in capsys.readouterr().err


def test_demo_defaults_prepare_the_embedded_sample_under_the_output(tmp_path) -> None:
    config = demo_config(str(tmp_path / "d"), ["train.max_steps=2"])
    assert (
        config.dataset == str(tmp_path / "d" / "data")
        and config.pretrain_overrides[-1] == "train.max_steps=2"
    )
    assert SAMPLE_OPTIONS["source"] == "sample" and config.seeds == [0]
    assert set(config.arms) == {"mlm", "structure"} and config.tasks == [
        "go-mf",
        "go-mf-class",
        "protein-link",
    ]


def test_the_summary_says_the_split_identity_and_machine_it_ran_with() -> None:
    import os

    from seqstruct.experiments.demo import machine, split_sentence

    assert "no 40%-identity MMseqs2 cluster" in split_sentence({"levels": [0.9, 0.4]})
    assert "recipe's own" in split_sentence({})
    assert f"{len(os.sched_getaffinity(0))} CPU cores" in machine()


def test_the_demo_continues_the_packaged_protein_encoder_when_one_is_shipped(tmp_path, monkeypatch) -> None:
    from seqstruct.experiments.demo import START_MODEL, start_sentence
    from seqstruct.models import io

    monkeypatch.setattr(io, "PACKAGED_MODELS", tmp_path / "models")
    config = demo_config(str(tmp_path / "d"))
    assert not any(o.startswith("model.pretrained") for o in config.pretrain_overrides)
    assert "freshly initialised" in start_sentence(config)
    (tmp_path / "models" / START_MODEL).mkdir(parents=True)
    (tmp_path / "models" / START_MODEL / "config.json").write_text("{}")
    config = demo_config(str(tmp_path / "d"), ["train.max_steps=2"])
    assert config.pretrain_overrides[-2:] == [f"model.pretrained={START_MODEL}", "train.max_steps=2"]
    assert start_sentence(config) == f"both continue the pretrained `{START_MODEL}`"
    # the user's own start wins, a fresh one included
    config = demo_config(str(tmp_path / "d"), ["model.pretrained="])
    assert [o for o in config.pretrain_overrides if o.startswith("model.pretrained")] == ["model.pretrained="]
    assert "freshly initialised" in start_sentence(config)
