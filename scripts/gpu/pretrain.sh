#!/usr/bin/env bash
# Pretrain (or continue) the protein encoder for a given number of minutes and write the model, its log
# and metrics to an output folder: the GPU run book's one call (docs/gpu.md). Runs on the GPU machine over
# the repo plus the folder scripts/gpu/bundle.sh built (.gpu/: data shard, held-out FASTA, wheels), and
# here on CPU at tiny scale, so that a GPU minute is never spent on a typo:
#
#   scripts/gpu/pretrain.sh --minutes 9 --out "$OUT"                              # on the GPU machine
#   scripts/gpu/pretrain.sh --device cpu --minutes 0.5 --out /tmp/gpu-dry model.preset=tiny data.max_tokens=4096
#
# Steps: install the carried wheels (the GPU machine reaches no registry), a short probe run with the real
# settings (it checks everything and measures tokens/s), the schedule planned from the probe to fill the
# minutes left, the run itself (stopped by train.max_minutes if the plan was optimistic), and the export:
# bf16 safetensors shards of <= 15 MiB plus run.tar.gz (config, tokenizer, card, log.csv, metrics.json).
# Extra key=value arguments go to `seqstruct pretrain` (both the probe and the run).
set -euo pipefail
cd "$(dirname "$0")/../.."

minutes="" out="" device=cuda bundle=.gpu init=auto probe_steps=20 warmup_share="" config=src/seqstruct/configs/pretrain-gpu.yaml
shipped=src/seqstruct/resources/models/protein-small
overrides=()
usage() {
	sed -n '2,16p' "$0" >&2
	echo "usage: $0 --minutes M --out DIR [--device cuda|cpu] [--bundle DIR] [--init MODEL_DIR | --scratch] [--probe-steps N] [--warmup-share F] [--config YAML] [key=value ...]" >&2
	echo "  --init: the model to continue (default: the shipped $shipped when there is one); --scratch: a fresh one" >&2
	exit 2
}
while (($#)); do
	case "$1" in
	--minutes) minutes=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--device) device=$2; shift 2 ;;
	--bundle) bundle=$2; shift 2 ;;
	--init) init=$2; shift 2 ;;
	--scratch) init=""; shift ;;
	--warmup-share) warmup_share=$2; shift 2 ;;
	--probe-steps) probe_steps=$2; shift 2 ;;
	--config) config=$2; shift 2 ;;
	-h | --help) usage ;;
	*=*) overrides+=("$1"); shift ;;
	*) echo "unknown argument: $1" >&2; usage ;;
	esac
done
[[ -n $minutes && -n $out ]] || usage
if [[ $init == auto ]]; then
	init=""
	[[ -f $shipped/config.json ]] && init=$shipped
fi
# A continued model gets a fresh optimiser and a short warm-up; a fresh one ESM-2's share (2k of 500k
# steps is 0.4%, but a run of a few thousand steps needs more to settle).
[[ -n $warmup_share ]] || { [[ -n $init ]] && warmup_share=0.02 || warmup_share=0.05; }
echo "continuing ${init:-nothing (from scratch)}; warm-up ${warmup_share} of the steps"
[[ $device == cuda || $device == cpu ]] || { echo "--device must be cuda or cpu, got $device" >&2; exit 2; }
for f in "$bundle/data/train.fasta.gz" "$bundle/data/heldout.fasta.gz" "$config"; do
	[[ -f $f ]] || { echo "missing $f: run scripts/gpu/bundle.sh here first (and carry $bundle)" >&2; exit 1; }
done
start=$(date +%s)
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/seqstruct-gpu.XXXXXX")
# The probe, the run and the carried wheels live here; only what export.py writes to --out is kept.
trap 'rm -rf "$work"' EXIT

# The machine's Python: the repo's .venv where there is one (here), else python3 (the GPU image's, with
# its own torch), with the carried wheels (transformers, datasets, ... at this repo's pins) put first.
if [[ -x .venv/bin/python ]]; then
	py=.venv/bin/python
