#!/usr/bin/env bash
# Build, here, what the GPU machine needs beside the repo, into .gpu/ (git-ignored; name it in `carry`):
#   .gpu/data/train.fasta.gz    one shard of the leak-free corpus, cut to what the machine takes in
#   .gpu/data/heldout.fasta.gz  the corpus's `valid` split: clusters kept out of every shard (held-out perplexity)
#   .gpu/wheels/*.whl           the packages, at this repo's pins, that the GPU image lacks or has older
#
#   scripts/gpu/bundle.sh [--corpus data/prepared/swissprot-pretrain] [--shard N] [--out .gpu] [--no-wheels]
#
# --shard defaults to the number of runs in the shipped model's history (none shipped: 0), modulo the
# corpus's shard count: each GPU run continues the model on data it has not seen.
#
# The corpus comes from `seqstruct data prepare swissprot-pretrain` (docs/gpu.md). The GPU machine takes in
# at most 64 MiB: the tracked repo (a shipped model included), the wheels and the shard together, so the
# shard is cut (a seeded sample of whole proteins) to the room left. A later run takes the next shard.
set -euo pipefail
cd "$(dirname "$0")/../.."

corpus=data/prepared/swissprot-pretrain shard=auto out=.gpu wheels=1 limit_mib=64 margin_mib=2
while (($#)); do
	case "$1" in
	--corpus) corpus=$2; shift 2 ;;
	--shard) shard=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--no-wheels) wheels=0; shift ;;
	*) sed -n '2,14p' "$0" >&2; exit 2 ;;
	esac
done
py=.venv/bin/python
[[ -x $py ]] || { echo "no .venv: run 'make venv' first" >&2; exit 1; }
if [[ $shard == auto ]]; then
	shards=$(find "$corpus" -maxdepth 1 -name 'shard-*.fasta.gz' | wc -l)
	((shards > 0)) || { echo "no shard-*.fasta.gz in $corpus" >&2; exit 1; }
	history=src/seqstruct/resources/models/protein-small/history.json
	runs=0
	[[ -f $history ]] && runs=$("$py" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' "$history")
	shard=$((runs % shards))
	echo "shard $shard of $shards (the shipped model has had $runs run(s))"
fi
source_shard=$(printf '%s/shard-%03d.fasta.gz' "$corpus" "$shard")
for f in "$source_shard" "$corpus/dataset.json"; do
	[[ -f $f ]] || {
		echo "missing $f: prepare the corpus first, e.g." >&2
		echo "  seqstruct data prepare swissprot-pretrain exclude=[data/prepared/swissprot-go-20k,data/prepared/swissprot-go-sample] -o $corpus" >&2
		exit 1
	}
done
mkdir -p "$out/data"

if ((wheels)); then
	rm -rf "$out/wheels"
	# Pure-Python wheels, so one download serves the GPU image's Python 3.12.
	grep -v -E '^\s*(#|$)' scripts/gpu/wheels.txt | xargs "$py" -m pip download -q --no-deps \
		--only-binary=:all: --python-version 3.12 --implementation py --abi none --platform any -d "$out/wheels"
fi

# What travels: tracked files (the repo as committed, a shipped model included), untracked files git
# does not ignore, and the bundle beside them.
repo_bytes=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
wheel_bytes=0  # --no-wheels, or none downloaded: du of an unmatched glob fails (and pipefail adds a second 0)
compgen -G "$out/wheels/*.whl" >/dev/null && wheel_bytes=$(du -cb "$out"/wheels/*.whl | tail -n 1 | cut -f1)
"$py" - "$corpus" "$out/data/heldout.fasta.gz" <<'EOF'
import sys
from seqstruct.data.fasta import FastaRecord, write_fasta
from seqstruct.data.prepared import load_prepared

valid = load_prepared(sys.argv[1]).split("valid")  # representatives of clusters kept out of every shard
write_fasta((FastaRecord(i, "", s) for i, s in zip(valid["id"], valid["text"], strict=True)), sys.argv[2])
print(f"{sys.argv[2]}: {len(valid):,} held-out proteins")
EOF
heldout_bytes=$(stat -c %s "$out/data/heldout.fasta.gz")
room=$((limit_mib * 2**20 - margin_mib * 2**20 - repo_bytes - $wheel_bytes - heldout_bytes))
((room > 2**20)) || { echo "no room left for data: repo $repo_bytes B, wheels $wheel_bytes B" >&2; exit 1; }
# train.source.json names the shard and the sample: the model's history.json records it (export.py), so
# each run says which shard it saw rather than only "train.fasta.gz".
"$py" - "$source_shard" "$out/data/train.fasta.gz" "$room" <<'EOF'
import json, sys
from pathlib import Path
from seqstruct.data.fasta import fit_fasta
from seqstruct.io import atomic_open

source, target, room = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
kept, total = fit_fasta(source, target, room, seed=0)
with atomic_open(target.parent / "train.source.json", "w") as handle:
    json.dump({"corpus": source.parent.name, "shard": source.name, "proteins": kept, "of": total}, handle)
print(f"{target}: {kept:,} of {total:,} proteins of {source} in {room / 2**20:.1f} MiB of room")
EOF
# (--no-wheels leaves no wheels/: du of an unmatched glob fails, and under pipefail the script with it)
listed=("$out"/data/*)
compgen -G "$out/wheels/*.whl" >/dev/null && listed+=("$out"/wheels/*.whl)
du -b "${listed[@]}" | awk '{printf "%8.1f MiB  %s\n", $1 / 2^20, $2}'
echo "repo $((repo_bytes / 2**20)) MiB + bundle $(($(du -sb "$out" | cut -f1) / 2**20)) MiB of ${limit_mib} MiB"
