#!/usr/bin/env bash
# The GPU check of bench/RESULTS.md, as run on the lent NVIDIA machine (no internet): unpacks the
# Vulkan loader and Deno carried in .gl/ (see /work/.library/device/README.md), then runs the demo
# on webgpu and on cpu, and a reference-sized LViT-T (base 64, 224x224, batch 4) for two short
# epochs on generated data. Writes run folders under $OUT.
set -euo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
xz -dc .gl/deno.xz >/tmp/deno && chmod +x /tmp/deno
export PATH=/tmp:$PATH DENO_DIR=$PWD/.gl/denodir XDG_RUNTIME_DIR=/tmp
OUT=${OUT:-/tmp/out}
nvidia-smi -L || true
run() { deno run -A --unstable-webgpu lib/cli/run.ts "$@"; }
echo "== demo, webgpu"
/usr/bin/time -f "wall %e s" bash -c "$(declare -f run); run experiments/demo.yaml --backend webgpu --out $OUT/demo-webgpu" 2>&1 | grep -E 'backend|epoch (1|10|20|30)/|test:|wall'
echo "== demo, cpu"
/usr/bin/time -f "wall %e s" bash -c "$(declare -f run); run experiments/demo.yaml --backend cpu --out $OUT/demo-cpu" 2>&1 | grep -E 'backend|epoch (1|10|20|30)/|test:|wall'
echo "== LViT-T base 64, 224x224, batch 4, webgpu"
run experiments/demo.yaml --backend webgpu --out "$OUT/ref" --set model.image_size=224 \
  --set model.base_channels=64 --set train.batch=4 --set train.epochs=2 \
  --set data.synth.train=64 --set data.synth.val=8 --set data.synth.test=8 \
  --set train.min_save_epoch=1 2>&1 | grep -E 'backend|model:|epoch [12]/2 |test:'
find "$OUT" -name summary.json -exec sh -c 'echo "$1"; cat "$1"' _ {} \;
