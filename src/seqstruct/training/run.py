"""The Run: one training run's output directory and its life (fresh, resumed, overwritten or already
finished), shared by every training command so that they keep the same rules.

    with Run(config, resume, overwrite) as run:  # directory locked, settings checked; nothing deleted
    ...read and check the inputs...
    run.clear_stale()                      # an --overwrite'n run is set aside (PREVIOUS_RUN) only now
    trainer = ...(args=..., callbacks=run.callbacks(...))
    run.save_config(trainer)
    loss, runtime = run.train(trainer)     # or, for a run that already reached max_steps, its figures
    run.write_metrics(trainer, metrics)
                                           # leaving the block normally removes the run set aside

An overwritten run is never deleted before its replacement has finished: `clear_stale` moves it into
PREVIOUS_RUN inside the directory, out of the Trainer's sight, and it is removed when the new run's block
ends without an error. A new run that is interrupted leaves it there to be moved back by hand.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import Trainer, TrainerCallback, TrainerState

from seqstruct.config import config_dict, load_config, save_config
from seqstruct.io import LOCK_NAME, DirectoryLock, atomic_open, remove_temporary_files
from seqstruct.training.arguments import check_schedule, schedule_arguments
from seqstruct.training.callbacks import CsvLogCallback, TimeBudgetCallback, tensorboard_callback

logger = logging.getLogger(__name__)

# Settings a resumed run may change: where it is, how long it goes on, how its data is loaded.
RESUMABLE_CHANGES = ("output_dir", "train.max_steps", "train.max_minutes", "train.num_workers")
# What a resume may change to extend a run, but a finished run reused as it is may not: its figures are
# those of the budget it ran.
BUDGET = ("train.max_steps", "train.max_minutes")
# Where an --overwrite'n run waits, inside its directory, until the run replacing it has finished.
PREVIOUS_RUN = ".previous-run"
# Where set_aside gathers the old run before one rename makes it PREVIOUS_RUN: a kill in between leaves
# the old run split between here and the directory, and the next lock holder moves it back whole.
SETTING_ASIDE = ".previous-run.partial"


def _under_root(name: str) -> property:
    return property(lambda self: self.root / name, doc=f"ROOT/{name}")


@dataclass(frozen=True)
class RunPaths:
    """Where a training run writes, all under its output directory."""

    root: Path
    checkpoints = _under_root("checkpoints")  # the Trainer's checkpoint-N/ directories (resume points)
    tensorboard = _under_root("tensorboard")
    config = _under_root("config.yaml")  # the resolved settings, checked when the run resumes
    log_csv = _under_root("log.csv")
    metrics = _under_root("metrics.json")
    heldout_fasta = _under_root("heldout.fasta")


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"seed": 0}} -> {"train.seed": 0}."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[prefix + key] = value
    return flat


def check_same_run(paths: RunPaths, config: Any, finished: bool = False) -> None:
    """Refuse to resume under other settings: a new seed or FASTA, say, would draw another held-out split
    and put evaluation proteins into training. A `finished` run, to be reused rather than resumed, must
    also have run the step budget `config` asks for."""
    if not paths.config.exists():
        return
    # Read through the dataclass, so that sections added since the run began count as their defaults.
    saved = flatten(config_dict(load_config(type(config), paths.config)))
    current = flatten(config_dict(config))
    differs = sorted(
        k
        for k in saved.keys() | current.keys()
        if (k not in RESUMABLE_CHANGES or (finished and k in BUDGET)) and saved.get(k) != current.get(k)
    )
    if differs:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in differs)
        raise FileExistsError(
            f"{paths.root} holds a run with other settings ({detail}); resume it with its own config.yaml, "
            "start afresh (pretrain --overwrite, demo --fresh), or choose another output directory"
        )


def complete_checkpoints(directory: Path) -> tuple[str | None, list[Path]]:
    """(the newest checkpoint the Trainer finished writing, newer ones it did not). A checkpoint is
    complete once its trainer_state.json reads as JSON: the Trainer writes that file last (and in place),
    so one killed while saving lacks it or holds half of it, and resuming from it would fail."""
    if not directory.is_dir():
        return None, []
    found = sorted(
        (int(entry.name.split("-")[1]), entry)
        for entry in directory.iterdir()
        if entry.is_dir() and entry.name.startswith("checkpoint-") and entry.name.split("-")[1].isdigit()
    )
    incomplete: list[Path] = []
    for _, entry in reversed(found):
        if _readable_json(entry / "trainer_state.json"):
            return str(entry), incomplete
        incomplete.append(entry)
    return None, incomplete


def _readable_json(path: Path) -> bool:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, or cut off mid-write
        return False
    return True


def _set_incomplete_aside(incomplete: list[Path]) -> None:
    """Rename half-written checkpoints out of the Trainer's sight (kept, not deleted), warning by name; a
    name already taken by an earlier interruption at the same step gets a number."""
    for entry in incomplete:
        target = entry.with_name(f"incomplete-{entry.name}")
        number = 2
        while target.exists():
            target = entry.with_name(f"incomplete-{entry.name}-{number}")
            number += 1
        logger.warning(
            "%s was not finished (no complete trainer_state.json): set aside as %s", entry, target.name
        )
        entry.rename(target)


def resumable_checkpoint(directory: Path) -> str | None:
    """The newest complete checkpoint in `directory`, newer unfinished ones set aside with a warning (for
    fits that resume by themselves, like fine-tuning in a work directory)."""
    last, incomplete = complete_checkpoints(directory)
    _set_incomplete_aside(incomplete)
    return last


def finished_outputs(paths: RunPaths) -> list[str]:
    """What a finished run left in its directory (its metrics, its weights), whatever its checkpoints."""
    names = ("metrics.json", "model.safetensors", "model.safetensors.index.json")
    return [name for name in names if (paths.root / name).is_file()]


def is_finished(paths: RunPaths) -> bool:
    """Metrics and weights both written: what a command's last steps leave (distill writes metrics.json
    early too, so metrics alone do not say a run ended)."""
    found = finished_outputs(paths)
    return "metrics.json" in found and len(found) > 1


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink()


def _run_entries(paths: RunPaths) -> list[Path]:
    """What the directory holds but its lock and a run set aside."""
    if not paths.root.is_dir():
        return []
    return [e for e in paths.root.iterdir() if e.name not in (PREVIOUS_RUN, SETTING_ASIDE, LOCK_NAME)]


def set_aside(paths: RunPaths) -> None:
    """Move what the directory holds (but its lock) into PREVIOUS_RUN, where it stays until the new run
    finishes. A PREVIOUS_RUN already there holds the last finished run, which an interrupted replacement
    had set aside: that one is kept, and the unfinished replacement in the directory is what goes."""
    previous = paths.root / PREVIOUS_RUN
    entries = _run_entries(paths)
    if previous.is_dir() and not is_finished(paths):
        for entry in entries:
            _remove(entry)
        logger.warning("%s: unfinished run removed; the run it replaced stays in %s", paths.root, previous)
        return
    gathering = paths.root / SETTING_ASIDE
    gathering.mkdir()  # `tidy` has emptied any earlier one
    for entry in entries:
        os.replace(entry, gathering / entry.name)
    if previous.is_dir():
        shutil.rmtree(previous)  # superseded by the finished run just gathered
    os.replace(gathering, previous)
    logger.info("%s: the run being replaced is kept in %s until this one finishes", paths.root, previous)


def tidy(paths: RunPaths) -> None:
    """What interrupted writers left: temporary files, and a PREVIOUS_RUN whose replacement finished
    (the process was killed between its last write and removing it)."""
    remove_temporary_files(paths.root)
    gathering = paths.root / SETTING_ASIDE
    if gathering.is_dir():  # killed while setting a run aside, before the new run wrote anything
        for entry in gathering.iterdir():
            os.replace(entry, paths.root / entry.name)
        gathering.rmdir()
        logger.warning("%s: put back the run an interrupted --overwrite was setting aside", paths.root)
    previous = paths.root / PREVIOUS_RUN
    if previous.is_dir() and is_finished(paths):
        logger.info("%s: removing %s, the run this finished one replaced", paths.root, previous)
        shutil.rmtree(previous)
    elif previous.is_dir():
        logger.warning(
            "%s holds, in %s, the run an unfinished --overwrite replaced: move its files back to restore it",
            paths.root,
            previous,
        )


def resume_point(paths: RunPaths, config: Any, resume: bool, overwrite: bool) -> tuple[str | None, bool]:
    """(checkpoint to resume from, whether an old run must be cleared before training).

    Nothing is deleted here: clearing waits until the new run's inputs have been read and checked. A run
    directory holding checkpoints or a finished run's outputs is refused without `resume` or `overwrite`.
    """
    last, incomplete = complete_checkpoints(paths.checkpoints)
    finished = finished_outputs(paths)
    if resume:
        if last is None:
            unfinished = f" (only unfinished ones: {[e.name for e in incomplete]})" if incomplete else ""
            start = "start again with --overwrite" if incomplete else "run without --resume to start"
            raise FileNotFoundError(f"--resume: no checkpoint in {paths.checkpoints}{unfinished}; {start}")
        check_same_run(paths, config)
        _set_incomplete_aside(incomplete)
        logger.info("resuming from %s", last)
        return last, False
    if (last is not None or incomplete or finished) and not overwrite:
        held = (
            f"checkpoints ({last or incomplete[0]})"
            if last or incomplete
            else f"a finished run ({', '.join(finished)})"
        )
        raise FileExistsError(
            f"{paths.root} already holds {held}; pass --resume to continue that run, "
            "--overwrite to start again, or choose another output_dir"
        )
    return None, bool(last or incomplete or finished)


def completed_state(checkpoint: str | None, max_steps: int) -> TrainerState | None:
    """The checkpoint's trainer state if it already reached `max_steps`, else None."""
    if checkpoint is None:
        return None
    state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
    return state if state.global_step >= max_steps else None


