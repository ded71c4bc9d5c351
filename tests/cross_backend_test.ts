/**
 * The two backends against each other on a whole U-Net training step (forward, loss,
 * backward, Adam, BN running statistics), and the diff tool finding a planted kernel bug at the
 * layer that holds it.
 */
import { noGpu } from "./harness.ts";
import { type Backend, selectBackend } from "../lib/backends/select.ts";
import { getOp } from "../lib/graph/mod.ts";
import type { CpuKernel } from "../kernels/cpu/types.ts";
import { type CpuLowering, cpuLowerings } from "../lib/backends/cpu/lower.ts";
import { unet } from "../lib/models/unet.ts";
import { blobSet } from "../lib/data/blobs.ts";
import { type DiffRow, diffTrainStep, formatDiff } from "../lib/run/diff.ts";

const OPTS = { batch: 2, channels: 3, height: 32, width: 32, seed: 5, lr: 1e-3 };
const model = (c: Parameters<typeof unet>[0], x: Parameters<typeof unet>[1]) =>
  unet(c, x, { widths: [8, 16, 32] });

async function diff(): Promise<DiffRow[]> {
  const d = blobSet(5, 0, OPTS.batch, OPTS.height);
  const [a, b]: Backend[] = [await selectBackend("webgpu", true), await selectBackend("cpu", true)];
  return await diffTrainStep(model, OPTS, { x: d.images, y: d.masks }, a, b);
}

// Two f32 implementations that sum in different orders. Measured on lavapipe vs OpenBLAS:
// activations within 1e-6 and gradients within 2e-6 of their layer's largest value after the
// whole backward pass; the bounds leave 10-100x headroom for other adapters and BLAS builds.
// Adam's first step moves each weight by about lr * sign(g): a conv bias followed by batch
// norm has an exactly-zero true gradient, so its rounding noise has a random sign and that
// weight moves by +lr on one backend and -lr on the other. Updates are therefore bounded by
// 2 lr absolute (observed 1.1e-3 with lr 1e-3; every other parameter agrees within 1e-7).
const TOL = { forward: 2e-5, backward: 2e-4, update: 2 * OPTS.lr };

Deno.test({
  name: "webgpu and cpu agree on a whole U-Net training step (loss, gradients, updates)",
  ignore: noGpu,
  sanitizeResources: false,
  fn: async () => {
    const rows = await diff();
    console.log(formatDiff(rows, ["webgpu", "cpu"], TOL.forward, TOL.update));
    const bad = rows.filter((r) => !(r.maxRel <= TOL[r.phase]));
    if (bad.length) {
      throw new Error(
        `layers over tolerance: ${bad.map((r) => `${r.phase} ${r.layer} ${r.maxRel}`).join("; ")}`,
      );
    }
    for (const phase of ["forward", "backward", "update"] as const) {
      if (!rows.some((r) => r.phase === phase)) throw new Error(`no ${phase} rows compared`);
    }
    if (!rows.some((r) => r.layer === "loss")) throw new Error("the loss was not compared");
  },
});

Deno.test({
  name: "diff reports a planted conv bug at the layer that holds it",
  ignore: noGpu,
  sanitizeResources: false,
  fn: async () => {
    const def = getOp("conv2d");
    const real: CpuLowering = cpuLowerings.get(def)!;
    // The bug: wrong output for the 8 -> 16 channel conv only (down1.nConvs.0.conv).
    cpuLowerings.set(def, (ins, attrs, out): CpuKernel => {
      const k = real(ins, attrs, out);
      if (ins[0][1] !== 8 || ins[1][0] !== 16) return k;
      return {
        scratch: k.scratch,
        run: (xs, y, s) => {
          k.run(xs, y, s);
          y[5] += 0.5;
        },
      };
    });
    let rows: DiffRow[];
    try {
      rows = await diff();
    } finally {
      cpuLowerings.set(def, real);
    }
    const first = rows.find((r) => !(r.maxRel <= 1e-3));
    if (!first || first.layer !== "down1.nConvs.0.conv" || first.phase !== "forward") {
      throw new Error(`expected forward down1.nConvs.0.conv first, got ${JSON.stringify(first)}`);
    }
  },
});
