"""The fault-injection harness (issue 20, item 8) of the tests in tests/faults/.

Every run is a real process of `seqstruct.cli.main`, killed with SIGKILL by a hook installed in it (so the
point is chosen exactly, not by timing: inside an optimiser step, between the files of a checkpoint, during
the final save), or held at a step while a second writer tries its run directory. The processes are forked
from a multiprocessing forkserver that has imported seqstruct once: a tiny run then costs its ~1 s of work
instead of ~5 s of imports. Then what compares two runs (weights to 1e-6, held-out metrics, the log), and
the inputs and uninterrupted reference runs that both test modules compare with.
"""

from __future__ import annotations

import csv
import hashlib
import json
import multiprocessing
import os
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


def output_dir_of(argv: list[str]) -> Path:
    return Path(next(a.split("=", 1)[1] for a in argv if a.startswith("output_dir=")))


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


@dataclass
class Runner:
    """Starts `seqstruct` commands as forked children of a forkserver holding the imports."""

    context: Any  # multiprocessing's forkserver context

    def start(self, argv: list[str], log: Path, fault: Fault | None = None) -> Any:
        process = self.context.Process(target=_child, args=(argv, str(log), fault, str(output_dir_of(argv))))
        process.start()
        return process

    def finish(self, argv: list[str], log: Path, fault: Fault | None = None, timeout: float = 300) -> Any:
        """Run `argv` to its end: the ended process (its exitcode KILLED when `fault` struck)."""
        process = self.start(argv, log, fault)
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join()
            pytest.fail(f"{argv} ran past {timeout} s; its log:\n{tail(log)}")
        return process

    def run(self, argv: list[str], log: Path) -> int:
        """The exit code of `argv`."""
        return self.finish(argv, log).exitcode

    def kill(self, argv: list[str], log: Path, fault: Fault) -> None:
        """Run `argv` until `fault` kills it; the run directory's lock is left naming the dead process."""
        process = self.finish(argv, log, fault)
        assert process.exitcode == KILLED, f"{fault} did not strike; log:\n{tail(log)}"
        # A stale lock: the file still names the killed process; the next run must take it over.
        lock = output_dir_of(argv) / ".seqstruct.lock"
        assert lock.read_text() == f"{socket.gethostname()} {process.pid}\n"


def forkserver_runner() -> Runner:
    """A Runner whose forkserver has imported seqstruct's commands and this harness."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(
        ["seqstruct.cli", "seqstruct.training.mlm", "seqstruct.training.contrastive", "tests.faults.harness"]
    )
    return Runner(context)


def config_file(directory: Path) -> Path:
    path = directory / "run.yaml"
    path.write_text("model:\n  preset: tiny\n", encoding="utf-8")
    return path


def pretrain_argv(fasta: Path, out: Path, *flags: str, **settings: object) -> list[str]:
    overrides = tiny_overrides(fasta, out.absolute(), **{**SETTINGS, **settings})
    return ["pretrain", str(config_file(out.parent)), *overrides, *flags]


def assert_same_weights(expected: Path, actual: Path, tolerance: float = TOLERANCE) -> None:
    """Every tensor of `actual` (a model.safetensors) within `tolerance` of `expected`'s."""
    from safetensors.torch import load_file

    a, b = load_file(expected), load_file(actual)
    assert a.keys() == b.keys()
    worst = {k: float((a[k] - b[k]).abs().max()) for k in a}
    assert max(worst.values()) <= tolerance, sorted(worst.items(), key=lambda kv: -kv[1])[:3]


def log_rows(run: Path) -> list[tuple[str, ...]]:
    """(step, loss, learning rate) of every training log row and (step, eval loss) of every evaluation:
    the history a resumed run must carry over whole (its summary row's runtime differs, so is left out)."""
    with open(run / "log.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    keys = ("loss", "learning_rate"), ("eval_loss",)
    return [(r["step"], *(r[k] for k in ks)) for r in rows for ks in keys if all(r.get(k) for k in ks)]


def entries(run: Path) -> list[str]:
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
    assert log_rows(actual) == log_rows(expected) and len(log_rows(expected)) >= 6
    assert entries(actual) == entries(expected)


def recover(runner: Runner, argv: list[str], logs: Path, fault: Fault) -> None:
    """Finish a killed run as a user would: `--resume`; where no checkpoint was finished, that is refused
    by name and the run starts again (`--overwrite` when unfinished checkpoints are in the way). Each
    command's output goes to its own file in `logs`."""
    command, checkpoints = argv[0], output_dir_of(argv) / "checkpoints"
    log = logs / "resumed.txt"
    if fault.first_complete == 0:
        assert runner.run([*argv, "--resume"], logs / "refused.txt") == 2
        unfinished = f" (only unfinished ones: ['checkpoint-{fault.step}'])" if fault.phase != STEP else ""
        assert (logs / "refused.txt").read_text().splitlines()[-1] == (
            f"seqstruct {command}: error: --resume: no checkpoint in {checkpoints}{unfinished}; "
            + ("start again with --overwrite" if unfinished else "run without --resume to start")
        )
        again = [*argv, "--overwrite"] if fault.phase != STEP else argv
        assert runner.run(again, log) == 0, tail(log)
        return
    assert runner.run([*argv, "--resume"], log) == 0, tail(log)
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


def hashes(root: Path) -> dict[str, str]:
    """Every file and directory under `root`: a file by its SHA-256, a directory as "dir"."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


# ---------------------------------------------------------------------------------------------------------
# The runs every killed or raced one is compared with
# ---------------------------------------------------------------------------------------------------------


def pretrain_reference(runner: Runner, fasta: Path, root: Path) -> Path:
    """The uninterrupted tiny pretraining run (not to be written to)."""
    out = root / "run"
    log = root / "log.txt"
    assert runner.run(pretrain_argv(fasta, out), log) == 0, tail(log)
    return out


def structure_argv(inputs: dict[str, Path], out: Path) -> list[str]:
    settings = {"structure.graph": inputs["graph"], "structure.weight": 0.5, "structure.negatives": 2}
    return pretrain_argv(inputs["fasta"], out, **settings, **{"data.max_length": 48})


CONTRASTIVE_STEPS = 4  # checkpoints 2 and 4


def contrastive_argv(inputs: dict[str, Path], out: Path, **extra: object) -> list[str]:
    from tests.training.test_contrastive import CONFIG, overrides

    return ["contrastive", str(CONFIG), *overrides(inputs, out.absolute(), **extra)]


CONTRASTIVE_WEIGHTS = ("model.safetensors", "1_LayerAttentionPooling/model.safetensors")


def run_references(runner: Runner, inputs: dict[str, Path], root: Path) -> dict[str, Path]:
    """Uninterrupted structure-inducing and contrastive runs on `inputs` (not to be written to)."""
    runs = {
        "structure": structure_argv(inputs, root / "structure"),
        "contrastive": contrastive_argv(inputs, root / "contrastive"),
    }
    for name, argv in runs.items():
        log = root / f"{name}.txt"
        assert runner.run(argv, log) == 0, tail(log)
    return {name: root / name for name in runs}
