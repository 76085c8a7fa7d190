"""Fault injection (issue 20, item 8): training runs killed with SIGKILL at chosen points (inside an
optimiser step, between the files of a checkpoint, during the final save), then resumed: the resumed run
must equal the uninterrupted one (weights to 1e-6, held-out metrics, the log). Two writers on one run
directory: one trains, the other is refused by name. A finished run survives a refused --overwrite byte
for byte.

Every run is a real process of `seqstruct.cli.main`, killed with SIGKILL by a hook installed in it (so the
point is chosen exactly, not by timing). The processes are forked from a multiprocessing forkserver that
has imported seqstruct once: a tiny run then costs its ~1 s of work instead of ~5 s of imports.
"""

from __future__ import annotations

import csv
import hashlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import tiny_overrides
from tests.test_bad_inputs import FASTA_EXPECTED

MAX_STEPS, SAVE_STEPS = 8, 2  # checkpoints 2, 4, 6, 8; two kept (save_total_limit), so 6 and 8 rotate
SETTINGS = {"train.max_steps": MAX_STEPS, "train.save_steps": SAVE_STEPS, "train.eval_steps": 4}
TOLERANCE = 1e-6
KILLED = -signal.SIGKILL  # a multiprocessing exit code: killed by that signal

# Where a run kills itself. A checkpoint is written by transformers 5's Trainer._save_checkpoint in this
# order: model.safetensors (then config, tokenizer, training_args.bin), optimizer.pt, scheduler.pt,
# rng_state.pth, trainer_state.json; then older checkpoints are rotated away. (The RNG state comes before
# trainer_state.json, so "after trainer_state.json, before the RNG state" is no point of this version.)
STEP = "step"  # inside optimiser step N: forward and backward done, the weights not yet updated
CHECKPOINT_PHASES = {  # at checkpoint-N
    "weights_half": "model.safetensors half written",
    "before_optimizer": "model.safetensors written, optimizer.pt not",
    "optimizer_half": "optimizer.pt half written",
    "before_scheduler": "optimizer.pt written, scheduler.pt not",
    "before_rng": "scheduler.pt written, rng_state.pth not",
    "before_state": "rng_state.pth written, trainer_state.json not",
    "state_half": "trainer_state.json half written",
    "before_rotate": "checkpoint-N complete, older checkpoints not yet rotated away",
    "mid_rotate": "an older checkpoint half deleted by the rotation (its trainer_state.json left)",
}
UNFINISHED = list(CHECKPOINT_PHASES)[: list(CHECKPOINT_PHASES).index("state_half") + 1]
FINAL_PHASES = {  # the run's own save after training (step 0)
    "final_weights_half": "the final model.safetensors half written in its temporary directory",
    "final_moved_weights": "model.safetensors moved into the run directory, the rest of the save not",
    "before_metrics": "the model saved, metrics.json not",
}
SET_ASIDE = "set_aside"  # --overwrite: the first entry of the old run moved aside, the rest not
HOLD = "hold"  # not a kill: wait at optimiser step N until the test says go (two writers)


@dataclass(frozen=True)
class Fault:
    """Where a child run is killed: `phase` (STEP, a CHECKPOINT_PHASES or FINAL_PHASES key, or HOLD) at
    optimiser step or checkpoint `step`."""

    phase: str
    step: int = 0

    def __str__(self) -> str:
        return self.phase if self.phase in FINAL_PHASES else f"{self.phase}-{self.step}"

    @property
    def first_complete(self) -> int:
        """The newest checkpoint complete when the run dies (0: none)."""
        if self.phase in FINAL_PHASES:
            return MAX_STEPS
        if self.phase == STEP:
            return (self.step - 1) // SAVE_STEPS * SAVE_STEPS
        return self.step - SAVE_STEPS if self.phase in UNFINISHED else self.step