class Run:
    """One run of a training command in `config.output_dir` (a config with `output_dir` and `train`).

    Creating it checks the schedule settings and finds where training starts: afresh, from the last
    checkpoint (`resume`, same settings only), or nowhere at all when that checkpoint already reached
    `max_steps` (`done`: the command then only evaluates and saves; transformers 5 would train one step
    past max_steps when resuming a finished run). An old run is refused unless `resume` or `overwrite`.
    """

    def __init__(self, config: Any, resume: bool = False, overwrite: bool = False, lock: bool = True) -> None:
        self.config = config
        self.paths = RunPaths(Path(config.output_dir))
        check_schedule(config.train)  # a bad setting fails now, not after the data is read
        if self.paths.root.exists() and not self.paths.root.is_dir():
            raise NotADirectoryError(f"output_dir {self.paths.root} is a file, not a directory")
        # One writer per run directory; under torchrun only rank 0 holds it (the ranks are one run).
        main = os.environ.get("RANK", "0") == "0"
        self.main = main
        self.lock = DirectoryLock(self.paths.root, LOCK_NAME) if lock and main else None
        if self.lock is not None:
            self.lock.__enter__()
        try:
            if self.lock is not None:  # only the lock's holder may take what a dead writer left
                tidy(self.paths)
            self.checkpoint, self._stale = resume_point(self.paths, config, resume, overwrite)
            # Under --overwrite whatever the directory holds is the old run's (its log, its held-out set),
            # checkpoints or not: all of it is set aside, so the new run's files are not mixed with it.
            self._stale = self._stale or (overwrite and not resume and bool(_run_entries(self.paths)))
        except BaseException:
            self.close()
            raise
        self.done = completed_state(self.checkpoint, config.train.max_steps)
        if self.done is not None:
            logger.info(
                "%s already reached max_steps=%d: evaluating and saving only",
                self.checkpoint,
                config.train.max_steps,
            )
        self.budget = TimeBudgetCallback(config.train.max_minutes)

    def close(self) -> None:
        """Release the run directory (also on leaving a `with Run(...)` block)."""
        if self.lock is not None:
            self.lock.release()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        try:
            previous = self.paths.root / PREVIOUS_RUN
            if exc_type is None and self.main and previous.is_dir():
                shutil.rmtree(previous)  # the run that replaced it has finished
        finally:
            self.close()

    def previous_metrics(self) -> dict[str, Any]:
        """The metrics.json of the run being continued (resumed or finished), {} for a fresh one."""
        if self.checkpoint is None or not self.paths.metrics.exists():
            return {}
        return json.loads(self.paths.metrics.read_text(encoding="utf-8"))

    def clear_stale(self) -> None:
        """Set an overwritten run aside (PREVIOUS_RUN, removed once this run finishes): call once the new
        run's inputs have all been read and checked."""
        if not self._stale:
            return
        # Rank 0 alone moves files; the other ranks write nothing before training's first collective
        # step, which rank 0 reaches only after this.
        if self.main:
            set_aside(self.paths)
        self._stale = False

    def arguments(self, evaluate: bool) -> dict[str, Any]:
        """TrainingArguments keywords from the config's `train` section, checkpoints under the run."""
        return schedule_arguments(self.config.train, str(self.paths.checkpoints), evaluate)

    def callbacks(self, *extra: TrainerCallback) -> list[TrainerCallback]:
        """CSV log, the command's own callbacks, the wall-clock budget, TensorBoard under the run."""
        return [
            CsvLogCallback(self.paths.log_csv),
            *extra,
            self.budget,
            tensorboard_callback(self.paths.tensorboard),
        ]

    def save_config(self, trainer: Trainer) -> None:
        if trainer.is_world_process_zero():
            save_config(self.config, self.paths.config)

    def train(self, trainer: Trainer) -> tuple[float | None, float | None]:
        """Train (resuming from the checkpoint, if any); (training loss, runtime in seconds). A finished
        run is not trained again: its state is restored and its earlier figures returned."""
        if self.done is None:
            output = trainer.train(resume_from_checkpoint=self.checkpoint)
            return output.training_loss, output.metrics.get("train_runtime")
        trainer.state = self.done
        previous = self.previous_metrics()
        return previous.get("train_loss"), previous.get("train_runtime_s")

    def trained_here(self) -> bool:
        """Whether this process trained from scratch (no resume): its runtime covers every step."""
        return self.checkpoint is None and self.done is None

    def write_metrics(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        if trainer.is_world_process_zero():
            with atomic_open(self.paths.metrics, "w") as handle:
                json.dump(metrics, handle, indent=2)


def final_evaluation(trainer: Trainer) -> dict[str, float]:
    """The held-out metrics at the last step, without their `eval_` prefix: reused when the Trainer's
    schedule just computed them."""
    last = trainer.state.log_history[-2:]  # [..., eval row, train summary row] when eval fell on the end
    for row in last:
        if "eval_loss" in row and row.get("step") == trainer.state.global_step:
            found = row
            break
    else:
        found = trainer.evaluate()
    return {k.removeprefix("eval_"): v for k, v in found.items() if k.startswith("eval_")}
