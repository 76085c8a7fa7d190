from __future__ import annotations

import pytest


def test_packaged_encoders_resolve_by_name(protein_model, monkeypatch, tmp_path) -> None:
    import shutil

    from seqstruct.evaluation import methods
    from seqstruct.models import io

    shutil.copytree(protein_model, tmp_path / "protein-test")
    (tmp_path / "not-a-model").mkdir()
    monkeypatch.setattr(io, "PACKAGED_MODELS", tmp_path)
    assert io.packaged_models() == {"protein-test": tmp_path / "protein-test"}
    assert "protein-test" in io.model_names() and "minilm" in io.model_names()
    assert io.resolve_model_path("protein-test") == tmp_path / "protein-test"
    assert methods.model_path("protein-test") == tmp_path / "protein-test"
    model, tokenizer = io.load_pretrained_mlm("protein-test")  # `model.pretrained=protein-test`
    assert model.config.hidden_size == 32 and tokenizer.mask_token == "<mask>"
    with pytest.raises(FileNotFoundError, match="protein-test"):  # the message names what exists
        io.resolve_model_path("protein-nope")


def test_a_model_directory_with_only_pickled_weights_is_refused_by_name(tmp_path) -> None:
    from seqstruct.models.io import resolve_model_path

    (tmp_path / "config.json").write_text('{"model_type": "bert"}', encoding="utf-8")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not a real pickle")
    with pytest.raises(FileNotFoundError) as err:
        resolve_model_path(tmp_path)
    assert str(err.value) == (
        f"{tmp_path}: holds no model.safetensors, only pickled weights (pytorch_model.bin); seqstruct loads "
        "weights from safetensors only (unpickling can run code). Convert the model where you trust it: "
        "from_pretrained(dir).save_pretrained(dir) writes model.safetensors"
    )
    (tmp_path / "model.safetensors").write_bytes(b"")  # beside safetensors, a pickle is simply never read
    assert resolve_model_path(tmp_path) == tmp_path
