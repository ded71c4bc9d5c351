#!/bin/sh
# Parity of the baselines with their official PyTorch code (README.md here): for each model the
# official definition (random weights, eval mode) writes a .pth, an input and its outputs; ours
# loads the .pth strictly and runs the eval forward on that input; compare.py prints the
# differences next to the official code's own float32-vs-float64 difference.
#   PARITY_OFFICIAL=/path/with/{smp,gtunet,uct} [PARITY_STUBS=dir] [PARITY_OUT=dir] [PYTHON=python3]
#     bench/parity/run.sh
set -e
cd "$(dirname "$0")"
export PARITY_OUT="${PARITY_OUT:-$PWD/out}"
PY="nice -n 19 env OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 ${PYTHON:-python3}"
DENO="nice -n 19 env -u OPENBLAS_CORETYPE LVIT_CPU_THREADS=1 deno run --allow-read --allow-write --allow-env --allow-ffi"
for spec in "unetpp 64" "gtunet 128" "uctransnet 128" "gtunet 128 stress" "uctransnet 224 s224"; do
  set -- $spec
  dir=$1${3:+-$3}
  $PY official.py "$@"
  $DENO ours.ts "$@" >"$PARITY_OUT/$dir/ours.log" 2>&1 || { cat "$PARITY_OUT/$dir/ours.log"; exit 1; }
  $PY compare.py "$dir"
done
$PY relemb_effect.py
