#!/usr/bin/env bash
# The GPU tests and every GPU figure benchmarks/README.md quotes (augmentation, distillation steps in fp32,
# bf16 and fp16 at batch 32 and 256, the objective alone, inference in each dtype), in one run: for a lent GPU machine,
# whose time is short. About 7 minutes on an H100 (a device call may last 10): the augmentation
# check runs 1024 sentences. Each check writes $OUT/<name>.txt (default ./gpu-figures) and prints its tail.
#
#   ASSETS=.gpu bash benchmarks/gpu_checks.sh            # on the GPU machine
#   DEVICE=cpu SMALL=1 bash benchmarks/gpu_checks.sh     # a smoke run of the script itself, here
#   CHECKS="augment distillation" PRECISIONS="fp32 bf16" BATCHES="32" ASSETS=.gpu bash benchmarks/gpu_checks.sh
#
# CHECKS (tests augment augment-stage distillation inference), PRECISIONS, BATCHES and WORKER_ROWS pick a subset, for a lease
# too short for everything; by default all run. A device call brings back at most 8 files from
# $OUT: with all checks, read the rest in the call's output (each check prints its tail).
#
# The GPU machine has torch and transformers but may lack this project's other imports, and it
# cannot download: put wheels in .whl/ (pip download --only-binary :all: --no-deps gensim pydantic
# pydantic-core ... for its Python) and they are installed into /tmp/site when an import fails.
# ASSETS holds what the benchmarks read: mlm/ (a masked-LM folder; fp16 weights are fine, they
# load as fp32), glove/ (a GloVe file or folder; the first 100k vectors are all Algorithm 1
# searches) and task/train.parquet. Tracked files travel with the working tree; wheels and ASSETS
# go as carried paths, within the device tool's 64 MiB per call. A carried path that a later call
# does not name again is removed there, so everything a check reads must travel in its own call.
# What fitted (62 MB, 2026-11-26): ASSETS=.gpu2 holding mlm/ with model.safetensors xz-compressed
# (fp16, 41 MB), glove/ as index.parquet + vectors.npy in fp16 (loads as fp32), task/, and whl/
# (gensim's wheel without gensim/test: `zip -d gensim-*.whl 'gensim/test/*'`, 5.6 MB); the call
# begins `xz -d .gpu2/mlm/model.safetensors.xz; for w in .gpu2/whl/*.whl; do python3 -m zipfile -e $w /tmp/site; done`.
set -uo pipefail
OUT=${OUT:-gpu-figures}
ASSETS=${ASSETS:-.gpu}
DEVICE=${DEVICE:-cuda}
CHECKS=${CHECKS:-tests augment augment-stage distillation inference}
for name in $CHECKS; do
    [[ " tests augment augment-stage distillation inference " == *" $name "* ]] || { echo "unknown check: $name" >&2; exit 2; }
done
mkdir -p "$OUT"

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}:/tmp/site"
if ! python -c "import pydantic, gensim, pyarrow" 2>/dev/null; then
    pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if [ -n "${SMALL:-}" ]; then  # the smoke run: every check, tiny sizes
    SENTENCES=8 WORKER_ROWS=${WORKER_ROWS:-40} SHARD_ROWS=20 STEPS=2 BIG_BATCH=8 REPEATS=1
else  # WORKER_ROWS=8454: the whole movie-review training split
    SENTENCES=1024 WORKER_ROWS=${WORKER_ROWS:-4000} SHARD_ROWS=500 STEPS=20 BIG_BATCH=256 REPEATS=20
fi
BATCHES=${BATCHES:-32 $BIG_BATCH}
wanted() { [[ " $CHECKS " == *" $1 "* ]]; }
MLM=(--mlm "$ASSETS/mlm" --task "$ASSETS/task" --glove "$ASSETS/glove")

check() {  # check NAME SECONDS COMMAND...: run it under a time limit, keep its output and status
    local name=$1 limit=$2
    shift 2
    echo "== $name"
    timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
    echo "exit status $?" >>"$OUT/$name.txt"
    grep -v '^\[bench\]' "$OUT/$name.txt" | tail -n 12
}

{ nvidia-smi 2>&1 || true; python -c "import torch, transformers; print(torch.__version__, transformers.__version__)"; } >"$OUT/machine.txt"
wanted tests && check tests 240 python -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_batching.py tests/test_objective.py \
    tests/test_training.py tests/test_models.py
# Batches of 512 (chunks of 256 examples): as fast as 1024 on the H200, with less memory.
wanted augment && check augment 300 python benchmarks/augment.py --device "$DEVICE" --sentences "$SENTENCES" --batch-size 512 \
    --memory-sizes --worker-rows 0 --profile "$OUT" "${MLM[@]}"
wanted augment-stage && check augment-stage 300 python benchmarks/augment.py --device "$DEVICE" --sentences 8 --memory-sizes \
    --batch-size 512 --worker-rows "$WORKER_ROWS" --shard-rows "$SHARD_ROWS" --workers 1 2 4 "${MLM[@]}"
# fp16 needs a GPU: the smoke run on a CPU leaves it out.
DEFAULT_PRECISIONS="fp32 bf16"; [ "$DEVICE" = cuda ] && DEFAULT_PRECISIONS="fp32 bf16 fp16"
PRECISIONS=${PRECISIONS:-$DEFAULT_PRECISIONS}
for precision in $PRECISIONS; do
    wanted distillation || break
    for batch in $BATCHES; do
        check "distillation-$precision-$batch" 150 python benchmarks/distillation.py --bert-base --device "$DEVICE" \
            --precision "$precision" --batch "$batch" --steps "$STEPS"
    done
    # The objective alone, stacked layers against one loss per match: what the GD step's overhead is made of.
    check "objective-$precision" 60 python benchmarks/objective.py --device "$DEVICE" --precision "$precision" \
        --repeats "$STEPS"
done
# The optimizer step every training stage takes: the fused kernel against PyTorch's default (foreach on a GPU).
wanted distillation && check optimizer 60 python benchmarks/optimizer.py --device "$DEVICE"
for dtype in $PRECISIONS; do
    wanted inference || break
    check "inference-$dtype" 120 python benchmarks/inference.py --device "$DEVICE" --dtype "$dtype" --repeats "$REPEATS"
done
wanted inference && [ "$DEVICE" = cuda ] && [[ " $PRECISIONS " == *" fp16 "* ]] && check inference-fp16-256 120 python benchmarks/inference.py --device cuda --dtype fp16 \
    --batch "$BIG_BATCH" --repeats "$REPEATS"
exit 0
