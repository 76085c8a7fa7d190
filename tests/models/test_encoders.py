from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from seqstruct.data.tokenizers import build_protein_tokenizer
from seqstruct.models.encoders import build_encoder, count_parameters
from seqstruct.models.io import save_model_dir


@pytest.mark.parametrize(
    ("preset", "low", "high"), [("tiny", 1e4, 1e5), ("small", 8e6, 12e6), ("base", 80e6, 90e6)]
)
def test_preset_sizes(preset: str, low: float, high: float) -> None:
    model = build_encoder(preset, build_protein_tokenizer())
    assert low <= count_parameters(model) <= high
    assert model.config.position_embedding_type == "rotary"


def test_attn_implementation_passes_through_and_agrees() -> None:
    tokenizer = build_protein_tokenizer()
    torch.manual_seed(0)
    sdpa = build_encoder("tiny", tokenizer, attn_implementation="sdpa").eval()
    eager = build_encoder("tiny", tokenizer, attn_implementation="eager").eval()
    eager.load_state_dict(sdpa.state_dict())
    assert sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    batch = tokenizer(
        ["MKTAYIAKQRQISFVK", "MKV"], padding=True, return_tensors="pt", return_token_type_ids=False
    )
    with torch.no_grad():
        a, b = sdpa(**batch).logits, eager(**batch).logits
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(a[real], b[real], atol=1e-5, rtol=1e-5)


def test_long_protein_beyond_training_length() -> None:
    # Rotary positions: a protein longer than max_position_embeddings still runs.
    tokenizer = build_protein_tokenizer()
    model = build_encoder("tiny", tokenizer).eval()
    ids = tokenizer("ACDEFGHIKLMNPQRSTVWY" * 100, return_tensors="pt")["input_ids"]
    assert ids.shape[1] > model.config.max_position_embeddings
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=ids).logits).all()


def test_saved_model_loads_with_plain_transformers(tmp_path) -> None:
    """Save, then load in a fresh interpreter that never imports seqstruct: identical logits."""
    tokenizer = build_protein_tokenizer()
    torch.manual_seed(0)
    model = build_encoder("tiny", tokenizer).eval()
    save_model_dir(model, tokenizer, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json"}
    assert not any(p.suffix in (".bin", ".pt", ".pth") for p in tmp_path.iterdir())
    batch = tokenizer(["MKTAYIAKQR"], return_tensors="pt", return_token_type_ids=False)
    with torch.no_grad():
        expected = model(**batch).logits
    script = (
        "import sys, torch\n"
        "from transformers import AutoModelForMaskedLM, AutoTokenizer\n"
        f"path = {str(tmp_path)!r}\n"
        "model = AutoModelForMaskedLM.from_pretrained(path).eval()\n"
        "batch = AutoTokenizer.from_pretrained(path)(['MKTAYIAKQR'], return_tensors='pt', return_token_type_ids=False)\n"
        "with torch.no_grad():\n"
        "    torch.save(model(**batch).logits, sys.argv[1])\n"
        "assert 'seqstruct' not in sys.modules\n"
    )
    out = tmp_path / "logits.pt"
    result = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = torch.load(out, weights_only=True)
    assert torch.equal(expected, loaded)
