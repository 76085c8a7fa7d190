"""`import seqstruct` registers FAVOR+ and the LSTM with transformers whenever transformers comes in: already
imported, imported afterwards, or reached from inside one of the very modules the registration needs.
Each case runs in a fresh interpreter, since this one registered long ago."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel

import seqstruct
from seqstruct import registration
from seqstruct.attention.interface import _attach_on_build
from seqstruct.models import hooks
from seqstruct.models.lstm import LstmConfig, LstmForSequenceClassification

SRC = str(Path(seqstruct.__file__).parents[1])
HEAVY = ("torch", "transformers", "sentence_transformers")

# Loads a saved BERT with attn_implementation="favor" and a saved LSTM through the auto class, after
# PRELUDE; prints what shows that both registrations took, once.
CHECK = """
import json, sys, torch
from transformers import AutoModel, AutoModelForSequenceClassification
from seqstruct import registration
from seqstruct.attention.interface import BUFFER, _attach_on_build
from seqstruct.models import hooks
bert = AutoModel.from_pretrained(sys.argv[1] + "/bert", attn_implementation="favor").eval()
lstm = AutoModelForSequenceClassification.from_pretrained(sys.argv[1] + "/lstm").eval()
with torch.no_grad():
    hidden = bert(input_ids=torch.tensor([[2, 5, 7, 9, 3]])).last_hidden_state
print(json.dumps({
    "attention": bert.config._attn_implementation,
    "projections": sum(BUFFER in key for key in bert.state_dict()),
    "finite": bool(torch.isfinite(hidden).all()),
    "lstm": type(lstm).__name__,
    "post_init_hooks": hooks._post_init.count(_attach_on_build),
    "finders_left": sum(type(f).__name__ == "_Finder" for f in sys.meta_path),
}))
"""
EXPECTED = {
    "attention": "favor",
    "projections": 2,
    "finite": True,
    "lstm": "LstmForSequenceClassification",
    "post_init_hooks": 1,
    "finders_left": 0,
}


def fresh(script: str, *args: str) -> str:
    """stdout of `script` run by a fresh interpreter that imports this checkout's seqstruct."""
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT saved with sdpa attention, and an LSTM classifier."""
    root = tmp_path_factory.mktemp("registration")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    BertModel(config).save_pretrained(root / "bert")
    lstm = LstmConfig(vocab_size=33, embedding_size=8, hidden_size=6, num_labels=2)
    LstmForSequenceClassification(lstm).save_pretrained(root / "lstm")
    return root


def test_import_seqstruct_loads_no_model_library_and_waits() -> None:
    out = fresh(
        "import sys, seqstruct\n"
        "from seqstruct import registration\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules], registration.registered())\n"
    )
    assert out.strip() == "[] False"


@pytest.mark.parametrize(
    "prelude",
    [
        pytest.param("import seqstruct", id="seqstruct-then-transformers"),
        pytest.param(
            "import transformers.models.bert.modeling_bert\nimport seqstruct", id="transformers-first"
        ),
        # The registration is reached from inside seqstruct.models.lstm, which it needs whole.
        pytest.param("from seqstruct.models.lstm import LstmConfig", id="lstm-module-first"),
        pytest.param(
            "from seqstruct.attention.interface import performerize",
            id="interface-first",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "import seqstruct\nfrom sentence_transformers import SentenceTransformer",
            id="sentence-transformers",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_favor_and_lstm_load_in_a_fresh_process(prelude: str, saved_models: Path) -> None:
    assert json.loads(fresh(prelude + "\n" + CHECK, str(saved_models))) == EXPECTED


def test_an_auto_config_alone_knows_the_lstm(saved_models: Path) -> None:
    # AutoConfig imports configuration_auto only; modeling_utils (half-run otherwise) comes in afterwards.
    out = fresh(
        "import sys, seqstruct\n"
        "from transformers import AutoConfig\n"
        "print(type(AutoConfig.from_pretrained(sys.argv[1] + '/lstm')).__name__)\n",
        str(saved_models),
    )
    assert out.strip() == "LstmConfig"


@pytest.mark.slow
def test_two_threads_importing_transformers_at_once_neither_hang_nor_go_unregistered() -> None:
    # The thread that meets the other's import lock leaves the registration to it (registration.py).
    # transformers' lazy imports are not safe to race even without seqstruct (the ImportError "cannot
    # import name 'AutoConfig'" one time in three here), so a thread's error is allowed; a hang is not.
    script = """
import threading, seqstruct
from seqstruct import registration
barrier = threading.Barrier(2)
def auto_config():
    barrier.wait()
    from transformers import AutoConfig
def bert():
    barrier.wait()
    import transformers.models.bert.modeling_bert
threads = [threading.Thread(target=f) for f in (auto_config, bert)]
for t in threads: t.start()
for t in threads: t.join(timeout=240)
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
print(any(t.is_alive() for t in threads), registration.registered(),
      "seqstruct-lstm" in CONFIG_MAPPING, "favor" in ALL_ATTENTION_FUNCTIONS)
"""
    assert fresh(script).strip().splitlines()[-1] == "False True True True"


def test_registering_again_adds_nothing() -> None:
    registration.register()  # this process registered when the imports above ran
    before = hooks._post_init.count(_attach_on_build)
    registration.register()
    registration.register_when_imported()
    assert registration.registered() and before == 1
    assert hooks._post_init.count(_attach_on_build) == 1
    assert not any(type(f).__name__ == "_Finder" for f in sys.meta_path)
