#!/bin/sh
# Parity of the training and evaluation pipeline with the official LViT code (README.md,
# "Training and evaluation pipeline"): pipeline_official.py runs the official data loader,
# augmentation, loss, metrics, scheduler, model selection loop, Adam, initialisation and
# training-mode layers on fixed inputs; pipeline_ours.ts runs ours on the same; the figures are
# printed by pipeline_compare.py.
#   PARITY_LVIT_OFFICIAL=/path/to/LViT [PARITY_DATA=/path/to/MoNuSeg] [PARITY_OUT=dir]
#   [PYTHON=python3] bench/parity/pipeline.sh
set -e
cd "$(dirname "$0")"
export PARITY_OUT="${PARITY_OUT:-$PWD/out}"
PY="nice -n 19 env OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 ${PYTHON:-python3}"
DENO="nice -n 19 env -u OPENBLAS_CORETYPE LVIT_CPU_THREADS=1 deno run --allow-read --allow-write --allow-env --allow-ffi"
mkdir -p "$PARITY_OUT/pipeline"
$PY pipeline_official.py 2>"$PARITY_OUT/pipeline/official.log" || { cat "$PARITY_OUT/pipeline/official.log"; exit 1; }
$DENO pipeline_ours.ts >"$PARITY_OUT/pipeline/ours.log" 2>&1 || { cat "$PARITY_OUT/pipeline/ours.log"; exit 1; }
$PY pipeline_compare.py | tee "$PARITY_OUT/pipeline/figures.txt"
