"""Throughput benchmarks (never run by the fast tests): pretraining tokens/s on the HF Trainer,
embedding sequences/s of `encode()` against plain transformers inference of the same model, and
`encode()` against sentence-transformers' own `SentenceTransformer.encode` of the same model object
(texts and proteins), each pair in one run.
"""

from __future__ import annotations

import itertools
import logging
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from transformers import ProgressCallback, set_seed

from seqstruct.bench.common import StepTimer, machine_info, write_json
from seqstruct.config import DataConfig, ModelConfig, PretrainConfig, TrainConfig
from seqstruct.data.fasta import iter_fasta
from seqstruct.data.pretraining import sequence_dataset
from seqstruct.data.tokenizers import build_protein_tokenizer
from seqstruct.models.embed import encode, load_encoder
from seqstruct.models.encoders import build_encoder
from seqstruct.models.io import save_model_dir
from seqstruct.models.pooling import pooling_name
from seqstruct.training.mlm import build_trainer

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)


@dataclass
class ThroughputConfig:
    """`seqstruct bench throughput`: pretraining tokens/s, then encode() against plain transformers."""

    fasta: str | Path  # proteins to train and embed on
    preset: str = "small"  # model architecture, seed 0, untrained
    lengths: Sequence[int] = (512, 1024)  # max_length of each pretraining case, run in this order
    batch_size: int = 8  # pretraining rows a step
    steps: int = 10  # timed steps (after 2 warm-up steps)
    precision: str = "auto"  # auto | fp32 | bf16
    embed_n: int = 512  # proteins embedded per repeat (0: no embedding benchmark)
    embed_batch_size: int = 32
    embed_max_length: int = 1024
    repeats: int = 3  # embedding runs per side, alternated
    attentions: Sequence[str] = ("sdpa",)  # attention implementations compared at each length


@dataclass
class PretrainThroughput:
    preset: str
    attention: str
    max_length: int
    batch_size: int
    bf16: bool
    steps_timed: int
    tokens_per_second: float
    peak_rss_gib: float  # the process's peak resident memory so far (a run's largest case dominates)


def pretrain_throughput(
    fasta: Path,
    preset: str,
    max_length: int,
    batch_size: int,
    steps: int,
    precision: str = "auto",
    attention: str = "sdpa",
) -> PretrainThroughput:
    """Train `steps` steps with pretraining's own Trainer on proteins at least `max_length` long (so
    every batch is full), timing each step after two warm-up steps."""
    tokenizer = build_protein_tokenizer()
    records = [r for r in iter_fasta(fasta) if len(r.sequence) >= max_length - 2]
    if not records:
        raise ValueError(f"{fasta}: no protein of at least {max_length - 2} residues to fill batches")
    timer = StepTimer(warmup=2)
    with tempfile.TemporaryDirectory() as tmp:
        config = PretrainConfig(
            output_dir=tmp,
            model=ModelConfig(preset=preset, attention=attention),
            data=DataConfig(fasta=str(fasta), max_length=max_length),
            train=TrainConfig(
                max_steps=steps + timer.warmup,
                batch_size=batch_size,
                save_steps=10**9,
                precision=precision,
                warmup_steps=0,
            ),
        )
        set_seed(0)
        model = build_encoder(preset, tokenizer, attention, favor=config.model.favor)
        trainer = build_trainer(config, model, tokenizer, sequence_dataset(records, max_length))
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(timer)
        trainer.train()
        bf16 = trainer.args.bf16
    tokens = batch_size * max_length * len(timer.times)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return PretrainThroughput(
        preset, attention, max_length, batch_size, bf16, len(timer.times), tokens / sum(timer.times), peak
    )


@torch.inference_mode()
def plain_transformers_embed(
    model: Any, tokenizer: Any, sequences: list[str], batch_size: int, max_length: int
) -> None:
    """What a user writes without seqstruct: fixed-size batches in input order, padded, mean over the mask."""
    for start in range(0, len(sequences), batch_size):
        batch = tokenizer(
            sequences[start : start + batch_size],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
            return_token_type_ids=False,
        )
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        (hidden * mask).sum(1) / mask.sum(1)


