"""Export a finished pretraining run so that it travels back from the GPU machine and ships in the package.

    python scripts/gpu/export.py RUN_DIR OUT_DIR [--init MODEL_DIR] [--device cuda] [--wall-seconds S]

OUT_DIR receives at most 8 files (what the GPU machine gives back), none over 15 MiB:
- model-0000i-of-0000n.safetensors: the weights in bf16, sharded (HF's own sharded layout);
- run.tar.gz: config.json (dtype float32: the bf16 weights load as fp32, the CPU's fast and exact type),
  model.safetensors.index.json, the tokenizer files, history.json (every run this model has had, the
  continued model's history first), README.md (the model card), and the run's log.csv, metrics.json and
  config.yaml.
`scripts/gpu/ship.sh OUT_DIR NAME` unpacks it into the package.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

import torch
import yaml
from safetensors import safe_open
from transformers import AutoModelForMaskedLM, AutoTokenizer

import seqstruct  # noqa: F401  (registers FAVOR+, so a Performer run exports too)
from seqstruct.models.card import HISTORY, model_card
from seqstruct.models.encoders import keep_module_weight_names

MAX_SHARD = 15 * 2**20  # bytes (huggingface_hub reads "15MB" as 10^6-byte megabytes)
MAX_FILES = 8
MAX_FILE_BYTES = 16 * 2**20
RUN_FILES = ("log.csv", "metrics.json", "config.yaml")


# Dense bf16 matrix peak of an H100/H200 SXM by the datasheet; KINDS.md measured ~790 TFLOP/s on random data.
PEAK_BF16_FLOPS = 989e12


def flops_per_token(config, mean_tokens: float) -> float:  # noqa: ANN001 (a transformers config)
    """Training FLOPs a token: 3 x forward (backward is twice the forward), the forward being 2 x the
    non-embedding weights plus attention's two L x L products, 4 x layers x context x width (PaLM's
    appendix B count), with the context the mean cropped example length."""
    d, layers, ffn = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    body = layers * (4 * d * d + 2 * d * ffn)  # Q, K, V, O and the feed-forward
    return 3 * (2 * body + 4 * layers * mean_tokens * d)


def data_name(fasta: Path) -> tuple[str, dict | None]:
    """The training data as the history names it: `corpus/shard-00k.fasta.gz` when bundle.sh left its
    train.source.json beside the file (which shard, how many of its proteins fitted), else the file name."""
    source = fasta.parent / "train.source.json"
    if fasta.name != "train.fasta.gz" or not source.is_file():
        return fasta.name, None
    sample = json.loads(source.read_text())
    return f"{sample['corpus']}/{sample['shard']}", sample


def run_entry(run: Path, config, device: str, wall_seconds: float | None) -> dict:  # noqa: ANN001
    """This run's line in the model's history: data, tokens, steps, time, machine, held-out figures."""
    metrics = json.loads((run / "metrics.json").read_text())
    settings = yaml.safe_load((run / "config.yaml").read_text())
    data, sample = data_name(Path(settings["data"]["fasta"]))
    rate = metrics["train_tokens_per_s"]
    flops = flops_per_token(config, metrics.get("mean_example_tokens") or settings["data"]["max_length"])
    machine = (
        torch.cuda.get_device_name(0)
        if device == "cuda" and torch.cuda.is_available()
        else platform.processor() or platform.machine()
    )
    return {
        "data": data,
        "data_sample": sample,  # {"corpus", "shard", "proteins", "of"} from bundle.sh, or None
        "eval_data": Path(settings["data"]["eval_fasta"]).name if settings["data"]["eval_fasta"] else "",
        "continued_from": settings["model"]["pretrained"] or None,
        "steps": metrics["steps"],
        "train_tokens": metrics["train_tokens"],
        "train_tokens_per_s": rate,
        "train_runtime_s": metrics["train_runtime_s"],
        "wall_seconds": wall_seconds,
        "stopped_by_max_minutes": metrics["stopped_by_max_minutes"],
        "padding_fraction": (metrics.get("batching") or {}).get("padding_fraction"),
        "model_flops_per_token": flops,
        # Model FLOPs utilisation against the bf16 peak, GPU runs only.
        "mfu": rate * flops / PEAK_BF16_FLOPS if device == "cuda" and rate else None,
        "heldout_perplexity": metrics["heldout"]["perplexity"],
        "heldout_masked_accuracy": metrics["heldout"]["masked_accuracy"],
        "unigram_perplexity": metrics["unigram_baseline"]["perplexity"],
        "parameters": metrics["parameters"],
        "device": device,
        "machine": machine,
        "torch": torch.__version__,
        "settings": settings,
    }


def export(run: Path, out: Path, init: Path | None, device: str, wall_seconds: float | None) -> list[Path]:
    history = json.loads((init / HISTORY).read_text()) if init and (init / HISTORY).is_file() else []
    model = AutoModelForMaskedLM.from_pretrained(run)
    history.append(run_entry(run, model.config, device, wall_seconds))
    model = keep_module_weight_names(model.to(torch.bfloat16))
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "model"
        model.save_pretrained(staged, max_shard_size=MAX_SHARD)
        AutoTokenizer.from_pretrained(run).save_pretrained(staged)
        config = json.loads((staged / "config.json").read_text())
        config["dtype"] = "float32"  # stored bf16 to travel; computed in fp32 wherever it is loaded
        (staged / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        (staged / HISTORY).write_text(json.dumps(history, indent=2) + "\n")
        (staged / "README.md").write_text(model_card(history))
        for name in RUN_FILES:
            shutil.copy2(run / name, staged / name)
        weights = sorted(staged.glob("model*.safetensors"))
        if not (staged / "model.safetensors.index.json").exists():  # one shard: name it as a sharded save
            weights[0].rename(staged / "model-00001-of-00001.safetensors")
            weights = [staged / "model-00001-of-00001.safetensors"]
            with safe_open(weights[0], "pt") as handle:
                index = {"metadata": {}, "weight_map": dict.fromkeys(handle.keys(), weights[0].name)}
            (staged / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
        with tarfile.open(out / "run.tar.gz", "w:gz") as tar:
            for path in sorted(staged.iterdir()):
                if path not in weights:
                    tar.add(path, arcname=path.name)
        written = [shutil.copy2(w, out / w.name) for w in weights]
    files = [Path(p) for p in written] + [out / "run.tar.gz"]
    too_big = [f.name for f in files if f.stat().st_size > MAX_FILE_BYTES]
    if len(files) > MAX_FILES or too_big:
        raise SystemExit(f"export: {len(files)} files (at most {MAX_FILES}), over 16 MiB: {too_big}")
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished `seqstruct pretrain` output directory")
    parser.add_argument("out", type=Path, help="where the files to bring back go")
    parser.add_argument("--init", type=Path, help="the model this run continued (its history is kept)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--wall-seconds", type=float, help="the whole call's wall time, probe included")
    args = parser.parse_args()
    for path in export(args.run, args.out, args.init, args.device, args.wall_seconds):
        print(f"{path}\t{path.stat().st_size / 2**20:.1f} MiB", file=sys.stdout)


if __name__ == "__main__":
    main()
