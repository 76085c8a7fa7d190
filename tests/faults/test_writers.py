"""Two writers on one run directory (issue 20, item 8): while one trains, held inside an optimiser step,
the other is refused by name and writes nothing; the first then finishes as if alone. A finished run
survives a refused --overwrite byte for byte. The harness is tests/faults/harness.py.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from tests.faults.harness import (
    CONTRASTIVE_STEPS,
    CONTRASTIVE_WEIGHTS,
    HOLD,
    Fault,
    Runner,
    assert_same_run,
    config_file,
    contrastive_argv,
    hashes,
    output_dir_of,
    pretrain_argv,
    tail,
)
from tests.test_bad_inputs import FASTA_EXPECTED

# ---------------------------------------------------------------------------------------------------------
# Two writers on one run directory
# ---------------------------------------------------------------------------------------------------------


def _still(root: Path) -> dict[str, str]:
    """`root`'s files by hash, but TensorBoard's, which its writer thread may flush at any time."""
    return {k: v for k, v in hashes(root).items() if not k.startswith("tensorboard")}


def race(runner: Runner, first: list[str], second: list[str], tmp_path: Path) -> None:
    """Start `first` and hold it inside optimiser step 2 (directory locked, training begun); run `second`
    on the same directory: it must be refused by name, writing nothing; then let `first` finish."""
    out = output_dir_of(first)
    assert out.parent == tmp_path and output_dir_of(second) == out
    holder = runner.start(first, tmp_path / "first.txt", Fault(HOLD, 2))
    deadline = time.monotonic() + 120
    while not (tmp_path / "holding").exists():
        assert holder.is_alive() and time.monotonic() < deadline, tail(tmp_path / "first.txt")
        time.sleep(0.05)
    before = _still(out)
    assert runner.run(second, tmp_path / "second.txt") == 2
    said = (tmp_path / "second.txt").read_text()
    assert said.splitlines()[-1] == (
        f"seqstruct {second[0]}: error: {out} is being written by {socket.gethostname()} {holder.pid} "
        f"(lock {out / '.seqstruct.lock'}); wait for it to finish or choose another output directory"
    )
    assert "Traceback" not in said
    assert _still(out) == before
    (tmp_path / "go").touch()
    holder.join(300)
    assert holder.exitcode == 0, tail(tmp_path / "first.txt")


def _saved_setting(run: Path, key: str) -> Any:
    import yaml

    value: Any = yaml.safe_load((run / "config.yaml").read_text())
    for part in key.split("."):
        value = value[part]
    return value


def test_two_pretrain_writers_one_trains_the_other_is_refused(
    runner: Runner, protein_fasta: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    race(
        runner,
        pretrain_argv(protein_fasta, out),
        pretrain_argv(protein_fasta, out, **{"train.seed": 1}),
        tmp_path,
    )
    assert _saved_setting(out, "train.seed") == 0
    assert_same_run(reference, out)  # the winner's run, whole, as if alone


def test_two_contrastive_writers_one_trains_the_other_is_refused(
    runner: Runner, graph_inputs: dict[str, Path], references: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    first, second = contrastive_argv(graph_inputs, out), contrastive_argv(graph_inputs, out, temperature=0.1)
    race(runner, first, second, tmp_path)
    assert _saved_setting(out, "temperature") == 0.05
    assert_same_run(references["contrastive"], out, CONTRASTIVE_WEIGHTS, CONTRASTIVE_STEPS)


def test_two_distill_writers_one_trains_the_other_is_refused(runner: Runner, tmp_path: Path) -> None:
    from tests.data.test_go import tiny_go_content, write_go_sqlite
    from tests.experiments.test_recovery import overrides, write_tiny_teacher

    terms, edges, synonyms = tiny_go_content()
    texts = [t[1] for t in terms] + [t[3] for t in terms if t[3]] + [s[1] for s in synonyms]
    (tmp_path / "teacher").mkdir()
    inputs = {
        "go": write_go_sqlite(tmp_path / "GO.sqlite", terms, edges, synonyms),
        "teacher": write_tiny_teacher(tmp_path / "teacher", texts),
    }
    config = tmp_path / "distill.yaml"
    config.write_text("model:\n  favor:\n    num_features: 8\n", encoding="utf-8")
    out = tmp_path / "run"
    first = ["distill", str(config), *overrides(inputs, out)]
    second = ["distill", str(config), *overrides(inputs, out, **{"train.learning_rate": 1e-3})]
    race(runner, first, second, tmp_path)
    assert _saved_setting(out, "train.learning_rate") == 3e-3
    assert json.loads((out / "metrics.json").read_text())["steps"] == 6
    from safetensors.torch import load_file

    assert load_file(out / "model.safetensors")  # the student, whole


# ---------------------------------------------------------------------------------------------------------
# A refused --overwrite leaves a finished run as it was
# ---------------------------------------------------------------------------------------------------------


def test_a_refused_overwrite_leaves_a_finished_run_byte_for_byte(
    runner: Runner, protein_fasta: Path, reference: Path, tmp_path: Path
) -> None:
    """A bad setting (refused when the config loads) and a FASTA that is no text (refused once the run
    directory is locked and the inputs are read, after which an --overwrite would set the old run aside):
    every file of the finished run is unchanged."""
    from transformers.trainer_utils import SchedulerType

    out = tmp_path / "run"
    shutil.copytree(reference, out)
    before = hashes(out)
    binary = tmp_path / "binary.fasta"
    binary.write_bytes(b">x\n\x00\x01\x02\n")
    config = config_file(tmp_path)
    names = [s.value for s in SchedulerType]
    cases = [
        (
            ["train.lr_scheduler=bogus"],
            f"{config}: config key train.lr_scheduler must be one of {names}; got 'bogus'",
        ),
        ([f"data.fasta={binary}"], f"{binary}, line 2: binary data (a NUL byte), not text; {FASTA_EXPECTED}"),
    ]
    for extra, message in cases:
        log = tmp_path / f"{extra[0].split('=')[0]}.txt"
        assert runner.run([*pretrain_argv(protein_fasta, out), *extra, "--overwrite"], log) == 2
        assert log.read_text().splitlines()[-1] == f"seqstruct pretrain: error: {message}"
        assert hashes(out) == before