else
	py=python3
	if compgen -G "$bundle/wheels/*.whl" >/dev/null; then
		python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
			--target "$work/site" "$bundle"/wheels/*.whl
		export PYTHONPATH="$work/site:${PYTHONPATH:-}"
	fi
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
"$py" - "$device" <<'EOF'
import sys, platform, torch, transformers, datasets
device = sys.argv[1]
print(f"python {platform.python_version()} torch {torch.__version__} transformers {transformers.__version__} "
      f"datasets {datasets.__version__}", flush=True)
if device == "cuda":
    assert torch.cuda.is_available(), "--device cuda but torch sees no GPU"
    print("gpu", torch.cuda.get_device_name(0), flush=True)
EOF

common=(data.fasta="$bundle/data/train.fasta.gz" data.eval_fasta="$bundle/data/heldout.fasta.gz")
[[ -n $init ]] && common+=(model.pretrained="$init")
if [[ $device == cpu ]]; then
	common+=(train.precision=fp32 train.num_workers=0)
fi
common+=("${overrides[@]}")

# 1. The probe: the real settings for a few steps; it fails fast on any mistake and measures tokens/s and
# the start-up (imports, data, the full held-out evaluation, saving) that the run will pay again.
probe_start=$(date +%s)
"$py" -m seqstruct.cli pretrain "$config" "${common[@]}" output_dir="$work/probe" \
	train.max_steps="$probe_steps" train.warmup_steps=1 train.eval_steps=1000000 train.save_steps=1000000 \
	2>&1 | tail -n 5
# 2. The plan: training seconds = the minutes left less the run's start-up (as the probe paid it) and a
# margin for the export; as many optimiser steps as the probe's rate fits in them; warm-up a share.
read -r steps warmup train_minutes < <("$py" - "$work/probe/metrics.json" "$minutes" "$start" "$probe_start" "$warmup_share" <<'EOF'
import csv, json, sys, time
from pathlib import Path
metrics = json.load(open(sys.argv[1]))
minutes, start, probe_start, share = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
now = time.time()
# The Trainer's runtime includes the held-out evaluation at the last step (85 s of a 160 s CPU probe):
# the rate is over the steps alone, and the evaluation is start-up the run pays once more.
with open(Path(sys.argv[1]).parent / "log.csv", newline="") as handle:
    evaluating = sum(float(row["eval_runtime"]) for row in csv.DictReader(handle) if row.get("eval_runtime"))
stepping = max(metrics["train_runtime_s"] - evaluating, 1e-3)
startup = (now - probe_start) - stepping  # imports, data, evaluation, saving
train_seconds = max(minutes * 60 - (now - start) - startup - 20, 1.0)  # 20 s: export
rate = metrics["train_tokens"] / stepping  # includes the first steps' warm-up: conservative
tokens_per_step = metrics["train_tokens"] / metrics["steps"]
steps = max(int(0.97 * train_seconds * rate / tokens_per_step), 1)
print(steps, max(int(steps * share), 1), f"{train_seconds / 60:.3f}")
print(f"probe: {rate:,.0f} tokens/s, {tokens_per_step:,.0f} tokens a step, start-up {startup:.0f} s -> "
      f"{steps} steps in {train_seconds:.0f} s of training", file=sys.stderr)
EOF
)
# 3. The run, stopped cleanly by train.max_minutes should the plan prove optimistic.
"$py" -m seqstruct.cli pretrain "$config" "${common[@]}" output_dir="$work/run" \
	train.max_steps="$steps" train.warmup_steps="$warmup" train.max_minutes="$train_minutes" 2>&1 |
	grep -v -E '^\s*$|it/s\]|s/it\]' | tail -n 40
# 4. The export: bf16 shards of <= 15 MiB and one archive of the small files (8 files at most come back).
"$py" scripts/gpu/export.py "$work/run" "$out" --device "$device" ${init:+--init "$init"} \
	--wall-seconds $(($(date +%s) - start))
ls -l "$out"
