"""Fault injection (issue 20, item 8): training runs killed with SIGKILL at chosen points (inside an
optimiser step, between the files of a checkpoint, during the final save), then resumed: the resumed run
must equal the uninterrupted one (weights to 1e-6, held-out metrics, the log). The harness that kills them
is tests/faults/harness.py; two writers on one run directory are test_writers.py.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.faults.harness import (
    CHECKPOINT_PHASES,
    CONTRASTIVE_STEPS,
    CONTRASTIVE_WEIGHTS,
    FINAL_PHASES,
    MAX_STEPS,
    SAVE_STEPS,
    SET_ASIDE,
    STEP,
    Fault,
    Runner,
    assert_same_run,
    contrastive_argv,
    hashes,
    pretrain_argv,
    recover,
    structure_argv,
    tail,
)

# ---------------------------------------------------------------------------------------------------------
# Pretraining killed and resumed
# ---------------------------------------------------------------------------------------------------------


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
    recover(runner, argv, tmp_path, fault)
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
    assert runner.run([*argv, "--resume"], log) == 0, tail(log)
    assert_same_run(reference, out)


def test_a_killed_overwrite_keeps_the_old_run_until_its_replacement_finishes(
    runner: Runner, protein_fasta: Path, reference: Path, tmp_path: Path
) -> None:
    """A finished run (seed 1) replaced with --overwrite by the reference's settings, killed at step 5:
    the old run waits whole in .previous-run; the resumed replacement equals the reference, and only then
    is the old run gone."""
    out, log = tmp_path / "run", tmp_path / "old.txt"
    assert runner.run(pretrain_argv(protein_fasta, out, **{"train.seed": 1}), log) == 0, tail(log)
    old = hashes(out)
    argv = pretrain_argv(protein_fasta, out)
    runner.kill([*argv, "--overwrite"], tmp_path / "killed.txt", Fault(STEP, 5))
    assert hashes(out / ".previous-run") == {k: v for k, v in old.items() if k != ".seqstruct.lock"}
    recover(runner, argv, tmp_path, Fault(STEP, 5))
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
    assert runner.run(pretrain_argv(protein_fasta, out, **{"train.seed": 1}), log) == 0, tail(log)
    old = {k: v for k, v in hashes(out).items() if k != ".seqstruct.lock"}
    argv = [*pretrain_argv(protein_fasta, out), "--overwrite"]
    runner.kill(argv, tmp_path / "killed.txt", Fault(SET_ASIDE))
    runner.kill(argv, tmp_path / "retried.txt", Fault(STEP, 5))
    assert hashes(out / ".previous-run") == old


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
    recover(runner, argv, tmp_path, fault)
    if kind == "structure":
        assert_same_run(references[kind], out)
    else:
        assert_same_run(references[kind], out, CONTRASTIVE_WEIGHTS, CONTRASTIVE_STEPS)