def embed_throughput(
    fasta: Path, preset: str, n: int, batch_size: int, max_length: int, repeats: int
) -> dict[str, Any]:
    """Sequences/s of seqstruct's `encode` and of plain inference, alternated `repeats` times in one run."""
    tokenizer = build_protein_tokenizer()
    sequences = [r.sequence for r in itertools.islice(iter_fasta(fasta), n)]
    with tempfile.TemporaryDirectory() as tmp:
        set_seed(0)
        save_model_dir(build_encoder(preset, tokenizer), tokenizer, Path(tmp))
        model, loaded_tokenizer = load_encoder(tmp)
    budget = batch_size * max_length
    ours, plain = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        encode(
            model,
            loaded_tokenizer,
            sequences,
            batch_size=batch_size,
            max_tokens=budget,
            max_length=max_length,
        )
        ours.append(len(sequences) / (time.perf_counter() - start))
        start = time.perf_counter()
        plain_transformers_embed(model, loaded_tokenizer, sequences, batch_size, max_length)
        plain.append(len(sequences) / (time.perf_counter() - start))
    ratios = [a / b for a, b in zip(ours, plain, strict=True)]
    return {
        "preset": preset,
        "sequences": len(sequences),
        "batch_size": batch_size,
        "max_length": max_length,
        "encode_seq_per_s": statistics.median(ours),
        "plain_seq_per_s": statistics.median(plain),
        "ratio_median": statistics.median(ratios),
        "ratios": ratios,
    }


def throughput_report(config: ThroughputConfig, output: str | Path | None = None) -> str:
    """Run both benchmarks (embedding only when embed_n > 0); return markdown tables (and write the
    raw figures as JSON to `output`). Lengths run in the order given, so put the longest last: the
    peak-memory column is the process's running maximum."""
    c = config
    rows = [
        pretrain_throughput(c.fasta, c.preset, n, c.batch_size, c.steps, c.precision, attention)
        for n in c.lengths
        for attention in c.attentions
    ]
    lines = [
        "| preset | attention | max_length | batch | bf16 | steps timed | pretraining tokens/s | peak RSS so far (GiB) |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {r.preset} | {r.attention} | {r.max_length} | {r.batch_size} | {r.bf16} | {r.steps_timed} | "
            f"{r.tokens_per_second:.0f} | {r.peak_rss_gib:.1f} |"
            for r in rows
        ),
    ]
    e = None
    if c.embed_n > 0:
        e = embed_throughput(c.fasta, c.preset, c.embed_n, c.embed_batch_size, c.embed_max_length, c.repeats)
        lines += [
            "",
            "| preset | proteins | batch | max_length | `encode` seq/s | plain transformers seq/s | ratio (median of pairs) |",
            "|---|---|---|---|---|---|---|",
            f"| {e['preset']} | {e['sequences']} | {e['batch_size']} | {e['max_length']} | {e['encode_seq_per_s']:.1f} | "
            f"{e['plain_seq_per_s']:.1f} | {e['ratio_median']:.2f} |",
        ]
    if output:
        write_json(output, {"pretrain": [vars(r) for r in rows], "embed": e})
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# encode() against sentence-transformers' own encode of the same model
# ---------------------------------------------------------------------------------------------------

DEFAULT_TEXTS = Path("data/prepared/go-text")  # where `seqstruct data prepare go-text` puts it in a checkout
AGREE_ATOL = 1e-4  # largest |ours - theirs| still counted as the same vectors (fp32 noise of other padding)


@dataclass
class EncodeBenchConfig:
    """`seqstruct bench encode`: seqstruct's `encode()` against `SentenceTransformer.encode`."""

    text_model: str = "minilm"  # a sentence-transformers or HF text model directory, or `minilm`
    texts: str | None = None  # prepared text dataset, GO SQLite or .txt/.jsonl (None: see benchmark_texts)
    text_n: int = 512  # texts embedded per timed run (0: no text cases)
    text_max_length: int | None = None  # tokens per text (None: the model's own max_seq_length)
    protein_model: str | None = None  # a saved seqstruct model directory (None: a fresh `preset` model)
    preset: str = "small"  # architecture of the fresh protein model, seed 0, untrained
    fasta: str | None = None  # proteins (None: the packaged Swiss-Prot sample); the first protein_n
    protein_n: int = 256  # proteins embedded per timed run (0: no protein cases)
    protein_max_length: int = 1024  # tokens per protein, <cls> and <eos> included
    batch_sizes: tuple[int, ...] = (32,)  # each case runs at each batch size, the same for both sides
    poolings: tuple[str, ...] = ("mean", "layer-attention")  # layer-attention untrained, same on both sides
    repeats: int = 5  # timed runs per side, alternated A B A B after one warm-up run each
    device: str | None = None  # None: cuda when available, else cpu


