#!/usr/bin/env bash
# The GPU check of bench/RESULTS.md, as run on the lent NVIDIA machine (no internet): unpacks the
# Vulkan loader and Deno carried in .gl/ (see /work/.library/device/README.md), runs the kernel
# tests and the benchmark in both WebGPU kernel classes, then runs the demo
# on webgpu with and without its text input, and a reference-sized LViT-T (base 64, 224x224,
# batch 4) for two short epochs on generated data. Writes run folders under $OUT.
set -euo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
xz -dc .gl/deno.xz >/tmp/deno && chmod +x /tmp/deno
export PATH=/tmp:$PATH DENO_DIR=$PWD/.gl/denodir XDG_RUNTIME_DIR=/tmp
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi -L || true
run() { deno run -A --unstable-webgpu lib/cli/run.ts "$@"; }
# The hardware kernel class (tiled GEMMs, LVIT_WEBGPU_KERNELS) has only run on lavapipe so far:
# its correctness tests first, then the benchmark rows in both classes (JSON under $OUT).
echo "== kernel-class tests on this GPU"
deno test --allow-read --allow-write --allow-env --allow-ffi --allow-run --allow-net=127.0.0.1 \
  --unstable-webgpu tests/kernel_classes_test.ts tests/conv_ops_test.ts \
  tests/transformer_ops_test.ts 2>&1 | tee "$OUT/kernel-tests.log" | tail -3
for k in software hardware; do
  echo "== bench, webgpu, $k kernels"
  LVIT_WEBGPU_KERNELS=$k deno run -A --unstable-webgpu bench/main.ts --backend webgpu --no-peers \
    --json "$OUT/bench-webgpu-$k.json" 2>&1 | tee "$OUT/bench-webgpu-$k.log" | grep -E '^\| [a-z]'
done
for text in true false; do
  echo "== demo, webgpu, model.text=$text"
  # The full log goes to $OUT, so a run cut by the device's time limit still reports its epochs.
  /usr/bin/time -f "wall %e s" bash -c "$(declare -f run); run experiments/demo.yaml --backend webgpu --set model.text=$text --out $OUT/demo-webgpu-text-$text" 2>&1 |
    tee "$OUT/demo-webgpu-text-$text.log" | grep --line-buffered -E 'backend|epoch (1|25|50|75|100)/100 |test:|wall'
done
echo "== LViT-T base 64, 224x224, batch 4, webgpu"
run experiments/demo.yaml --backend webgpu --out "$OUT/ref" --set model.image_size=224 \
  --set model.base_channels=64 --set train.batch=4 --set train.epochs=2 \
  --set data.synth.train=64 --set data.synth.val=8 --set data.synth.test=8 \
  --set train.min_save_epoch=1 2>&1 | grep -E 'backend|model:|epoch [12]/2 |test:'
find "$OUT" -name summary.json -exec sh -c 'echo "$1"; cat "$1"' _ {} \;
