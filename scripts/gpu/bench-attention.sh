#!/usr/bin/env bash
# FAVOR+ on the GPU in one call (docs/gpu.md, "FAVOR+ on the GPU"): the Triton kernels' tests compiled on
# the GPU, then `seqstruct bench attention` in bf16 and fp32 (SDPA flash / memory-efficient, favor's
# PyTorch path, the Triton kernels), and a profile of both FAVOR+ paths at one length. Writes to --out:
#   tests.log                      pytest on tests/attention/test_kernels.py with SEQSTRUCT_TEST_DEVICE=cuda
#   attention-bf16.md, attention-fp32.md   the benchmark tables
#   bench-attention.tar.gz         everything: both benchmarks' csv/md/png/config.json, the profile, logs
#
#   scripts/gpu/bench-attention.sh --prepare                       # here: the wheels into .gpu/wheels
#   scripts/gpu/bench-attention.sh --out "$OUT"                    # on the GPU machine (carry .gpu/wheels)
#   scripts/gpu/bench-attention.sh --dry-run --out /tmp/bench-dry  # here, CPU: compiled for sm_90 (not run),
#                                                                  # then the same steps under the interpreter
#
# Each step has its own time limit and a failed step does not stop the next, so one call brings back
# whatever worked; the script's status is that of the first step that failed.
set -uo pipefail
cd "$(dirname "$0")/../.."

out="" mode=gpu wheels=.gpu/wheels
usage() {
	sed -n '2,15p' "$0" >&2
	echo "usage: $0 (--out DIR [--dry-run] | --prepare) [--wheels DIR]" >&2
	exit 2
}
while (($#)); do
	case "$1" in
	--out) out=$2; shift 2 ;;
	--dry-run) mode=cpu; shift ;;
	--prepare) mode=prepare; shift ;;
	--wheels) wheels=$2; shift 2 ;;
	-h | --help) usage ;;
	*) echo "unknown argument: $1" >&2; usage ;;
	esac
done

