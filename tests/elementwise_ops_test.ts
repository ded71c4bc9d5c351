/**
 * The elementwise ops: every sample of tests/op_info/elementwise.ts on WebGPU, on the CPU and by
 * finite differences; the segmentation loss composed from them against an independent float64
 * implementation; last, coverage.
 */
import {
  add,
  affine,
  bce,
  div,
  mean,
  mul,
  square,
  stepGt,
  stepLt,
  sum,
  type Tensor,
} from "../lib/graph/mod.ts";
import { runRef } from "../lib/backends/ref/interpreter.ts";
import { assertClose, buildCase, checkOp, fdCheck, noGpu, type OpCase, randn } from "./harness.ts";
import { numelOf, OpSuite } from "./op_suite.ts";
import { ELEMENTWISE_TABLE, mask, probs, TRANSC } from "./op_info/elementwise.ts";

const suite = new OpSuite("elementwise_ops_test.ts");
suite.table(ELEMENTWISE_TABLE);

// ---------------------------------------------------------------------------------------------
// The segmentation loss: class-balanced BCE + squared Dice.

/** Independent float64 implementation of the loss (see the brief in the module doc). */
function segLossF64(P: Float64Array, Y: Float64Array, B: number): number {
  const n = P.length / B;
  let nPos = 0, nNeg = 0, sPos = 0, sNeg = 0;
  for (let i = 0; i < P.length; i++) {
    const b = -(Y[i] * Math.max(Math.log(P[i]), -100) +
      (1 - Y[i]) * Math.max(Math.log(1 - P[i]), -100));
    if (Y[i] > 0.5) (nPos++, sPos += b);
    if (Y[i] < 0.5) (nNeg++, sNeg += b);
  }
  const lBce = 0.5 * sPos / (nPos + 1e-12) + 0.5 * sNeg / (nNeg + 1e-12);
  let lDice = 0;
  for (let b = 0; b < B; b++) {
    let py = 0, pp = 0, yy = 0;
    for (let i = b * n; i < (b + 1) * n; i++) {
      py += P[i] * Y[i];
      pp += P[i] * P[i];
      yy += Y[i] * Y[i];
    }
    lDice += (1 - (2 * py + 4e-5) / (pp + yy + 4e-5)) / B;
  }
  return 0.5 * lDice + 0.5 * lBce;
}

/** The same loss composed from graph ops. */
function segLossOps(p: Tensor, y: Tensor): Tensor {
  const all = p.shape.map((_, i) => i);
  const img = all.slice(1);
  const b = bce(p, y);
  const pos = stepGt(y, 0.5);
  const negm = stepLt(y, 0.5);
  const bPos = div(sum(mul(b, pos), all), add(sum(pos, all), 1e-12));
  const bNeg = div(sum(mul(b, negm), all), add(sum(negm, all), 1e-12));
  const lBce = add(affine(bPos, 0.5, 0), affine(bNeg, 0.5, 0));
  const inter = affine(sum(mul(p, y), img), 2, 4e-5);
  const den = add(add(sum(square(p), img), sum(square(y), img)), 4e-5);
  const dice = affine(div(inter, den), -1, 1);
  const lDice = mean(dice, all);
  return add(affine(lDice, 0.5, 0), affine(lBce, 0.5, 0));
}

type SegLoss = (p: Tensor, y: Tensor) => Tensor;
/** lib/train/loss.ts's segLoss when that module exists, else null. */
async function libSegLoss(): Promise<SegLoss | null> {
  const url = new URL("../lib/train/loss.ts", import.meta.url);
  try {
    await Deno.stat(url);
  } catch {
    return null;
  }
  const mod = await import(url.href);
  if (typeof mod.segLoss !== "function") throw new Error("lib/train/loss.ts has no segLoss");
  return mod.segLoss as SegLoss;
}

/** Shapes, and whether the mask is empty (no positive pixel in the whole batch). */
const SEG_SHAPES: [number[], boolean][] = [
  [[3, 1, 5, 7], false],
  [[1, 1, 4, 4], false],
  [[2, 1, 1, 1], false],
  [[2, 1, 2, 3], true],
];
/** Masks: random, with image 0 all ones and image 1 all zeros when B >= 3; or all zeros. */
function segMask(shape: number[], seed: number, empty = false): Float64Array {
  const n = numelOf(shape);
  const y = Float64Array.from(randn(n, seed), (v) => (v > 0.4 && !empty ? 1 : 0));
  if (shape[0] >= 3) {
    const per = n / shape[0];
    y.fill(1, 0, per);
    y.fill(0, per, 2 * per);
  }
  return y;
}

for (
  const [which, get] of [
    ["ops composition", () => Promise.resolve<SegLoss | null>(segLossOps)],
    ["lib/train/loss.ts segLoss", libSegLoss],
  ] as const
) {
  Deno.test(`segmentation loss (${which}) vs independent float64`, async (t) => {
    const f = await get();
    if (!f) {
      console.log("  lib/train/loss.ts not present: only the ops composition is tested");
      return;
    }
    for (const [shape, empty] of SEG_SHAPES) {
      await t.step(`[${shape}]${empty ? " empty mask" : ""}`, () => {
        const y = segMask(shape, 702, empty);
        const c: OpCase = {
          name: `segLoss ${which} [${shape}]`,
          inputs: { p: probs(shape, 701), y: { ...mask(shape, 0), values: y } },
          build: (x) => f(x.p, x.y),
        };
        const cg = buildCase(c);
        if (cg.y.size !== 1) throw new Error(`loss has shape [${cg.y.shape}]`);
        for (const tt of cg.g.nodes) {
          if (tt.kind === "node" && tt.id <= cg.y.id) suite.fdForward.add(tt.op);
        }
        const got = runRef({ l: cg.y }, cg.leaves).l[0];
        const want = segLossF64(cg.leaves.get("p")!, cg.leaves.get("y")!, shape[0]);
        // Float64 both sides, but op constants (the 1/B of the mean, 1e-12, 4e-5) are rounded to
        // f32 by design (ref and kernels agree on them): 1e-7 relative.
        assertClose(`segLoss ${which} [${shape}]`, [got], [want], 1e-12, 1e-7);
        // Its gradient with respect to p by finite differences, in float64.
        fdCheck(c);
      });
    }
    const c: OpCase = {
      name: `segLoss ${which}`,
      inputs: {
        p: probs([3, 1, 5, 7], 703),
        y: { ...mask([3, 1, 5, 7], 0), values: segMask([3, 1, 5, 7], 704) },
      },
      build: (x) => f(x.p, x.y),
      // A loss of O(1) from sums of <= 105 terms; gradients O(1/n_pos): TRANSC tolerances.
      ...TRANSC,
    };
    suite.record(c, "cpu");
    await checkOp(c, "cpu");
    if (noGpu) return;
    suite.record(c, "webgpu");
    await checkOp(c);
  });
}

suite.coverageTest(["relu_grad", "sigmoid_grad", "bce_grad"]);
