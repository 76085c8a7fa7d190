"""One very long protein embedded in one pass by `seqstruct embed`: FAVOR+ against exact SDPA, same weights.

    python scripts/bench_long_protein.py OUT_DIR [--fasta F] [--preset small] [--repeats 1]

Without --fasta the longest protein of Swiss-Prot as metastudent-data ships it (Debian `metastudent-data`:
A2ASS6, mouse titin, 35,213 residues) is written to OUT_DIR/long.fasta. Two untrained encoders of the preset
are built from one seed, identical but for the attention (their weights are checked equal), saved, and each
embeds the protein through `seqstruct embed --per-residue` in its own process, so that its peak RSS (wait4's
rusage of that child, model loading included) is the command's own. Prints a Markdown table; issue 22 item 3
(docs/benchmarks.md "Titin in one pass").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

METASTUDENT_MFO = Path("/usr/share/metastudent-data/dataset_201401/MFO/goasp.fasta")
ATTENTIONS = ("favor", "sdpa")


def longest_protein(prefix: Path, out: Path) -> tuple[str, int]:
    """Write the longest sequence of a metastudent BLAST database to `out` as FASTA -> (id, length)."""
    from seqstruct.data.sources.metastudent import parse_title, read_blast_db

    best = ("", "")
    for title, sequence in read_blast_db(prefix):
        if len(sequence) > len(best[1]):
            best = (parse_title(title)[0], sequence)
    if not best[1]:
        raise ValueError(f"{prefix}: no sequences (install the Debian package metastudent-data)")
    out.write_text(f">{best[0]}\n{best[1]}\n", encoding="utf-8")
    return best[0], len(best[1])


def build_models(preset: str, out: Path) -> None:
    """OUT/favor and OUT/sdpa: the same seeded weights, FAVOR+ (random features of FavorConfig()) or SDPA."""
    import torch

    import seqstruct  # noqa: F401  (registers attn_implementation="favor")
    from seqstruct.config import FavorConfig
    from seqstruct.data.tokenizers import build_protein_tokenizer
    from seqstruct.models.encoders import build_encoder
    from seqstruct.models.io import save_model_dir

    tokenizer = build_protein_tokenizer()
    first: dict[str, torch.Tensor] | None = None
    for attention in ATTENTIONS:
        torch.manual_seed(0)
        extra = {"favor": FavorConfig()} if attention == "favor" else {}
        model = build_encoder(preset, tokenizer, attn_implementation=attention, **extra)
        weights = {k: v for k, v in model.state_dict().items() if "projection" not in k}  # FAVOR+ buffers
        if first is None:
            first = weights
        elif weights.keys() != first.keys() or not all(torch.equal(first[k], weights[k]) for k in first):
            raise AssertionError("the FAVOR+ and SDPA encoders differ in weights: the comparison is void")
        save_model_dir(model, tokenizer, out / attention)


def embed_once(model: Path, fasta: Path, out: Path) -> dict[str, float]:
    """`seqstruct embed` in a child process -> wall seconds and the child's peak RSS in MiB."""
    command = [sys.executable, "-m", "seqstruct.cli", "embed", str(model), str(fasta), "-o", str(out)]
    command += ["--per-residue", "--residue-dtype", "float16"]
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, not the largest child's so far
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, command)
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--fasta", type=Path, help="default: the longest protein of metastudent-data")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--prepare-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    fasta = args.fasta or args.out / "long.fasta"
    if args.prepare_only:
        if args.fasta is None:
            name, length = longest_protein(METASTUDENT_MFO, fasta)
            print(f"{name}: {length:,} residues", flush=True)
        build_models(args.preset, args.out)
        return {}
    # A child's ru_maxrss starts from its parent's resident set at fork (Linux copies the high-water mark
    # through fork and exec), so this process stays small: the protein and the models are made in a child.
    prepare = [sys.executable, __file__, str(args.out), "--preset", args.preset, "--prepare-only"]
    subprocess.run(prepare + (["--fasta", str(args.fasta)] if args.fasta else []), check=True)
    found = {a: embed_once(args.out / a, fasta, args.out / f"{a}.npz") for a in ATTENTIONS}
    print("| attention | wall (s) | peak RSS (MiB) |\n|---|---:|---:|")
    for attention, row in found.items():
        print(f"| {attention} | {row['seconds']:.1f} | {row['peak_rss_mib']:,.0f} |")
    print(f"SDPA / FAVOR+ wall time: {found['sdpa']['seconds'] / found['favor']['seconds']:.2f}x")
    (args.out / "results.json").write_text(json.dumps(found, indent=2), encoding="utf-8")
    return found


if __name__ == "__main__":
    main()
