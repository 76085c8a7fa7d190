#!/usr/bin/env bash
# Ship what scripts/gpu/pretrain.sh brought back (the device tool's files_at folder, or any folder with the
# model-*.safetensors shards and run.tar.gz) as the packaged pretrained encoder NAME, loadable by name
# everywhere a model is taken (`seqstruct embed protein-small in.fasta`, `model.pretrained=protein-small`):
#
#   scripts/gpu/ship.sh FETCHED_DIR [NAME]     # NAME: protein-small
#
# The new model is unpacked and loaded (weights, tokenizer, card) before the old one is replaced, so a
# broken download never takes the place of a working model. Commit src/seqstruct/resources/models/NAME.
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ $# -ge 1 && $# -le 2 ]] || { sed -n '2,8p' "$0" >&2; exit 2; }
fetched=$1 name=${2:-protein-small}
[[ $name =~ ^[A-Za-z0-9._-]+$ ]] || { echo "NAME must be letters, digits, '.', '_' or '-': $name" >&2; exit 2; }
[[ -f $fetched/run.tar.gz ]] || { echo "$fetched/run.tar.gz is missing: is this pretrain.sh's output?" >&2; exit 1; }
compgen -G "$fetched/model-*.safetensors" >/dev/null || { echo "no model-*.safetensors in $fetched" >&2; exit 1; }
py=.venv/bin/python
[[ -x $py ]] || { echo "no .venv: run 'make venv' first" >&2; exit 1; }

models=${SEQSTRUCT_SHIP_DIR:-src/seqstruct/resources/models}  # tests ship elsewhere
mkdir -p "$models"
staged=$(mktemp -d "$models/.ship-XXXXXX")
trap 'rm -rf "$staged"' EXIT
tar -xzf "$fetched/run.tar.gz" -C "$staged" --no-same-owner
cp "$fetched"/model-*.safetensors "$staged/"
HF_HUB_OFFLINE=1 "$py" - "$staged" <<'EOF'
import json, sys
from pathlib import Path
from transformers import AutoModelForMaskedLM, AutoTokenizer

import seqstruct  # noqa: F401

path = Path(sys.argv[1])
model = AutoModelForMaskedLM.from_pretrained(path)
tokenizer = AutoTokenizer.from_pretrained(path)
history = json.loads((path / "history.json").read_text())
ids = tokenizer("MKTAYIAKQR", return_tensors="pt")
logits = model(**ids).logits
assert logits.shape[-1] == len(tokenizer) and not logits.isnan().any(), "the model does not run"
last = history[-1]
print(f"{sum(p.numel() for p in model.parameters()):,} parameters ({next(model.parameters()).dtype}), "
      f"{len(history)} run(s), held-out perplexity {last['heldout_perplexity']:.2f} "
      f"(unigram {last['unigram_perplexity']:.2f})")
EOF
chmod -R u=rwX,go=rX "$staged"
if [[ -d $models/$name ]]; then
	old=$(mktemp -d "$models/.old-XXXXXX")
	mv "$models/$name" "$old/"
	mv "$staged" "$models/$name"
	rm -rf "$old"
else
	mv "$staged" "$models/$name"
fi
trap - EXIT
du -sh "$models/$name"
echo "shipped $models/$name: git add it, and record its card's figures in docs/results.md"
