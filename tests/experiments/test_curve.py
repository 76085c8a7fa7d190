"""`seqstruct curve` end to end on a tiny text dataset: the grid, its cache and resume, the outputs."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest

from seqstruct.cli import main
from seqstruct.config import PACKAGED_CONFIGS, load_config
from seqstruct.evaluation.extrapolation import PowerLaw
from seqstruct.evaluation.tasks import get_task
from seqstruct.experiments import curve as curve_module
from seqstruct.experiments.curve import (
    Budget,
    CurveConfig,
    _cached_cell,
    _cell_settings,
    curve,
    majority_note,
    parse_arms,
    unfinished_fits,
    unfinished_note,
    write_outputs,
)
from seqstruct.io import DirectoryLock
from tests.evaluation.tasks.datasets import text_dataset

FINETUNE = ["epochs=1", "batch_size=8", "lr=1e-3"]


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory):
    """24 train, 6 valid and 6 test texts in 3 topics (`text_dataset`); text_model is in conftest."""
    return text_dataset(tmp_path_factory.mktemp("texts") / "data")


def _config(output: Path, data: Path, encoder: Path, **extra: object) -> CurveConfig:
    overrides = {
        "task": "wordnet-supersense",
        "data": str(data),
        "encoder": str(encoder),
        "fractions": [0.5, 1.0],
        "seeds": [0, 1],
        "options": ["precision=fp32", "grid=[1.0]"],
        "arms": {
            "lstm": ["model=lstm:$encoder", "mode=finetune", *FINETUNE, "lstm_hidden=8", "lstm_embedding=8"],
            "probe": ["model=$encoder", "mode=probe"],
        },
    }
    overrides.update(extra)
    config = load_config(CurveConfig, None, [])
    config.output_dir = str(output)
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def test_arms_fill_in_the_encoder_and_keep_options_apart(tmp_path) -> None:
    config = CurveConfig(encoder="minilm", options=["max_valid=100"])
    arms = {arm.name: arm for arm in parse_arms(config)}
    assert list(arms) == ["lstm", "finetune", "probe"]
    assert arms["lstm"].model == "lstm:minilm" and arms["lstm"].mode == "finetune"
    assert arms["lstm"].options[0] == "max_valid=100" and "lr=1e-3" in arms["lstm"].options
    assert arms["probe"].model == "minilm" and arms["probe"].mode == "probe"
    with pytest.raises(ValueError, match="no model="):
        parse_arms(CurveConfig(arms={"x": ["mode=probe"]}))
    with pytest.raises(ValueError, match="use train_size, not max_train"):
        parse_arms(CurveConfig(arms={"x": ["model=minilm", "max_train=10"]}))


def test_the_grid_writes_table_plot_and_csv_and_reuses_finished_cells(
    tmp_path, texts, text_model, monkeypatch
):
    config = _config(tmp_path / "curve", texts.path, text_model)
    result = curve(config)
    root = tmp_path / "curve"
    for name in ("curve.csv", "curve.md", "curve.json", "curve.png", "curve.yaml"):
        assert (root / name).is_file(), name
    assert (root / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cells = sorted(p.relative_to(root).as_posix() for p in root.glob("*/*/*/result.json"))
    assert cells == [
        f"{a}/f{f}/seed{s}/result.json" for a in ("lstm", "probe") for f in ("0.5", "1") for s in (0, 1)
    ]
    assert not list(root.glob("**/checkpoints"))  # fine-tuning checkpoints are removed when a cell is done

    with open(root / "curve.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    examples = {(r["arm"], r["fraction"], r["seed"]): int(r["examples"]) for r in rows}
    # the same label budget for every arm: 12 of the 24 train rows at 0.5, all of them at 1.0
    assert {v for k, v in examples.items() if k[1] == "0.5"} == {12}
    assert {v for k, v in examples.items() if k[1] == "1.0"} == {24}
    cell = json.loads((root / "lstm" / "f0.5" / "seed1" / "result.json").read_text(encoding="utf-8"))
    assert cell["train_rows"] == 24 and cell["fit"]["steps"] == 2  # 12 rows, batch 8, one epoch
    assert cell["fit"]["last_eval_step"] == 2
    assert "| fraction | examples | lstm | probe | probe − lstm |" in result["table"]
    markdown = (root / "curve.md").read_text(encoding="utf-8")
    assert "![" in markdown
    # one epoch, validated once at its end: every LSTM fit's best checkpoint is its last step
    note = "**Still improving when stopped:** lstm at fraction 0.5 (2 of 2 seeds); lstm at fraction 1 (2 of 2"
    assert note in markdown
    spent = json.loads((root / "curve.json").read_text(encoding="utf-8"))["cell_seconds"]
    walls = [
        json.loads(p.read_text(encoding="utf-8"))["wall_seconds"] for p in root.glob("lstm/*/*/result.json")
    ]
    assert set(spent) == {"lstm", "probe"} and spent["lstm"] == pytest.approx(sum(walls))
    assert "Cell time (the sum of the cells' wall times): " in markdown
    # two fractions: three parameters cannot be fitted, and curve.md says so rather than extrapolating
    assert "## Where pretraining stops paying\n\nNo n*: fewer than 3 budgets measured" in markdown
    majority = cell["counts"]["majority_accuracy"]["test"]
    assert (
        f"Majority class (the most frequent train class for every row), accuracy: test {majority:.3f}."
        in markdown
    )
    points = json.loads((root / "curve.json").read_text(encoding="utf-8"))["points"]
    assert {(p["arm"], p["fraction"]) for p in points} == {
        (a, f) for a in ("lstm", "probe") for f in (0.5, 1.0)
    }

    # a second run reuses every cell: nothing is built or trained
    def refuse(*args, **kwargs):
        raise AssertionError("a finished cell was run again")

    monkeypatch.setattr(curve_module, "_build", refuse)
    again = curve(config)
    assert again["points"] == result["points"]

    # a cell run with other settings is refused, not mixed in
    changed = _config(tmp_path / "curve", texts.path, text_model, train_size=10)
    with pytest.raises(ValueError, match="was run with other settings"):
        curve(changed)


def test_a_cell_made_with_other_encoder_weights_is_refused(tmp_path, text_model) -> None:
    """An encoder re-saved under the same path (a new protein-small) must not reuse the old one's cells;
    the LSTM, which only borrows the tokenizer, keeps them; a cell from before weights were recorded is
    reused."""
    from safetensors.torch import load_file, save_file

    encoder = tmp_path / "encoder"
    shutil.copytree(text_model, encoder)
    config = CurveConfig(encoder=str(encoder))
    arms = {arm.name: arm for arm in parse_arms(config)}
    before = _cell_settings(config, arms["probe"], 1.0, 0)
    assert before["weights"] and _cell_settings(config, arms["lstm"], 1.0, 0)["weights"] is None

    tensors = load_file(encoder / "model.safetensors")
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1.0
    save_file(tensors, encoder / "model.safetensors", metadata={"format": "pt"})
    after = _cell_settings(config, arms["probe"], 1.0, 0)
    assert after["weights"] != before["weights"]
    assert {k: v for k, v in after.items() if k != "weights"} == {
        k: v for k, v in before.items() if k != "weights"
    }

    cell = tmp_path / "cell"
    cell.mkdir()
    (cell / "result.json").write_text(json.dumps({"settings": before}), encoding="utf-8")
    with pytest.raises(ValueError, match="was run with other settings"):
        _cached_cell(cell, after, overwrite=False)
    legacy = {k: v for k, v in before.items() if k != "weights"}
    (cell / "result.json").write_text(json.dumps({"settings": legacy, "metrics": 1}), encoding="utf-8")
    assert _cached_cell(cell, after, overwrite=False)["metrics"] == 1


def test_outputs_fit_each_arm_and_say_where_its_lead_over_the_reference_ends(tmp_path) -> None:
    """write_outputs on synthetic rows from known laws (no training): the n* block in curve.md, the fits in
    curve.json, the extrapolated lines in curve.png."""
    laws = {"lstm": PowerLaw(0.8, 2.0, 0.4), "finetune": PowerLaw(0.8, 0.6, 0.3)}  # lead ends near 13,400
    fractions = [0.001, 0.01, 0.1, 0.3, 1.0]
    rng = np.random.default_rng(0)
    rows = [
        {"arm": arm, "fraction": f, "seed": seed, "examples": round(50000 * f), "split": "test"}
        | {"metric": "accuracy", "value": float(law(round(50000 * f)) + rng.normal(0.0, 0.003))}
        for arm, law in laws.items()
        for seed in range(4)
        for f in fractions
    ]
    arms = {"lstm": ["model=lstm:minilm", "mode=finetune"], "finetune": ["model=minilm", "mode=finetune"]}
    config = CurveConfig(output_dir=str(tmp_path), arms=arms, fractions=fractions, seeds=[0, 1, 2, 3])
    write_outputs(config, rows, "lstm", 1.0)
    markdown = (tmp_path / "curve.md").read_text(encoding="utf-8")
    assert "## Where pretraining stops paying" in markdown
    assert "from which the arm's fitted lead over lstm stays below 1 point (0.01)" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| test | finetune |"))
    assert row.endswith("| 0% | within the budgets measured: an interpolation |")
    fitted = json.loads((tmp_path / "curve.json").read_text(encoding="utf-8"))["extrapolation"]
    assert [(f["arm"], f["split"]) for f in fitted["fits"]] == [("lstm", "test"), ("finetune", "test")]
    assert fitted["fits"][0]["a"] == pytest.approx(0.8, abs=0.02)
    (found,) = fitted["crossings"]
    assert found["against"] == "lstm" and found["low"] <= found["median"] <= found["high"]
    assert found["median"] == pytest.approx(13422, rel=0.3)  # the true n*
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fits_that_ended_still_improving_are_named_per_fraction() -> None:
    def cell(arm: str, fraction: float, steps: int, best: int | None) -> dict:
        return {"arm": arm, "settings": {"fraction": fraction}, "fit": {"steps": steps, "best_step": best}}

    results = [cell("ft", 1.0, 300, 300), cell("ft", 1.0, 300, 300), cell("ft", 1.0, 260, 200)]
    results[1]["fit"] |= {"steps": 315, "last_eval_step": 300}  # validated every 20 steps: 300 was the last
    # most of the arm's cells stopped early, but not the largest fraction's: it is still named
    results += [cell("ft", f, 100, 40) for f in (0.1, 0.1, 0.3, 0.3)]
    results += [cell("lstm", 1.0, 90, 60), cell("lstm", 0.1, 40, 40), cell("lstm", 0.1, 40, 20)]
    results += [{"arm": "probe", "fit": {}}, cell("lstm", 1.0, 40, None)]  # no fit, no validation
    counts = unfinished_fits(results)
    assert counts == {
        ("ft", 1.0): (2, 3),
        ("ft", 0.1): (0, 2),
        ("ft", 0.3): (0, 2),
        ("lstm", 1.0): (0, 1),
        ("lstm", 0.1): (1, 2),
    }
    note = unfinished_note(counts)
    assert "ft at fraction 1 (2 of 3 seeds)" in note
    assert "0.1" not in note and "0.3" not in note and "lstm" not in note  # half is not most
    assert unfinished_note({("ft", 0.1): (0, 3)}) == ""


def test_majority_note_names_each_split_only_for_accuracy() -> None:
    results = [
        {"arm": "probe"},
        {"arm": "lstm", "counts": {"majority_accuracy": {"close": 0.155, "remote": 0.063}}},
    ]
    assert majority_note(results, "accuracy") == (
        "Majority class (the most frequent train class for every row), accuracy: close 0.155, remote 0.063.\n\n"
    )
    assert majority_note(results, "macro_f1") == ""  # a majority rate is no floor for macro-F1
    assert majority_note([{"arm": "probe", "counts": {}}], "accuracy") == ""


def test_an_interrupted_grid_runs_only_the_missing_cells(tmp_path, texts, text_model, monkeypatch) -> None:
    config = _config(
        tmp_path / "curve", texts.path, text_model, seeds=[0], arms={"probe": ["model=$encoder"]}
    )
    curve(config)
    (tmp_path / "curve" / "probe" / "f1" / "seed0" / "result.json").unlink()
    ran = []
    real = curve_module._run_cell
    monkeypatch.setattr(curve_module, "_run_cell", lambda *a: ran.append(a[3:5]) or real(*a))
    curve(config)
    assert ran == [(1.0, 0)]


def test_a_cell_held_by_another_process_is_skipped_and_no_tables_are_written(
    tmp_path, texts, text_model
) -> None:
    config = _config(
        tmp_path / "curve", texts.path, text_model, seeds=[0], arms={"probe": ["model=$encoder"]}
    )
    held = tmp_path / "curve" / "probe" / "f0.5" / "seed0"
    free = tmp_path / "curve" / "probe" / "f1" / "seed0"
    # Another holder of the cell's lock (a second handle waits even within one process: flock is per
    # open file, so this stands for another process).
    with DirectoryLock(held):
        result = curve(config)
        me = f"{socket.gethostname()} {os.getpid()}"
        assert result["busy"] == [f"{held} ({me})"]
        assert not (held / "result.json").exists()  # left to its holder
        assert (free / "result.json").is_file()  # the free cell ran, and released its lock:
        assert DirectoryLock(free).acquire() is None
        assert not (tmp_path / "curve" / "curve.md").exists()

    # A lock file left by a process that is gone (killed mid-cell: the kernel dropped its flock) is taken
    # over; the run then writes the tables.
    gone = subprocess.Popen(["true"])
    gone.wait()
    (held / ".seqstruct.lock").write_text(f"{socket.gethostname()} {gone.pid}\n", encoding="utf-8")
    result = curve(config)
    assert "busy" not in result and (held / "result.json").is_file()
    assert (tmp_path / "curve" / "curve.md").is_file()


def test_budget_refuses_tasks_that_do_not_fit_on_train(texts) -> None:
    class Method:
        name, last_fit = "m", {}

    budget = Budget(Method(), 0.5, 0)
    with pytest.raises(ValueError, match="needs a classification task"):
        get_task("wordnet-supersense").run(texts, budget, 0, classifier="knn")


def test_curve_cli_errors_are_one_line(tmp_path, capsys, texts, text_model) -> None:
    config = tmp_path / "curve.yaml"
    config.write_text(
        f"task: go-synonym-search\ndata: {texts.path}\nencoder: {text_model}\n", encoding="utf-8"
    )
    code = main(["curve", str(config), f"output_dir={tmp_path / 'out'}", "seeds=[0]", "fractions=[1.0]"])
    assert code == 2
    assert "needs a classification task" in capsys.readouterr().err
    code = main(["curve", str(config), "fractions=[0.0]"])
    assert code == 2 and "fractions" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name", ["curve-wordnet.yaml", "curve-swissprot.yaml", "curve-swissprot-pretrained.yaml"]
)
def test_packaged_configs_name_their_arms(name: str) -> None:
    config = load_config(CurveConfig, PACKAGED_CONFIGS / name)
    arms = {arm.name: arm for arm in curve_module._check(config)}
    assert arms["lstm"].model == f"lstm:{config.encoder}" and arms["lstm"].mode == "finetune"
    assert arms["finetune"].model == config.encoder and arms["probe"].mode == "probe"