if [[ $mode == prepare ]]; then
	# The packages the GPU image lacks or has older (scripts/gpu/wheels.txt), pure Python: one download
	# serves its Python 3.12. The image has torch 2.11 and triton 3.6.0 (the `kernels` extra's pin).
	mkdir -p "$wheels" && rm -f "$wheels"/*.whl
	grep -v -E '^\s*(#|$)' scripts/gpu/wheels.txt | xargs .venv/bin/python -m pip download -q --no-deps \
		--only-binary=:all: --python-version 3.12 --implementation py --abi none --platform any -d "$wheels"
	du -ch "$wheels"/*.whl | tail -n 1
	exit 0
fi
[[ -n $out ]] || usage
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/seqstruct-bench.XXXXXX")
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# The machine's Python: the repo's .venv here, python3 there with the carried wheels put first.
if [[ $mode == cpu ]]; then
	py=.venv/bin/python
	export TRITON_INTERPRET=1 SEQSTRUCT_TEST_DEVICE=cpu
	lengths=(64 128) sizes=(--heads 2 --head-dim 16 --features 32 --repeats 1 --matmul-size 256 --copy-mib 16)
	bf16_methods=(sdpa favor favor-triton) fp32_methods=(sdpa favor favor-triton) device=cpu profile_length=128
	limits=(300 300 120 60)  # tests, bf16 bench, fp32 bench, profile (seconds)
else
	py=python3
	if compgen -G "$wheels/*.whl" >/dev/null; then
		python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
			--target "$work.site" "$wheels"/*.whl  # beside $work, which is archived whole
		export PYTHONPATH="$work.site:${PYTHONPATH:-}"
	else
		echo "no wheels in $wheels: run '$0 --prepare' here and carry $wheels (the image's transformers is older)" >&2
	fi
	export SEQSTRUCT_TEST_DEVICE=cuda
	unset TRITON_INTERPRET
	lengths=(1024 2048 4096 8192 16384 32768 65536)
	sizes=(--heads 8 --head-dim 64 --features 256 --repeats 5 --max-seconds 10 --copy-mib 2048)
	# flash takes no fp32; performer-pytorch is not on the image.
	bf16_methods=(sdpa-flash sdpa-efficient favor favor-triton) fp32_methods=(sdpa-efficient favor favor-triton)
	device=cuda profile_length=16384
	limits=(120 150 100 40)  # 410 s at most, with the start and the transfers inside timeout_s=480
fi
export PYTHONPATH="$PWD/src:$PWD:${PYTHONPATH:-}"
status=0
cli="import sys; from seqstruct.cli import main; sys.exit(main())"  # `seqstruct`, uninstalled
step() { # step NAME LIMIT COMMAND...: run with a time limit, log to $work/NAME.log, remember a failure
	local name=$1 limit=$2
	shift 2
	local start=$SECONDS
	timeout "$limit" "$@" >"$work/$name.log" 2>&1
	local rc=$?
	echo "$name: exit $rc after $((SECONDS - start)) s (limit $limit s)" | tee -a "$work/steps.log"
	tail -n 3 "$work/$name.log"
	((rc == 0 || status != 0)) || status=$rc
}

"$py" - "$device" <<'EOF' | tee "$work/machine.log"
import sys, platform, torch, transformers
try:
    import triton
    version = triton.__version__
except ImportError as err:
    version = f"not importable ({err})"
print(f"python {platform.python_version()} torch {torch.__version__} triton {version} transformers {transformers.__version__}")
if sys.argv[1] == "cuda":
    assert torch.cuda.is_available(), "torch sees no GPU"
    print("gpu", torch.cuda.get_device_name(0))
EOF

# 0. Dry run only: the kernels compiled for sm_90 here (front end, LLVM, ptxas), as the GPU will.
if [[ $mode == cpu ]]; then
	step compile 300 env -u TRITON_INTERPRET "$py" scripts/gpu/kernel_resources.py --block-m 32 --warps 8
fi

# 1. Correctness: the kernels' tests, compiled for this GPU (fp32, bf16, causal, masks, packed, ESM).
# On the GPU the slow ones too (benchmark sizes: d 64, m 256); here they take a minute under the interpreter.
marks=$([[ $mode == gpu ]] && echo "slow or not slow" || echo "not slow")
step tests "${limits[0]}" "$py" -m pytest -q -p no:cacheprovider -m "$marks" tests/attention/test_kernels.py
cp "$work/tests.log" "$out/tests.log"

# 2. The benchmark, bf16 then fp32, in one process each (CUDA peaks are allocated tensors, which the
# allocator's caches do not disturb; a fresh process per case would spend the minutes on imports).
for dtype in bfloat16 float32; do
	short=$([[ $dtype == bfloat16 ]] && echo bf16 || echo fp32)
	if [[ $short == bf16 ]]; then methods=("${bf16_methods[@]}") limit=${limits[1]}; else methods=("${fp32_methods[@]}") limit=${limits[2]}; fi
	step "bench-$short" "$limit" "$py" -c "$cli" bench attention -o "$work/$short" --device "$device" \
		--dtype "$dtype" --lengths "${lengths[@]}" --methods "${methods[@]}" "${sizes[@]}" --in-process
	[[ -f $work/$short/attention.md ]] && cp "$work/$short/attention.md" "$out/attention-$short.md"
done

# 3. Where the time goes: the CUDA kernels of one forward+backward of each FAVOR+ path (torch.profiler).
step profile "${limits[3]}" "$py" - "$device" "$profile_length" "$work/profile.txt" <<'EOF'
import sys, torch
from torch.profiler import ProfilerActivity, profile
from seqstruct.attention.favor import favor_attention, gaussian_projection
from seqstruct.attention.kernels.favor import favor_triton

device, length, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
heads, dim = (8, 64) if device == "cuda" else (2, 16)
projection = gaussian_projection(256 if device == "cuda" else 32, dim, device=device)
activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
sort = "cuda_time_total" if device == "cuda" else "cpu_time_total"
with open(path, "w") as report:
    for causal in (False, True):
        for name, fn in (("favor (PyTorch)", favor_attention), ("favor-triton", favor_triton)):
            q, k, v, grad = (torch.randn(1, heads, length, dim, device=device, dtype=torch.bfloat16) for _ in range(4))
            for x in (q, k, v):
                x.requires_grad_()
            fn(q, k, v, projection, causal=causal).backward(grad)  # compile and warm up
            with profile(activities=activities) as prof:
                fn(q, k, v, projection, causal=causal).backward(grad)
                if device == "cuda":
                    torch.cuda.synchronize()
            report.write(f"## {name}, {'causal' if causal else 'bidirectional'}, L={length}, bf16\n")
            report.write(prof.key_averages().table(sort_by=sort, row_limit=12) + "\n\n")
print(open(path).read()[:3000])
EOF

tar -czf "$out/bench-attention.tar.gz" -C "$work" .
ls -l "$out"
cat "$work/steps.log"
exit $status