# ---------------------------------------------------------------------------------------------------------
# The child process: hooks that kill it, then the command
# ---------------------------------------------------------------------------------------------------------


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _truncate_and_die(path: str | Path) -> None:
    """Leave `path` as a write cut off halfway would: its first half, then nothing."""
    os.truncate(path, os.path.getsize(path) // 2)
    _die()


def _arm(fault: Fault, root: Path) -> None:
    """Install the hook that kills this process at `fault` (a run writing to `root`)."""
    import torch
    import transformers.modeling_utils
    import transformers.trainer
    from transformers import Trainer, TrainerState

    checkpoint = f"checkpoint-{fault.step}"

    def in_checkpoint(path: str | os.PathLike) -> bool:
        return Path(path).parent.name == checkpoint

    if fault.phase in (STEP, HOLD):
        training_step = Trainer.training_step

        def step_hook(self: Trainer, *args: Any, **kwargs: Any) -> Any:
            if fault.phase == HOLD and self.state.global_step == fault.step - 1:
                (root.parent / "holding").touch()
                deadline = time.monotonic() + 120
                while not (root.parent / "go").exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
            loss = training_step(self, *args, **kwargs)
            if fault.phase == STEP and self.state.global_step == fault.step - 1:
                _die()
            return loss

        Trainer.training_step = step_hook

    files = {
        "before_optimizer": "optimizer.pt",
        "optimizer_half": "optimizer.pt",
        "before_scheduler": "scheduler.pt",
        "before_rng": "rng_state.pth",
    }
    if fault.phase in files:
        save = torch.save

        def save_hook(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
            if isinstance(f, str | os.PathLike) and in_checkpoint(f) and Path(f).name == files[fault.phase]:
                if fault.phase != "optimizer_half":
                    _die()
                save(obj, f, *args, **kwargs)
                _truncate_and_die(f)
            save(obj, f, *args, **kwargs)

        torch.save = save_hook

    if fault.phase in ("weights_half", "final_weights_half"):
        save_file = transformers.modeling_utils.safe_save_file

        def save_file_hook(tensors: Any, filename: str, *args: Any, **kwargs: Any) -> None:
            save_file(tensors, filename, *args, **kwargs)
            parent = Path(filename).parent
            final = parent.name.startswith(".save-") and parent.parent == root
            if in_checkpoint(filename) if fault.phase == "weights_half" else final:
                _truncate_and_die(filename)

        transformers.modeling_utils.safe_save_file = save_file_hook

    saved: list[str] = []  # the checkpoints whose trainer_state.json was written
    if fault.phase in ("before_state", "state_half", "before_rotate", "mid_rotate"):
        save_to_json = TrainerState.save_to_json

        def state_hook(self: TrainerState, json_path: str) -> None:
            if in_checkpoint(json_path) and fault.phase == "before_state":
                _die()
            save_to_json(self, json_path)
            if in_checkpoint(json_path) and fault.phase == "state_half":
                _truncate_and_die(json_path)
            saved.append(Path(json_path).parent.name)

        TrainerState.save_to_json = state_hook

    if fault.phase in ("before_rotate", "mid_rotate"):
        rotate = transformers.trainer.rotate_checkpoints

        def partial_rmtree(path: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
            for entry in sorted(Path(path).iterdir()):
                if entry.name != "trainer_state.json":
                    entry.unlink()
            _die()

        def rotate_hook(*args: Any, **kwargs: Any) -> None:
            if saved[-1:] == [checkpoint]:
                if fault.phase == "before_rotate":
                    _die()
                shutil.rmtree = partial_rmtree  # the rotation's deletion, cut off
                rotate(*args, **kwargs)
                _die()  # nothing was old enough to delete: killed after the rotation instead
            rotate(*args, **kwargs)

        transformers.trainer.rotate_checkpoints = rotate_hook

    if fault.phase in ("final_moved_weights", "before_metrics", SET_ASIDE):
        replace = os.replace

        def replace_hook(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            target = Path(dst)
            if target.parent == root / ".previous-run.partial" and fault.phase == SET_ASIDE:
                replace(src, dst, *args, **kwargs)
                _die()
            if target.parent == root and target.name == "metrics.json" and fault.phase == "before_metrics":
                _die()
            replace(src, dst, *args, **kwargs)
            if (
                target.parent == root
                and target.name == "model.safetensors"
                and fault.phase != "before_metrics"
            ):
                _die()

        os.replace = replace_hook


def _child(argv: list[str], log: str, fault: Fault | None, root: str) -> None:
    """One `seqstruct` command in this (forked) process, its output to `log`, `fault` armed."""
    descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    import torch

    from seqstruct.cli import main

    torch.set_num_threads(1)  # the same arithmetic in every run, whatever the machine
    if fault is not None:
        _arm(fault, Path(root).absolute())
    sys.exit(main(argv))


# ---------------------------------------------------------------------------------------------------------
# Running children, comparing runs
# ---------------------------------------------------------------------------------------------------------


def _output_dir(argv: list[str]) -> Path:
    return Path(next(a.split("=", 1)[1] for a in argv if a.startswith("output_dir=")))


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


@dataclass
class Runner:
    """Starts `seqstruct` commands as forked children of a forkserver holding the imports."""

    context: Any  # multiprocessing's forkserver context

    def start(self, argv: list[str], log: Path, fault: Fault | None = None) -> Any:
        process = self.context.Process(target=_child, args=(argv, str(log), fault, str(_output_dir(argv))))
        process.start()
        return process

    def finish(self, argv: list[str], log: Path, fault: Fault | None = None, timeout: float = 300) -> Any:
        """Run `argv` to its end: the ended process (its exitcode KILLED when `fault` struck)."""
        process = self.start(argv, log, fault)
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join()
            pytest.fail(f"{argv} ran past {timeout} s; its log:\n{_tail(log)}")
        return process

    def run(self, argv: list[str], log: Path) -> int:
        """The exit code of `argv`."""
        return self.finish(argv, log).exitcode

    def kill(self, argv: list[str], log: Path, fault: Fault) -> None:
        """Run `argv` until `fault` kills it; the run directory's lock is left naming the dead process."""
        process = self.finish(argv, log, fault)
        assert process.exitcode == KILLED, f"{fault} did not strike; log:\n{_tail(log)}"
        # A stale lock: the file still names the killed process; the next run must take it over.
        lock = _output_dir(argv) / ".seqstruct.lock"
        assert lock.read_text() == f"{socket.gethostname()} {process.pid}\n"


@pytest.fixture(scope="module")
def runner() -> Runner:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(
        ["seqstruct.cli", "seqstruct.training.mlm", "seqstruct.training.contrastive", "tests.test_faults"]
    )
    return Runner(context)


def _config(directory: Path) -> Path:
    path = directory / "run.yaml"
    path.write_text("model:\n  preset: tiny\n", encoding="utf-8")
    return path


def pretrain_argv(fasta: Path, out: Path, *flags: str, **settings: object) -> list[str]:
    overrides = tiny_overrides(fasta, out.absolute(), **{**SETTINGS, **settings})
    return ["pretrain", str(_config(out.parent)), *overrides, *flags]


def assert_same_weights(expected: Path, actual: Path, tolerance: float = TOLERANCE) -> None:
    """Every tensor of `actual` (a model.safetensors) within `tolerance` of `expected`'s."""
    from safetensors.torch import load_file

    a, b = load_file(expected), load_file(actual)
    assert a.keys() == b.keys()
    worst = {k: float((a[k] - b[k]).abs().max()) for k in a}
    assert max(worst.values()) <= tolerance, sorted(worst.items(), key=lambda kv: -kv[1])[:3]


def _log_rows(run: Path) -> list[tuple[str, ...]]:
    """(step, loss, learning rate) of every training log row and (step, eval loss) of every evaluation:
    the history a resumed run must carry over whole (its summary row's runtime differs, so is left out)."""
    with open(run / "log.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    keys = ("loss", "learning_rate"), ("eval_loss",)
    return [(r["step"], *(r[k] for k in ks)) for r in rows for ks in keys if all(r.get(k) for k in ks)]


def _entries(run: Path) -> list[str]:
    """What a run directory holds at its top (temporary files of interrupted writes would show here)."""
    return sorted(entry.name for entry in run.iterdir())


def assert_same_run(
    expected: Path, actual: Path, weights: tuple[str, ...] = ("model.safetensors",), steps: int = MAX_STEPS
) -> None:
    """`actual` finished as `expected` did: weights, held-out scores, steps, log history, and nothing left
    over at the top of the directory."""
    for name in weights:
        assert_same_weights(expected / name, actual / name)
    a = json.loads((expected / "metrics.json").read_text())
    b = json.loads((actual / "metrics.json").read_text())
    assert b["steps"] == a["steps"] == steps
    timing = ("runtime", "samples_per_second", "steps_per_second")  # of this evaluation, not its result
    scores = {k: v for k, v in a["heldout"].items() if k not in timing}
    assert {k: b["heldout"][k] for k in scores} == pytest.approx(scores, abs=TOLERANCE)
    assert _log_rows(actual) == _log_rows(expected) and len(_log_rows(expected)) >= 6
    assert _entries(actual) == _entries(expected)


def _recover(runner: Runner, argv: list[str], logs: Path, fault: Fault) -> None:
    """Finish a killed run as a user would: `--resume`; where no checkpoint was finished, that is refused
    by name and the run starts again (`--overwrite` when unfinished checkpoints are in the way). Each
    command's output goes to its own file in `logs`."""
    command, checkpoints = argv[0], _output_dir(argv) / "checkpoints"
    log = logs / "resumed.txt"
    if fault.first_complete == 0:
        assert runner.run([*argv, "--resume"], logs / "refused.txt") == 2
        unfinished = f" (only unfinished ones: ['checkpoint-{fault.step}'])" if fault.phase != STEP else ""
        assert (logs / "refused.txt").read_text().splitlines()[-1] == (
            f"seqstruct {command}: error: --resume: no checkpoint in {checkpoints}{unfinished}; "
            + ("start again with --overwrite" if unfinished else "run without --resume to start")
        )
        again = [*argv, "--overwrite"] if fault.phase != STEP else argv
        assert runner.run(again, log) == 0, _tail(log)
        return
    assert runner.run([*argv, "--resume"], log) == 0, _tail(log)
    text = log.read_text()
    # Resumed, not started again (which would end equal too): from the newest complete checkpoint.
    assert f"resuming from {checkpoints / f'checkpoint-{fault.first_complete}'}\n" in text
    if fault.phase in UNFINISHED:
        assert (
            f"{checkpoints / f'checkpoint-{fault.step}'} was not finished (no complete trainer_state.json): "
            f"set aside as incomplete-checkpoint-{fault.step}"
        ) in text
        assert (checkpoints / f"incomplete-checkpoint-{fault.step}").is_dir()
    if fault.phase in FINAL_PHASES:
        assert f"already reached max_steps={MAX_STEPS}: evaluating and saving only" in text


def _hashes(root: Path) -> dict[str, str]:
    """Every file and directory under `root`: a file by its SHA-256, a directory as "dir"."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


# ---------------------------------------------------------------------------------------------------------
# Pretraining killed and resumed
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(runner: Runner, protein_fasta: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted tiny run every killed one is compared with (not to be written to)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    log = out.parent / "log.txt"
    assert runner.run(pretrain_argv(protein_fasta, out), log) == 0, _tail(log)
    return out


# (a file of checkpoint-N a phase leaves whole, one it leaves unwritten); None where there is none.
WRITTEN = {
    "weights_half": (None, "optimizer.pt"),
    "before_optimizer": ("model.safetensors", "optimizer.pt"),
    "optimizer_half": ("model.safetensors", "scheduler.pt"),
    "before_scheduler": ("optimizer.pt", "scheduler.pt"),
    "before_rng": ("scheduler.pt", "rng_state.pth"),
    "before_state": ("rng_state.pth", "trainer_state.json"),
    "state_half": ("rng_state.pth", None),
    "before_rotate": ("trainer_state.json", None),
    "mid_rotate": ("trainer_state.json", None),
}
HALVED = {  # phases that cut a write off: the file, under the run and under the reference (full size)
    "weights_half": ("checkpoints/checkpoint-{step}/model.safetensors", "model.safetensors"),
    "optimizer_half": ("checkpoints/checkpoint-{step}/optimizer.pt", "checkpoints/checkpoint-8/optimizer.pt"),
    "state_half": ("checkpoints/checkpoint-{step}/trainer_state.json", None),
}


def assert_struck(out: Path, reference: Path, fault: Fault) -> None:
    """The killed run's directory is what `fault` should leave: the hook struck where it says."""
    numbers = [int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("checkpoint-*")]
    if fault.phase == STEP:
        assert max(numbers, default=0) == fault.first_complete
    elif fault.phase in CHECKPOINT_PHASES:
        last, missing = WRITTEN[fault.phase]
        checkpoint = out / "checkpoints" / f"checkpoint-{fault.step}"
        assert max(numbers) == fault.step and (last is None or (checkpoint / last).is_file())
        assert missing is None or not (checkpoint / missing).exists()
    if fault.phase in HALVED:
        path, full = HALVED[fault.phase]
        size = (out / path.format(step=fault.step)).stat().st_size
        assert full is None or size == (reference / full).stat().st_size // 2
    if fault.phase == "final_weights_half":
        (saving,) = out.glob(".save-*")
        assert (saving / "model.safetensors").stat().st_size == (
            reference / "model.safetensors"
        ).stat().st_size // 2
    if fault.phase in FINAL_PHASES:
        assert (out / "model.safetensors").is_file() == (fault.phase != "final_weights_half")
        assert not (out / "metrics.json").exists()


def kill_and_resume(runner: Runner, fasta: Path, reference: Path, tmp_path: Path, fault: Fault) -> None:
    out = tmp_path / "run"
    argv = pretrain_argv(fasta, out)
    runner.kill(argv, tmp_path / "killed.txt", fault)
    assert_struck(out, reference, fault)
    _recover(runner, argv, tmp_path, fault)
    assert_same_run(reference, out)


FAST = [
    Fault(STEP, 5),  # between checkpoints 4 and 6, in the middle of an optimiser step
    Fault("before_optimizer", 6),
    Fault("before_state", 6),
    Fault("final_weights_half"),  # its temporary directory is left behind, to be tidied by the resume
]


@pytest.mark.parametrize("fault", FAST, ids=str)
def test_a_run_killed_and_resumed_equals_the_uninterrupted_one(
    runner: Runner, protein_fasta: Path, reference: Path, tmp_path: Path, fault: Fault
) -> None:
    kill_and_resume(runner, protein_fasta, reference, tmp_path, fault)


def test_a_half_written_trainer_state_is_set_aside(
    runner: Runner, protein_fasta: Path, reference: Path, tmp_path: Path
) -> None:
    """The Trainer writes trainer_state.json in place: cut off mid-write, it exists but is no JSON, and the
    checkpoint counts as unfinished (it used to be taken as complete: a JSONDecodeError on --resume)."""
    kill_and_resume(runner, protein_fasta, reference, tmp_path, Fault("state_half", 6))


def test_a_run_killed_twice_writing_the_same_checkpoint_resumes(
    runner: Runner, protein_fasta: Path, reference: Path, tmp_path: Path
) -> None:
    """Preempted twice while saving checkpoint-6: the second unfinished checkpoint-6 is set aside too,
    under a name of its own (renaming it onto the first one's used to fail: Directory not empty)."""
    out, log = tmp_path / "run", tmp_path / "resumed.txt"
    argv = pretrain_argv(protein_fasta, out)
    runner.kill(argv, tmp_path / "killed.txt", Fault("before_state", 6))
    runner.kill([*argv, "--resume"], tmp_path / "killed-again.txt", Fault("before_optimizer", 6))
    assert runner.run([*argv, "--resume"], log) == 0, _tail(log)
    assert_same_run(reference, out)


def test_a_killed_overwrite_keeps_the_old_run_until_its_replacement_finishes(
    runner: Runner, protein_fasta: Path, reference: Path, tmp_path: Path
) -> None:
    """A finished run (seed 1) replaced with --overwrite by the reference's settings, killed at step 5:
    the old run waits whole in .previous-run; the resumed replacement equals the reference, and only then
    is the old run gone."""
    out, log = tmp_path / "run", tmp_path / "old.txt"
    assert runner.run(pretrain_argv(protein_fasta, out, **{"train.seed": 1}), log) == 0, _tail(log)
    old = _hashes(out)
    argv = pretrain_argv(protein_fasta, out)
    runner.kill([*argv, "--overwrite"], tmp_path / "killed.txt", Fault(STEP, 5))
    assert _hashes(out / ".previous-run") == {k: v for k, v in old.items() if k != ".seqstruct.lock"}
    _recover(runner, argv, tmp_path, Fault(STEP, 5))
    assert_same_run(reference, out)


def test_an_overwrite_killed_while_setting_the_old_run_aside_loses_none_of_it(
    runner: Runner, protein_fasta: Path, tmp_path: Path
) -> None:
    """--overwrite killed after moving one entry of the old run into .previous-run, then retried and
    killed again inside its training: the old run must still be whole in .previous-run. (Whatever entry
    the directory listing gives first: with metrics.json or model.safetensors moved, the rest in place is
    taken for an unfinished replacement; with both still in place, for a finished one: the old run is now
    gathered in .previous-run.partial and renamed at once, and the next lock holder moves a partial
    gathering back.)"""
    out, log = tmp_path / "run", tmp_path / "old.txt"
    assert runner.run(pretrain_argv(protein_fasta, out, **{"train.seed": 1}), log) == 0, _tail(log)
    old = {k: v for k, v in _hashes(out).items() if k != ".seqstruct.lock"}
    argv = [*pretrain_argv(protein_fasta, out), "--overwrite"]
    runner.kill(argv, tmp_path / "killed.txt", Fault(SET_ASIDE))
    runner.kill(argv, tmp_path / "retried.txt", Fault(STEP, 5))
    assert _hashes(out / ".previous-run") == old


def _random_faults(count: int, seed: int) -> list[Fault]:
    """`count` distinct kill points: every phase once at a random step where it happens, then random
    phases at random steps."""
    rng = random.Random(seed)
    phases = [STEP, *CHECKPOINT_PHASES, *FINAL_PHASES]

    def at_random_step(phase: str) -> Fault:
        if phase == STEP:
            return Fault(phase, rng.randint(1, MAX_STEPS))
        if phase in CHECKPOINT_PHASES:
            return Fault(phase, rng.choice(range(SAVE_STEPS, MAX_STEPS + 1, SAVE_STEPS)))
        return Fault(phase)

    faults = [at_random_step(phase) for phase in phases]
    while len(faults) < count:
        fault = at_random_step(rng.choice(phases))
        if fault not in faults:
            faults.append(fault)
    return faults


@pytest.mark.slow
@pytest.mark.parametrize("fault", [pytest.param(f, id=str(f)) for f in _random_faults(20, seed=8)])
def test_twenty_random_kill_points(
    runner: Runner, protein_fasta: Path, reference: Path, tmp_path: Path, fault: Fault
) -> None:
    kill_and_resume(runner, protein_fasta, reference, tmp_path, fault)


# ---------------------------------------------------------------------------------------------------------
# Structure-inducing and contrastive runs killed and resumed
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """60 real proteins in a ring with chords (FASTA, graph, prepared dataset) and a tiny seeded encoder."""
    from tests.training.test_contrastive import contrastive_inputs

    return contrastive_inputs(tmp_path_factory.mktemp("graph-inputs"))


def structure_argv(inputs: dict[str, Path], out: Path) -> list[str]:
    settings = {"structure.graph": inputs["graph"], "structure.weight": 0.5, "structure.negatives": 2}
    return pretrain_argv(inputs["fasta"], out, **settings, **{"data.max_length": 48})


CONTRASTIVE_STEPS = 4  # checkpoints 2 and 4


def contrastive_argv(inputs: dict[str, Path], out: Path, **extra: object) -> list[str]:
    from tests.training.test_contrastive import CONFIG, overrides

    return ["contrastive", str(CONFIG), *overrides(inputs, out.absolute(), **extra)]


CONTRASTIVE_WEIGHTS = ("model.safetensors", "1_LayerAttentionPooling/model.safetensors")


@pytest.fixture(scope="module")
def references(
    runner: Runner, graph_inputs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Uninterrupted structure-inducing and contrastive runs (not to be written to)."""
    root = tmp_path_factory.mktemp("references")
    for name, argv in (
        ("structure", structure_argv(graph_inputs, root / "structure")),
        ("contrastive", contrastive_argv(graph_inputs, root / "contrastive")),
    ):
        assert runner.run(argv, root / f"{name}.txt") == 0, _tail(root / f"{name}.txt")
    return {"structure": root / "structure", "contrastive": root / "contrastive"}


@pytest.mark.parametrize(
    ("kind", "fault"),
    [
        ("structure", Fault(STEP, 7)),
        pytest.param("structure", Fault("before_rng", 6), marks=pytest.mark.slow),
        ("contrastive", Fault(STEP, 3)),
        pytest.param("contrastive", Fault("before_state", 4), marks=pytest.mark.slow),
    ],
    ids=str,
)
def test_a_structure_inducing_or_contrastive_run_killed_and_resumed_equals_the_uninterrupted_one(
    runner: Runner,
    graph_inputs: dict[str, Path],
    references: dict[str, Path],
    tmp_path: Path,
    kind: str,
    fault: Fault,
) -> None:
    out = tmp_path / "run"
    argv = structure_argv(graph_inputs, out) if kind == "structure" else contrastive_argv(graph_inputs, out)
    runner.kill(argv, tmp_path / "killed.txt", fault)
    assert_struck(out, references[kind], fault)
    _recover(runner, argv, tmp_path, fault)
    if kind == "structure":
        assert_same_run(references[kind], out)
    else:
        assert_same_run(references[kind], out, CONTRASTIVE_WEIGHTS, CONTRASTIVE_STEPS)


# ---------------------------------------------------------------------------------------------------------
# Two writers on one run directory
# ---------------------------------------------------------------------------------------------------------


def _still(root: Path) -> dict[str, str]:
    """`root`'s files by hash, but TensorBoard's, which its writer thread may flush at any time."""
    return {k: v for k, v in _hashes(root).items() if not k.startswith("tensorboard")}


def race(runner: Runner, first: list[str], second: list[str], tmp_path: Path) -> None:
    """Start `first` and hold it inside optimiser step 2 (directory locked, training begun); run `second`
    on the same directory: it must be refused by name, writing nothing; then let `first` finish."""
    out = _output_dir(first)
    assert out.parent == tmp_path and _output_dir(second) == out
    holder = runner.start(first, tmp_path / "first.txt", Fault(HOLD, 2))
    deadline = time.monotonic() + 120
    while not (tmp_path / "holding").exists():
        assert holder.is_alive() and time.monotonic() < deadline, _tail(tmp_path / "first.txt")
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
    assert holder.exitcode == 0, _tail(tmp_path / "first.txt")


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
    before = _hashes(out)
    binary = tmp_path / "binary.fasta"
    binary.write_bytes(b">x\n\x00\x01\x02\n")
    config = _config(tmp_path)
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
        assert _hashes(out) == before
