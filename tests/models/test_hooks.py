from __future__ import annotations

import threading

import pytest
from transformers import EsmModel, PreTrainedModel

import seqstruct  # noqa: F401  (installs the hooks)
from seqstruct.data.tokenizers import build_protein_tokenizer
from seqstruct.models import hooks
from seqstruct.models.encoders import build_encoder
from seqstruct.models.io import body_of_mlm_checkpoint, save_model_dir


def test_the_installed_transformers_fits_the_contract() -> None:
    assert hooks.contract_problems() == [] and hooks.trainer_contract_problems() == []
    for name in hooks.CONTRACT:  # every hooked method is ours now, the original kept beneath it
        assert hasattr(getattr(PreTrainedModel, name), "__wrapped__"), name


@pytest.mark.parametrize("name", sorted(hooks.CONTRACT))
def test_a_renamed_method_is_named(name: str, monkeypatch) -> None:
    monkeypatch.delattr(PreTrainedModel, name)
    problems = hooks.contract_problems()
    assert problems == [f"PreTrainedModel.{name} no longer exists"]
    with pytest.raises(RuntimeError, match=name):
        hooks.check_contract()


def test_a_renamed_loading_info_field_is_named(monkeypatch) -> None:
    from dataclasses import dataclass

    from transformers import modeling_utils

    @dataclass
    class LoadStateDictInfo:
        missing: set
        unexpected_keys: set

    monkeypatch.setattr(modeling_utils, "LoadStateDictInfo", LoadStateDictInfo)
    assert hooks.contract_problems() == ["transformers' LoadStateDictInfo no longer has ['missing_keys']"]


def test_a_changed_signature_and_an_unknown_major_version_are_named(monkeypatch) -> None:
    def initialize(self, other):  # the first parameter renamed
        return None

    monkeypatch.setattr(PreTrainedModel, "_initialize_weights", initialize)
    problems = hooks.contract_problems(version="6.0.0")
    assert any("6.0.0" in p for p in problems)
    assert any("_initialize_weights takes ['other']" in p for p in problems)


def test_ignored_keys_hold_in_their_own_context_only() -> None:
    seen: list[tuple] = []
    with hooks.ignoring_keys(unexpected=[r"^lm_head\."], missing=[r"^pooler\."]):
        assert hooks._IGNORED.get() == ((r"^lm_head\.",), (r"^pooler\.",))
        thread = threading.Thread(target=lambda: seen.append(hooks._IGNORED.get()))
        thread.start()
        thread.join()
    assert seen == [((), ())]  # another thread's loads report everything
    assert hooks._IGNORED.get() == ((), ())


def test_loading_an_mlm_checkpoints_body_reports_nothing_and_changes_no_class(tmp_path) -> None:
    tokenizer = build_protein_tokenizer()
    save_model_dir(build_encoder("tiny", tokenizer), tokenizer, tmp_path)
    before = (EsmModel._keys_to_ignore_on_load_unexpected, EsmModel._keys_to_ignore_on_load_missing)
    with body_of_mlm_checkpoint(tmp_path):
        assert (
            EsmModel._keys_to_ignore_on_load_unexpected,
            EsmModel._keys_to_ignore_on_load_missing,
        ) == before
        model, info = EsmModel.from_pretrained(tmp_path, output_loading_info=True)
    assert info["unexpected_keys"] == [] or not info["unexpected_keys"]
    assert not [k for k in info["missing_keys"] if not k.startswith("pooler.")] and not [
        k for k in info["missing_keys"] if k.startswith("pooler.")
    ]
    _, plain = EsmModel.from_pretrained(tmp_path, output_loading_info=True)  # outside: reported
    assert any(k.startswith("lm_head.") for k in plain["unexpected_keys"])


def test_a_renamed_trainer_sampler_is_named(monkeypatch) -> None:
    from transformers import Trainer

    monkeypatch.delattr(Trainer, "_get_train_sampler")
    assert hooks.trainer_contract_problems() == ["Trainer._get_train_sampler no longer exists"]


def test_a_changed_compute_loss_or_loss_scaling_is_named(monkeypatch) -> None:
    from transformers import Trainer

    monkeypatch.setattr(Trainer, "compute_loss", lambda self, model, inputs: None)
    monkeypatch.setattr(Trainer, "training_step", lambda self, model, inputs: None)
    assert hooks.trainer_contract_problems() == [
        "Trainer.compute_loss no longer takes (model, inputs, return_outputs, num_items_in_batch)",
        "Trainer.training_step no longer reads model_accepts_loss_kwargs",
    ]
