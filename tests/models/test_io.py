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