def machine_and_libraries(device: str) -> dict[str, Any]:
    """The shared machine description, with the transformers and sentence-transformers versions and, on
    CUDA, the GPU's name."""
    import sentence_transformers
    import transformers

    info = machine_info(device) | {
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def benchmark_texts(source: str | Path | None, n: int) -> tuple[list[str], str]:
    """The first `n` texts of `source` and a description of where they came from.

    source: a prepared text dataset (its `text` column, splits in stored order), a GO SQLite (.sqlite:
    term definitions in GO id order) or a .txt/.jsonl file (`seqstruct.data.inputs.read_inputs`). None: the
    prepared go-text dataset at data/prepared/go-text, else the GO SQLite seqstruct finds
    ($SEQSTRUCT_GO_SQLITE or data/external/GO.sqlite); the package ships no texts of its own.
    """
    from seqstruct.data.inputs import read_inputs
    from seqstruct.data.prepared import load_prepared
    from seqstruct.data.sources.go import read_terms, resolve_go_path

    if source is None:
        if (DEFAULT_TEXTS / "dataset.json").is_file():
            source = DEFAULT_TEXTS
        else:
            try:
                source = resolve_go_path()
            except FileNotFoundError as err:
                raise FileNotFoundError(
                    f"no texts to benchmark: no prepared dataset at {DEFAULT_TEXTS}, and {err}. Give "
                    "--texts: a prepared text dataset, a GO SQLite, or a .txt/.jsonl file"
                ) from None
    path = Path(source)
    if path.is_dir():
        prepared = load_prepared(path)
        if prepared.info.kind != "text":
            raise ValueError(f"{path}: a {prepared.info.kind} dataset; expected a text one")
        texts: list[str] = []
        for split in prepared.splits.values():
            texts += split[: n - len(texts)]["text"]
            if len(texts) >= n:
                break
        what = f"{path} (dataset {prepared.info.name!r}, 'text' column, splits in order)"
    elif path.suffix in (".sqlite", ".db"):
        texts = [term.definition for term in read_terms(path) if term.definition][:n]
        what = f"{path} (GO term definitions, in GO id order)"
    else:
        texts = read_inputs(path)[1][:n]
        what = str(path)
    if not texts:
        raise ValueError(f"{path}: no texts")
    if len(texts) < n:
        logger.warning("%s: %d texts, fewer than the %d asked for", path, len(texts), n)
    return texts, what


def paired_runs(
    first: Callable[[], np.ndarray], second: Callable[[], np.ndarray], repeats: int
) -> tuple[list[float], list[float], np.ndarray, np.ndarray]:
    """Wall seconds of `first` and `second` run alternately (A B A B ...) `repeats` times, so that load
    from anything else on a shared machine falls on both alike; and the last output of each."""
    first_s, second_s = [], []
    a = b = np.empty(0)
    for _ in range(repeats):
        start = time.perf_counter()
        a = first()
        first_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        b = second()
        second_s.append(time.perf_counter() - start)
    return first_s, second_s, a, b


def compare_st_encode(
    st: SentenceTransformer, items: Sequence[str], batch_size: int, repeats: int
) -> dict[str, Any]:
    """Items/s of seqstruct's `encode()` and of `st.encode` on one SentenceTransformer, in one run.

    Ours runs st's first module's HF model and tokenizer with the modules after it (the pooling, then
    Normalize if any) as its pooling: the same weights, pooling and truncation (st.max_seq_length).
    Both get `batch_size`; our token budget (batch x max_length) never binds before it. Both length-sort
    (ours by tokens, theirs by characters), so batches differ and the vectors agree to fp32 noise only.
    """
    transformer = st[0]
    head = nn.Sequential(*(st[i] for i in range(1, len(st))))
    max_length = st.max_seq_length

    def ours(subset: Sequence[str]) -> np.ndarray:
        return encode(
            transformer.auto_model,
            transformer.tokenizer,
            subset,
            batch_size=batch_size,
            max_tokens=batch_size * max_length,
            pooling=head,
            max_length=max_length,
        )

    def theirs(subset: Sequence[str]) -> np.ndarray:
        return st.encode(list(subset), batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True)

    # Warm-up (thread pools, allocator, lazy kernels), on a slice: not timed.
    ours(items[: 2 * batch_size])
    theirs(items[: 2 * batch_size])
    ours_s, theirs_s, a, b = paired_runs(lambda: ours(items), lambda: theirs(items), repeats)
    # Throughput ratio ours/theirs of each pair = their time / our time.
    ratios = [t / o for o, t in zip(ours_s, theirs_s, strict=True)]
    difference = float(np.abs(a - b).max())
    return {
        "items": len(items),
        "batch_size": batch_size,
        "max_length": max_length,
        "pooling": pooling_name(st[1]) or type(st[1]).__name__,
        "modules": [type(module).__name__ for module in head],
        "seqstruct_per_s": len(items) / statistics.median(ours_s),
        "st_per_s": len(items) / statistics.median(theirs_s),
        "ratio_median": statistics.median(ratios),
        "ratios": ratios,
        "seqstruct_seconds": ours_s,
        "st_seconds": theirs_s,
        "max_abs_diff": difference,
        "agree": difference <= AGREE_ATOL,
    }


def st_encode_report(config: EncodeBenchConfig, output: str | Path | None = None) -> str:
    """Run every (model, pooling, batch size) case of `config`; return a markdown table (and write
    machine, sources and raw figures as JSON to `output`, after each case, with "complete" true once all
    ran). Raises if the two sides' vectors disagree."""
    from seqstruct.data.sources.embedded import SAMPLE_FASTA
    from seqstruct.models.sentence import sentence_model

    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    machine = machine_and_libraries(device)
    cases: list[dict[str, Any]] = []
    sources: dict[str, str] = {}

    def save(complete: bool) -> None:
        # Rewritten after every case, so that a run cut short (killed, out of memory) keeps its figures.
        if output:
            figures = {
                "machine": machine,
                "config": vars(config),
                "sources": sources,
                "complete": complete,
                "cases": cases,
            }
            write_json(output, figures)

    def run(kind: str, model: str | Path, described: str, items: list[str], max_length: int | None) -> None:
        for pooling in config.poolings:
            st = sentence_model(model, pooling=pooling, max_length=max_length, device=device)
            for batch_size in config.batch_sizes:
                logger.info("%s: %s pooling, batch %d", described, pooling, batch_size)
                case = compare_st_encode(st, items, batch_size, config.repeats)
                cases.append({"kind": kind, "model": described, **case})
                save(complete=False)
            del st

    if config.text_n > 0:
        texts, sources["texts"] = benchmark_texts(config.texts, config.text_n)
        run("text", config.text_model, config.text_model, texts, config.text_max_length)
    if config.protein_n > 0:
        fasta = Path(config.fasta) if config.fasta else SAMPLE_FASTA
        proteins = [r.sequence for r in itertools.islice(iter_fasta(fasta), config.protein_n)]
        sources["proteins"] = f"{fasta} (first {len(proteins)})"
        with tempfile.TemporaryDirectory() as tmp:
            if config.protein_model:
                model, described = config.protein_model, config.protein_model
            else:
                tokenizer = build_protein_tokenizer()
                set_seed(0)
                save_model_dir(build_encoder(config.preset, tokenizer), tokenizer, Path(tmp))
                model, described = tmp, f"fresh {config.preset} (seed 0)"
            run("protein", model, described, proteins, config.protein_max_length)

    threads = f"{machine['torch_threads']} torch threads"
    lines = [
        f"Machine: {machine['cpu_model']}, {threads}, device {device}"
        + (f" ({machine['gpu']})" if "gpu" in machine else "")
        + f"; torch {machine['torch']}, sentence-transformers {machine['sentence_transformers']}",
        *(f"{kind.capitalize()}: {source}" for kind, source in sources.items()),
        "",
        "| kind | model | pooling | items | batch | max_length | seqstruct `encode` /s | "
        "`SentenceTransformer.encode` /s | ratio ours/theirs (median of pairs) | max abs diff |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {c['kind']} | {c['model']} | {c['pooling']} | {c['items']} | {c['batch_size']} | "
            f"{c['max_length']} | {c['seqstruct_per_s']:.1f} | {c['st_per_s']:.1f} | {c['ratio_median']:.2f} | "
            f"{c['max_abs_diff']:.1e} |"
            for c in cases
        ),
    ]
    save(complete=True)
    disagree = [c for c in cases if not c["agree"]]
    if disagree:
        raise RuntimeError(
            "seqstruct's encode and SentenceTransformer.encode disagree (max abs diff above "
            f"{AGREE_ATOL}) for: "
            + "; ".join(f"{c['kind']} {c['pooling']} batch {c['batch_size']}" for c in disagree)
            + (f" (figures in {output})" if output else "")
        )
    return "\n".join(lines)
