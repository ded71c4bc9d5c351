/**
 * Every op of the table, forward and backward, on awkward shapes:
 * - on WebGPU against the float64 reference (`checkOp`: y and the gradients of sum(y * r));
 * - in float64, autodiff against central finite differences (`fdCheck`), for every op with a
 *   gradient rule;
 * - the effect ops (assign, adam) against the reference and a hand-written torch.optim.Adam loop;
 * - the segmentation loss against an independent float64 implementation;
 * - shape errors at graph-build time;
 * - last, a coverage test: every op of `allOps()` must have been exercised here.
 *
 * Tolerances are given per group, with the reason, next to the cases. Notation: f32 unit
 * roundoff u = 6e-8; an f32 sum of K terms of magnitude |t| is off by ~sqrt(K)..K * u * |t|.
 */
import {
  add,
  affine,
  allOps,
  bce,
  bceGrad,
  bnApplyOp,
  bnRunningUpdate,
  bnStatsOf,
  concat,
  conv2d,
  convTranspose,
  div,
  exp,
  expand,
  fma,
  gradients,
  Graph,
  log,
  maxpool2d,
  mean,
  mul,
  neg,
  pad,
  relu,
  reluGrad,
  reshape,
  rsqrt,
  sigmoid,
  sigmoidGrad,
  slice,
  sqrt,
  square,
  stepGt,
  stepLt,
  sub,
  sum,
  type Tensor,
  upsampleNearest2d,
} from "../lib/graph/mod.ts";
import { cpuLowerings } from "../lib/backends/cpu/lower.ts";
import { runRef } from "../lib/backends/ref/interpreter.ts";
import { batchNorm2d } from "../lib/nn/layers.ts";
import { OP_OWNERS } from "./op_coverage.ts";
import {
  assertClose,
  buildCase,
  checkOp,
  fdCheck,
  noGpu,
  type OpCase,
  randn,
  runOn,
} from "./harness.ts";
import { expectShapeError } from "./assert.ts";
import { given, numelOf, type Spec, T } from "./op_suite.ts";

// ---------------------------------------------------------------------------------------------
// Bookkeeping for the coverage test at the end of the file.

/** Ops in the forward part of a case run on WebGPU. */
const gpuForward = new Set<string>();
/** Ops in the forward part of a WebGPU case whose backward was compared too. */
const gpuBackward = new Set<string>();
/** Ops in the backward graphs of WebGPU cases (the *_grad / *_bwd ops as autodiff uses them). */
const gpuInBackward = new Set<string>();
/** Ops in the forward part of a finite-difference case. */
const fdForward = new Set<string>();
/** Effect ops run on WebGPU against the reference. */
const effectsRun = new Set<string>();

function record(c: OpCase, gpu: boolean) {
  const cg = buildCase(c);
  for (const t of cg.g.nodes) {
    if (t.kind !== "node") continue;
    if (t.id <= cg.y.id) {
      if (!gpu) fdForward.add(t.op);
      else {
        gpuForward.add(t.op);
        if (!c.forwardOnly) gpuBackward.add(t.op);
      }
    } else if (gpu && t.id > cg.loss.id) gpuInBackward.add(t.op);
  }
}

interface Case extends OpCase {
  /** Finite differences: false to skip (large shapes already covered by a small case). */
  fd?: false | { eps?: number; tol?: number };
}

/** Registers one WebGPU test and (unless forwardOnly or fd: false) one finite-difference test. */
function cases(group: string, tol: { atol: number; rtol: number }, list: Case[]) {
  for (const c0 of list) {
    const c: Case = { atol: tol.atol, rtol: tol.rtol, ...c0, name: `${group}: ${c0.name}` };
    Deno.test({
      name: `${c.name} [webgpu]`,
      ignore: noGpu,
      fn: async () => {
        record(c, true);
        await checkOp(c);
      },
    });
    Deno.test(`${c.name} [cpu]`, () => checkOp(c, "cpu"));
    if (!c.forwardOnly && c.fd !== false) {
      const fd = c.fd ?? {};
      Deno.test(`${c.name} [fd]`, () => {
        record(c, false);
        fdCheck(c, fd.eps, fd.tol);
      });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Input helpers.

/** Values in [lo, inf): lo + |N(0,1)|, for log / sqrt / rsqrt / denominators. */
const positive = (shape: number[], seed: number, lo = 0.5): Spec => ({
  shape,
  values: Float64Array.from(randn(numelOf(shape), seed), (v) => lo + Math.abs(v)),
});
/** Values bounded away from zero with both signs (denominators). */
const awayFromZero = (shape: number[], seed: number): Spec => ({
  shape,
  values: Float64Array.from(randn(numelOf(shape), seed), (v) => Math.sign(v || 1) * (0.5 + v * v)),
});
/** Probabilities in [0.05, 0.95]. */
const probs = (shape: number[], seed: number): Spec => ({
  shape,
  values: Float64Array.from(randn(numelOf(shape), seed), (v) => 0.05 + 0.9 / (1 + Math.exp(-v))),
});
/** A 0/1 mask, not differentiated. */
const mask = (shape: number[], seed: number): Spec => ({
  shape,
  values: Float64Array.from(randn(numelOf(shape), seed), (v) => (v > 0.3 ? 1 : 0)),
  noGrad: true,
});

// ---------------------------------------------------------------------------------------------
// Elementwise ops.

// Exact arithmetic (add, sub, mul, neg, fma, affine, square, expand, steps, relu): each output is
// one f32 rounding of the f64 result of f32 inputs (<= 1 ulp = 6e-8 relative); the backward adds
// broadcast reductions of at most ~60 terms, so sqrt(60) * u ~ 5e-7 relative to the sum of
// magnitudes. atol 2e-6 / rtol 2e-6 leaves a 4x margin.
const EXACT = { atol: 2e-6, rtol: 2e-6 };

cases("add", EXACT, [
  { name: "[3,5] + [1,5]", inputs: { a: T(3, 5), b: T(1, 5) }, build: (x) => add(x.a, x.b) },
  {
    name: "[2,1,4] + [3,1] (both broadcast)",
    inputs: { a: T(2, 1, 4), b: T(3, 1) },
    build: (x) => add(x.a, x.b),
  },
  { name: "[] + [2,3] (scalar)", inputs: { a: T(), b: T(2, 3) }, build: (x) => add(x.a, x.b) },
  { name: "[7] + [1]", inputs: { a: T(7), b: T(1) }, build: (x) => add(x.a, x.b) },
  {
    name: "[2,3,5,7] + [3,1,1] (per channel)",
    inputs: { a: T(2, 3, 5, 7), b: T(3, 1, 1) },
    build: (x) => add(x.a, x.b),
  },
  {
    name: "same input twice (gradient accumulation)",
    inputs: { a: T(3, 4) },
    build: (x) => add(x.a, x.a),
  },
]);

cases("sub", EXACT, [
  {
    name: "[4,1,3] - [1,5,1]",
    inputs: { a: T(4, 1, 3), b: T(1, 5, 1) },
    build: (x) => sub(x.a, x.b),
  },
  { name: "[9] - [9]", inputs: { a: T(9), b: T(9) }, build: (x) => sub(x.a, x.b) },
  { name: "[3,2] - 1.5 (affine)", inputs: { a: T(3, 2) }, build: (x) => sub(x.a, 1.5) },
]);

// More than 65535 workgroups of 64: the compiler folds the grid into 2-D, and kernels rebuild
// their index from num_workgroups. Forward only (the float64 backward would take seconds).
cases("add 2-D grid", EXACT, [
  {
    name: "[64*65535 + 37] + [1]",
    inputs: { a: T(64 * 65535 + 37), b: T(1) },
    build: (x) => add(x.a, x.b),
    forwardOnly: true,
  },
]);

cases("mul", EXACT, [
  { name: "[2,3,4] * [4]", inputs: { a: T(2, 3, 4), b: T(4) }, build: (x) => mul(x.a, x.b) },
  {
    name: "[3,1,5] * [3,7,1]",
    inputs: { a: T(3, 1, 5), b: T(3, 7, 1) },
    build: (x) => mul(x.a, x.b),
  },
  { name: "[1,1] * [13,11]", inputs: { a: T(1, 1), b: T(13, 11) }, build: (x) => mul(x.a, x.b) },
]);

// Division: WGSL allows 2.5 ulp for f32 division, and the backward divides twice.
const DIV = { atol: 2e-6, rtol: 4e-6 };
cases("div", DIV, [
  {
    name: "[3,5] / [3,1]",
    inputs: { a: T(3, 5), b: awayFromZero([3, 1], 11) },
    build: (x) => div(x.a, x.b),
  },
  {
    name: "[1,4] / [5,4]",
    inputs: { a: T(1, 4), b: awayFromZero([5, 4], 12) },
    build: (x) => div(x.a, x.b),
  },
  { name: "[7] / 3 (affine)", inputs: { a: T(7) }, build: (x) => div(x.a, 3) },
]);

cases("fma", EXACT, [
  {
    name: "[2,3,4,5] * [3,1,1] + [3,1,1] (batch-norm shape)",
    inputs: { x: T(2, 3, 4, 5), s: T(3, 1, 1), t: T(3, 1, 1) },
    build: (x) => fma(x.x, x.s, x.t),
  },
  {
    name: "[2,3,4,1] * [3,1,1] + [1,4,5] (three broadcasts)",
    inputs: { x: T(2, 3, 4, 1), s: T(3, 1, 1), t: T(1, 4, 5) },
    build: (x) => fma(x.x, x.s, x.t),
  },
  {
    name: "same shapes [5,3]",
    inputs: { x: T(5, 3), s: T(5, 3), t: T(5, 3) },
    build: (x) => fma(x.x, x.s, x.t),
  },
]);

// affine alone is one f32 multiply-add of exact f32 constants (the reference rounds a and b with
// Math.fround like the kernel's literals): <= 2 roundings, 1.2e-7 relative. The tight tolerance
// catches a constant printed with too few digits (1 + 2^-20 would become 1).
cases("affine exact constants", { atol: 1e-7, rtol: 3e-7 }, [
  {
    name: "affine (1 + 2^-20) x + 2^-20",
    inputs: { a: T(4, 5) },
    build: (x) => affine(x.a, 1 + 2 ** -20, 2 ** -20),
  },
  {
    name: "affine (-3 - 2^-21) x + 1e-3",
    inputs: { a: T(9) },
    build: (x) => affine(x.a, -3 - 2 ** -21, 1e-3),
  },
]);

cases("affine / neg / square", EXACT, [
  { name: "affine -1.7 x + 0.3", inputs: { a: T(3, 7) }, build: (x) => affine(x.a, -1.7, 0.3) },
  {
    name: "affine 0.1 x (inexact constant)",
    inputs: { a: T(11) },
    build: (x) => affine(x.a, 0.1, 0),
  },
  { name: "neg [2,3,5]", inputs: { a: T(2, 3, 5) }, build: (x) => neg(x.a) },
  { name: "neg [] (scalar)", inputs: { a: T() }, build: (x) => neg(x.a) },
  { name: "square [4,9]", inputs: { a: T(4, 9) }, build: (x) => square(x.a) },
]);

// Transcendentals: lavapipe's exp/log/sqrt are a few ulp (LLVM's vectorised approximations), and
// the backward multiplies by y or 1/x: rtol 4e-6 = ~64 ulp, atol 1e-6 for results near zero
// (log near 1, sigmoid of large |x|).
const TRANSC = { atol: 1e-6, rtol: 4e-6 };
cases("exp / log / sqrt / rsqrt", TRANSC, [
  { name: "exp [3,7]", inputs: { a: T(3, 7) }, build: (x) => exp(x.a) },
  { name: "exp [1,1,1]", inputs: { a: T(1, 1, 1) }, build: (x) => exp(x.a) },
  {
    name: "log [5,3] of positives",
    inputs: { a: positive([5, 3], 21, 0.2) },
    build: (x) => log(x.a),
  },
  {
    name: "log near 1",
    inputs: { a: given([6], [0.999, 1, 1.001, 0.5, 2, 1e-3]) },
    build: (x) => log(x.a),
  },
  { name: "sqrt [2,9] of positives", inputs: { a: positive([2, 9], 22) }, build: (x) => sqrt(x.a) },
  { name: "rsqrt [13] of positives", inputs: { a: positive([13], 23) }, build: (x) => rsqrt(x.a) },
  {
    name: "rsqrt [3,1,1] + 1e-5 (batch-norm use)",
    inputs: { a: positive([3, 1, 1], 24, 0.01) },
    build: (x) => rsqrt(add(x.a, 1e-5)),
  },
]);

cases("relu / sigmoid", TRANSC, [
  { name: "relu [3,5,7]", inputs: { a: T(3, 5, 7) }, build: (x) => relu(x.a) },
  { name: "sigmoid [4,11]", inputs: { a: T(4, 11) }, build: (x) => sigmoid(x.a) },
  {
    name: "sigmoid saturating",
    inputs: { a: given([8], [-90, -30, -17, -1e-3, 0, 1e-3, 17, 90]) },
    build: (x) => sigmoid(x.a),
  },
  {
    name: "relu_grad forward [3,5,7]",
    inputs: { v: T(3, 5, 7), d: T(3, 5, 7) },
    build: (x) => reluGrad(x.v, x.d),
    forwardOnly: true,
  },
  {
    name: "relu_grad forward at 0 and -0",
    inputs: { v: given([4], [0, -0, 1e-30, -1e-30]), d: given([4], [1, 2, 3, 4]) },
    build: (x) => reluGrad(x.v, x.d),
    forwardOnly: true,
  },
  {
    name: "sigmoid_grad forward [2,3,5]",
    inputs: { s: probs([2, 3, 5], 31), d: T(2, 3, 5) },
    build: (x) => sigmoidGrad(x.s, x.d),
    forwardOnly: true,
  },
]);

// Steps have no gradient: their backward must be exactly zero, which finite differences confirm
// (no input lies within eps of the threshold).
cases("step_gt / step_lt", EXACT, [
  { name: "step_gt 0.3 [5,7]", inputs: { a: T(5, 7) }, build: (x) => stepGt(x.a, 0.3) },
  { name: "step_lt -0.2 [3,1,4]", inputs: { a: T(3, 1, 4) }, build: (x) => stepLt(x.a, -0.2) },
  {
    name: "step_gt / step_lt at the threshold",
    inputs: { a: given([5], [0.5, 0.49999997, 0.50000006, 0, 1]) },
    build: (x) => concat([stepGt(x.a, 0.5), stepLt(x.a, 0.5)], 0),
    fd: false,
  },
  {
    name: "step mask times input (gradient flows through mul only)",
    inputs: { a: T(4, 6) },
    build: (x) => mul(x.a, stepGt(x.a, 0)),
  },
]);

cases("expand", EXACT, [
  { name: "[3,1] -> [2,3,4]", inputs: { a: T(3, 1) }, build: (x) => expand(x.a, [2, 3, 4]) },
  { name: "[1] -> [5]", inputs: { a: T(1) }, build: (x) => expand(x.a, [5]) },
  { name: "[1,4,1] -> [3,4,2]", inputs: { a: T(1, 4, 1) }, build: (x) => expand(x.a, [3, 4, 2]) },
  { name: "[2,3] -> [2,3] (identity)", inputs: { a: T(2, 3) }, build: (x) => expand(x.a, [2, 3]) },
]);

// BCE: log on lavapipe is a few ulp of the log (~1e-7 absolute for |log| ~ 3); the backward
// divides by p(1-p) >= 0.0475 here: TRANSC. The clamp cases have gradients of 1e12 * d: relative.
cases("bce", TRANSC, [
  {
    name: "bce [2,1,5,7]",
    inputs: { p: probs([2, 1, 5, 7], 41), y: mask([2, 1, 5, 7], 42) },
    build: (x) => bce(x.p, x.y),
  },
  {
    name: "bce [3,13] with [3,1] targets (broadcast)",
    inputs: { p: probs([3, 13], 43), y: mask([3, 1], 44) },
    build: (x) => bce(x.p, x.y),
  },
  {
    name: "bce clamps: p in {0, 1, 1e-30, 1 - 2^-24}",
    inputs: {
      p: given([8], [0, 0, 1, 1, 1e-30, 1e-30, 1 - 2 ** -24, 1 - 2 ** -24]),
      y: { ...given([8], [0, 1, 0, 1, 0, 1, 0, 1]), noGrad: true },
    },
    build: (x) => bce(x.p, x.y),
    forwardOnly: true,
  },
  {
    name: "bce_grad forward [3,1,4,5]",
    inputs: { p: probs([3, 1, 4, 5], 45), y: mask([3, 1, 4, 5], 46), d: T(3, 1, 4, 5) },
    build: (x) => bceGrad(x.p, x.y, x.d),
    forwardOnly: true,
  },
  {
    name: "bce_grad forward at the clamp",
    inputs: {
      p: given([6], [0, 1, 1e-30, 1 - 2 ** -24, 0.5, 0.25]),
      y: { ...given([6], [1, 0, 1, 0, 1, 0]), noGrad: true },
      d: given([6], [1, -2, 0.5, 3, -1, 2]),
    },
    build: (x) => bceGrad(x.p, x.y, x.d),
    forwardOnly: true,
  },
]);

// ---------------------------------------------------------------------------------------------
// Shape ops: pure data movement is exact (atol 0); sums are f32 reductions.

const MOVE = { atol: 0, rtol: 0 };
cases("reshape", MOVE, [
  { name: "[2,3,4] -> [6,4]", inputs: { a: T(2, 3, 4) }, build: (x) => reshape(x.a, [6, 4]) },
  {
    name: "[5,3] -> [15] -> [3,5] of a node",
    inputs: { a: T(5, 3) },
    build: (x) => reshape(reshape(neg(x.a), [15]), [3, 5]),
  },
  { name: "[7] -> [1,7,1,1]", inputs: { a: T(7) }, build: (x) => reshape(x.a, [1, 7, 1, 1]) },
]);

cases("slice", MOVE, [
  { name: "axis 1 [2,5,3] 1..3", inputs: { a: T(2, 5, 3) }, build: (x) => slice(x.a, 1, 1, 2) },
  { name: "axis 0 [7,2] 6..7", inputs: { a: T(7, 2) }, build: (x) => slice(x.a, 0, 6, 1) },
  {
    name: "axis 3 [2,3,2,9] 2..7",
    inputs: { a: T(2, 3, 2, 9) },
    build: (x) => slice(x.a, 3, 2, 5),
  },
  { name: "whole axis", inputs: { a: T(3, 4) }, build: (x) => slice(x.a, 1, 0, 4) },
]);

cases("pad", MOVE, [
  { name: "axis 1 [2,3,4] +2 +1", inputs: { a: T(2, 3, 4) }, build: (x) => pad(x.a, 1, 2, 1) },
  { name: "axis 0 [3,5] +0 +3", inputs: { a: T(3, 5) }, build: (x) => pad(x.a, 0, 0, 3) },
  { name: "axis 3 [1,2,3,3] +3 +0", inputs: { a: T(1, 2, 3, 3) }, build: (x) => pad(x.a, 3, 3, 0) },
  { name: "axis 1 [2,1,1] +0 +0", inputs: { a: T(2, 1, 1) }, build: (x) => pad(x.a, 1, 0, 0) },
]);

cases("concat", MOVE, [
  {
    name: "axis 1 of [2,1,3], [2,4,3], [2,2,3]",
    inputs: { a: T(2, 1, 3), b: T(2, 4, 3), c: T(2, 2, 3) },
    build: (x) => concat([x.a, x.b, x.c], 1),
  },
  {
    name: "axis 0 of [1,5], [3,5]",
    inputs: { a: T(1, 5), b: T(3, 5) },
    build: (x) => concat([x.a, x.b], 0),
  },
  {
    name: "axis 3 of [2,3,2,1], [2,3,2,4]",
    inputs: { a: T(2, 3, 2, 1), b: T(2, 3, 2, 4) },
    build: (x) => concat([x.a, x.b], 3),
  },
  { name: "a single input", inputs: { a: T(3, 2) }, build: (x) => concat([x.a], 1) },
  {
    name: "skip connection: concat([x, relu(x)])",
    inputs: { a: T(2, 3, 2, 2) },
    build: (x) => concat([x.a, relu(x.a)], 1),
    // Its input gradient adds the two branches: one f32 rounding.
    ...EXACT,
  },
]);

// Sums: R terms of N(0,1) values, result ~ sqrt(R); f32 error ~ sqrt(R)..R * u * sqrt(R).
// R <= 100: atol 2e-6. The two-stage path (R > 1024, < 1024 outputs) sums chunks of 256 and
// then the partial sums: R = 4551, |y| ~ 70, error ~ 1e-5 at worst: atol 1e-4.
cases("sum", { atol: 2e-6, rtol: 2e-6 }, [
  {
    name: "[2,3,5,7] over [0,2,3]",
    inputs: { a: T(2, 3, 5, 7) },
    build: (x) => sum(x.a, [0, 2, 3]),
  },
  { name: "[3,4,5] over [1]", inputs: { a: T(3, 4, 5) }, build: (x) => sum(x.a, [1]) },
  { name: "[3,4,5] over [-1]", inputs: { a: T(3, 4, 5) }, build: (x) => sum(x.a, [-1]) },
  { name: "[2,5] over all", inputs: { a: T(2, 5) }, build: (x) => sum(x.a, [0, 1]) },
  { name: "[4,3] over [] (identity)", inputs: { a: T(4, 3) }, build: (x) => sum(x.a, []) },
  { name: "mean [3,4,2] over [0,2]", inputs: { a: T(3, 4, 2) }, build: (x) => mean(x.a, [0, 2]) },
  {
    // The CPU backend adds whole rows here (inner run 117 >= 64) instead of strided gathers.
    name: "[2,5,9,13] over [1] (channel sum, row-wise on cpu)",
    inputs: { a: T(2, 5, 9, 13) },
    build: (x) => sum(x.a, [1]),
  },
  {
    name: "[7,1,70] over [0] (leading axis, row-wise on cpu)",
    inputs: { a: T(7, 1, 70) },
    build: (x) => sum(x.a, [0]),
    fd: false,
  },
  {
    name: "[1030,2] over [1] (many outputs, single stage)",
    inputs: { a: T(1030, 2) },
    build: (x) => sum(x.a, [1]),
    fd: false,
  },
]);
cases("sum two-stage", { atol: 1e-4, rtol: 1e-5 }, [
  {
    name: "[3,2,37,41] over [0,2,3] (R = 4551, 2 outputs)",
    inputs: { a: T(3, 2, 37, 41) },
    build: (x) => sum(x.a, [0, 2, 3]),
    fd: false,
  },
  {
    name: "[1100,3] over [0] (R = 1100, strided)",
    inputs: { a: T(1100, 3) },
    build: (x) => sum(x.a, [0]),
    fd: false,
  },
  {
    name: "[2049] over all",
    inputs: { a: T(2049) },
    build: (x) => sum(x.a, [0]),
    fd: false,
  },
]);

// ---------------------------------------------------------------------------------------------
// Convolutions (implicit GEMMs with 8x8 register tiles, split-K when the grid is small).
// K = C*KH*KW (forward), O*KH*KW (data gradient) or B*OH*OW (weight gradient) products of N(0,1)
// values: |y| ~ sqrt(K) and the f32 error ~ sqrt(K) * u * sqrt(K) ~ K * 6e-8. K <= 261 here:
// atol 2e-5, rtol 1e-5 (observed <= 5e-6). Weight gradients with K = B*OH*OW up to 400 and the
// transposed convs (K up to 270): atol 5e-5 (observed <= 1.4e-5).
const CONV = { atol: 2e-5, rtol: 1e-5 };
const CONV_BIG_K = { atol: 5e-5, rtol: 1e-5 };

interface ConvOpts {
  stride?: number;
  padding?: number;
  dilation?: number;
}
function convCase(
  name: string,
  x: number[],
  w: number[],
  bias: boolean,
  opts: ConvOpts,
  extra: Partial<Case> = {},
): Case {
  const inputs: Case["inputs"] = { x: T(...x), w: T(...w) };
  if (bias) inputs.b = T(w[0]);
  return {
    name: `${name} x[${x}] w[${w}]${bias ? " +bias" : ""} ${JSON.stringify(opts)}`,
    inputs,
    build: (t) => conv2d(t.x, t.w, t.b, { ...opts }),
    ...extra,
  };
}

cases("conv2d", CONV, [
  convCase("3x3 s1 p1", [2, 3, 9, 7], [5, 3, 3, 3], true, { padding: 1 }),
  convCase("3x3 s2 p0", [1, 3, 8, 9], [4, 3, 3, 3], false, { stride: 2 }),
  convCase("5x5 s3 p2 (kernel > stride)", [3, 2, 11, 10], [3, 2, 5, 5], true, {
    stride: 3,
    padding: 2,
  }),
  convCase("3x3 s3 p1", [1, 2, 7, 8], [3, 2, 3, 3], false, { stride: 3, padding: 1 }),
  convCase("dilation 2 p2", [1, 3, 9, 9], [6, 3, 3, 3], true, { dilation: 2, padding: 2 }),
  convCase("dilation 2 s2 p1", [2, 2, 10, 7], [3, 2, 3, 3], false, {
    stride: 2,
    padding: 1,
    dilation: 2,
  }),
  convCase("1x1 kernel", [3, 13, 5, 3], [9, 13, 1, 1], true, {}),
  convCase("1x1 kernel s2", [1, 3, 7, 7], [2, 3, 1, 1], false, { stride: 2 }),
  convCase("1x1 spatial, 3x3 p1", [3, 4, 1, 1], [5, 4, 3, 3], true, { padding: 1 }),
  convCase("1x1 spatial, 1x1 kernel", [1, 3, 1, 1], [5, 3, 1, 1], false, {}),
  convCase("13 outputs (partial M tile)", [1, 5, 6, 6], [13, 5, 3, 3], true, { padding: 1 }),
  convCase("2x2 s2 (kernel = stride)", [1, 3, 6, 6], [4, 3, 2, 2], false, { stride: 2 }),
  convCase("3x1 kernel p1", [2, 2, 6, 7], [3, 2, 3, 1], true, { padding: 1 }),
  convCase("3x3 p2 larger output", [1, 1, 3, 4], [2, 1, 3, 3], false, { padding: 2 }),
  convCase("1x1 kernel s2 p2 (padding > kernel)", [1, 2, 5, 4], [3, 2, 1, 1], true, {
    stride: 2,
    padding: 2,
  }),
  // Forward K = 29*9 = 261 >= 256 on a 1-tile grid: split-K with the bias in the second pass.
  convCase("split-K forward", [1, 29, 4, 4], [3, 29, 3, 3], true, {}),
  // Data gradient K = O*9 = 261 on a small grid: split-K backward data.
  convCase("split-K backward data", [1, 2, 4, 4], [29, 2, 3, 3], false, { padding: 1 }),
]);
cases("conv2d weight gradient split-K", CONV_BIG_K, [
  // Weight gradient K = B*OH*OW = 3*11*11 = 363, M = 3 outputs, N = 2*9: split-K.
  convCase("B=3 11x11", [3, 2, 11, 11], [3, 2, 3, 3], true, { padding: 1 }),
  // K = 1*20*20 = 400 with 5 outputs and a 1x1 kernel; K = 3*11*10 = 330 with s2 d2.
  convCase("B=1 20x20 1x1", [1, 3, 20, 20], [5, 3, 1, 1], false, {}, { fd: false }),
  convCase("B=3 s2 d2", [3, 3, 25, 23], [2, 3, 3, 3], true, { stride: 2, dilation: 2 }, {
    fd: false,
  }),
]);

// The backward-only conv ops called directly (forward tests of their own).
function convOut(n: number, k: number, o: ConvOpts) {
  const s = o.stride ?? 1, p = o.padding ?? 0, d = o.dilation ?? 1;
  return Math.floor((n + 2 * p - d * (k - 1) - 1) / s) + 1;
}
function bwdCases(name: string, x: number[], w: number[], o: ConvOpts): Case[] {
  const attrs = { stride: 1, padding: 0, dilation: 1, ...o };
  const dy = [x[0], w[0], convOut(x[2], w[2], o), convOut(x[3], w[3], o)];
  return [
    {
      name: `conv2d_bwd_data ${name}`,
      inputs: { dy: T(...dy), w: T(...w) },
      build: (t) => t.dy.graph.apply("conv2d_bwd_data", [t.dy, t.w], { ...attrs, inShape: x }),
      forwardOnly: true,
    },
    {
      name: `conv2d_bwd_weight ${name}`,
      inputs: { x: T(...x), dy: T(...dy) },
      build: (t) => t.x.graph.apply("conv2d_bwd_weight", [t.x, t.dy], { ...attrs, wShape: w }),
      forwardOnly: true,
    },
  ];
}
cases("conv2d backward ops", CONV_BIG_K, [
  ...bwdCases("s2 p1 d1", [2, 3, 9, 8], [5, 3, 3, 3], { stride: 2, padding: 1 }),
  ...bwdCases("s1 p2 d2", [1, 2, 7, 7], [3, 2, 3, 3], { padding: 2, dilation: 2 }),
  ...bwdCases("s3 p0 5x5", [3, 2, 11, 13], [4, 2, 5, 5], { stride: 3 }),
  ...bwdCases("split-K", [3, 2, 11, 11], [3, 2, 3, 3], { padding: 1 }),
]);

// Transposed conv (kernel = stride = f). Same accumulation argument as conv2d: K = C (forward),
// O*f*f (data gradient), B*H*W (weight gradient), all <= 270 here.
function convTCase(
  name: string,
  x: number[],
  w: number[],
  bias: boolean,
  extra: Partial<Case> = {},
) {
  const inputs: Case["inputs"] = { x: T(...x), w: T(...w) };
  if (bias) inputs.b = T(w[1]);
  return {
    name: `${name} x[${x}] w[${w}]${bias ? " +bias" : ""}`,
    inputs,
    build: (t: Record<string, Tensor>) => convTranspose(t.x, t.w, t.b),
    ...extra,
  };
}
cases("conv_transpose", CONV_BIG_K, [
  convTCase("f=2", [2, 3, 4, 5], [3, 4, 2, 2], true),
  convTCase("f=3", [1, 2, 3, 2], [2, 5, 3, 3], false),
  convTCase("f=1", [3, 3, 2, 2], [3, 2, 1, 1], true),
  convTCase("1x1 spatial", [1, 5, 1, 1], [5, 3, 2, 2], true),
  convTCase("13 channels in, 9 out", [1, 13, 3, 3], [13, 9, 2, 2], false),
  // Weight gradient K = B*H*W = 270: split-K.
  convTCase("split-K weight gradient", [3, 3, 9, 10], [3, 2, 2, 2], true, { fd: false }),
  convTCase("split-K weight gradient (small)", [2, 1, 9, 15], [1, 1, 2, 2], false),
  // Forward K = C = 260 on a 1-tile grid: split-K with the bias in the second pass.
  convTCase("split-K forward", [1, 260, 1, 2], [260, 1, 2, 2], true),
  // Data gradient K = O*f*f = 260: split-K.
  convTCase("split-K data gradient", [1, 2, 2, 2], [2, 65, 2, 2], false),
  {
    name: "conv_transpose_bwd_data forward",
    inputs: { dy: T(2, 4, 6, 10), w: T(3, 4, 2, 2) },
    build: (t) => t.dy.graph.apply("conv_transpose_bwd_data", [t.dy, t.w]),
    forwardOnly: true,
  },
  {
    name: "conv_transpose_bwd_weight forward",
    inputs: { x: T(3, 3, 3, 5), dy: T(3, 2, 9, 15) },
    build: (t) =>
      t.x.graph.apply("conv_transpose_bwd_weight", [t.x, t.dy], { wShape: [3, 2, 3, 3] }),
    forwardOnly: true,
  },
]);

// ---------------------------------------------------------------------------------------------
// Pooling and upsampling. Max and nearest copies are exact; the max-pool gradient sums at most
// ceil(k/s)^2 = 4 values and pool_sum f*f <= 9 values: atol 1e-6.
const POOL = { atol: 1e-6, rtol: 1e-6 };
const mp = (x: number[], k: number, s: number, extra: Partial<Case> = {}): Case => ({
  name: `maxpool2d k${k} s${s} x[${x}]`,
  inputs: { x: T(...x) },
  build: (t) => maxpool2d(t.x, k, s),
  ...extra,
});
cases("maxpool2d", POOL, [
  mp([2, 3, 8, 6], 2, 2),
  mp([1, 2, 7, 9], 2, 2),
  mp([2, 2, 9, 7], 3, 2),
  mp([3, 1, 8, 11], 3, 2),
  mp([1, 3, 5, 6], 3, 1),
  mp([1, 2, 3, 3], 3, 3),
  mp([3, 5, 2, 2], 2, 2),
  mp([1, 2, 8, 11], 2, 3),
  {
    name: "maxpool2d ties: first maximum wins",
    inputs: { x: given([1, 1, 4, 4], [1, 1, 0, 2, 1, 1, 2, 2, 3, 0, 0, 0, 0, 3, 0, 0]) },
    build: (t) => maxpool2d(t.x, 2, 2),
    fd: false,
  },
  {
    name: "maxpool2d_bwd forward k3 s2",
    inputs: { x: T(2, 3, 9, 8), dy: T(2, 3, 4, 3) },
    build: (t) => t.x.graph.apply("maxpool2d_bwd", [t.x, t.dy], { k: 3, s: 2 }),
    forwardOnly: true,
  },
  {
    name: "maxpool2d_bwd forward k2 s2 odd",
    inputs: { x: T(1, 2, 7, 5), dy: T(1, 2, 3, 2) },
    build: (t) => t.x.graph.apply("maxpool2d_bwd", [t.x, t.dy], { k: 2, s: 2 }),
    forwardOnly: true,
  },
]);

// Fused batch norm: statistics over (n, h, w) of up to 105 terms, then a division by the
// standard deviation, which scales absolute errors by 1/std (inputs are N(0,1), std ~ 1).
const BN = { atol: 1e-5, rtol: 1e-5 };
const bnCase = (x: number[], seed: number, relu = false): Case => ({
  name: `bn_stats + bn_apply${relu ? " + relu" : ""} x[${x}]`,
  inputs: {
    x: { shape: x, values: randn(numelOf(x), seed) },
    g: { shape: [x[1]], values: randn(x[1], seed + 1).map((v) => 1 + 0.3 * v) },
    b: T(x[1]),
  },
  build: (t) => bnApplyOp(t.x, bnStatsOf(t.x), t.g, t.b, 1e-5, relu),
});
const statsSpec = (C: number, seed: number): Spec => ({
  shape: [2, C],
  values: Float64Array.from(randn(2 * C, seed), (v, i) => (i < C ? v : 0.5 + v * v)),
  noGrad: true,
});

cases("batch norm (fused)", BN, [
  bnCase([2, 3, 5, 7], 801),
  bnCase([3, 2, 1, 1], 802),
  bnCase([1, 4, 3, 3], 803),
  bnCase([2, 3, 5, 7], 806, true),
  bnCase([3, 2, 3, 1], 807, true),
  {
    name: "bn_stats forward x[2,5,9,31] (two-stage reduction)",
    inputs: { x: T(2, 5, 9, 31) },
    build: (t) => bnStatsOf(t.x),
    forwardOnly: true,
  },
  {
    name: "bn_bwd_sums forward",
    inputs: { x: T(2, 3, 4, 5), s: statsSpec(3, 804), dy: T(2, 3, 4, 5) },
    build: (t) => t.x.graph.apply("bn_bwd_sums", [t.x, t.s, t.dy], { eps: 1e-5 }),
    forwardOnly: true,
  },
  {
    name: "bn_bwd_sums forward, relu-masked",
    inputs: { x: T(2, 3, 4, 5), s: statsSpec(3, 808), dy: T(2, 3, 4, 5), y: T(2, 3, 4, 5) },
    build: (t) => t.x.graph.apply("bn_bwd_sums", [t.x, t.s, t.dy, t.y], { eps: 1e-5, relu: true }),
    forwardOnly: true,
  },
  {
    name: "bn_bwd_data forward",
    inputs: {
      x: T(2, 3, 4, 5),
      s: statsSpec(3, 805),
      g: T(3),
      dy: T(2, 3, 4, 5),
      ps: { shape: [2, 3], noGrad: true },
    },
    build: (t) => t.x.graph.apply("bn_bwd_data", [t.x, t.s, t.g, t.dy, t.ps], { eps: 1e-5 }),
    forwardOnly: true,
  },
]);

for (const target of ["webgpu", "cpu"] as const) {
  Deno.test({
    name: `bn_running_update: running statistics effect [${target}]`,
    ignore: target === "webgpu" && noGpu,
    fn: async () => {
      const g = new Graph();
      const rm = g.state("rm", [5], { kind: "const", value: 0 });
      const rv = g.state("rv", [5], { kind: "const", value: 1 });
      const x = g.input("x", [3, 5, 4, 7]);
      const e = bnRunningUpdate(rm, rv, bnStatsOf(x), 0.1, 84 / 83);
      effectsRun.add(e.op);
      const leaves = new Map([
        ["rm", randn(5, 821)],
        ["rv", Float64Array.from(randn(5, 822), (v) => 1 + v * v)],
        ["x", randn(420, 823)],
      ]);
      const refLeaves = copyLeaves(leaves);
      const devLeaves = copyLeaves(leaves);
      runRef({}, refLeaves, [e]);
      await runOn(target, {}, devLeaves, [e]);
      // Statistics over 84 terms then one multiply-add: f32 rounding of a few ulp.
      for (const k of ["rm", "rv"]) {
        assertClose(`bn_running_update ${k}`, devLeaves.get(k)!, refLeaves.get(k)!, 1e-6, 1e-6);
      }
      // And the reference against torch's formula, written out.
      const x0 = copyLeaves(leaves).get("x")!;
      const rm0 = copyLeaves(leaves).get("rm")!;
      const mean2 = [0, 1, 2].reduce((t, b) => {
        let s2 = 0;
        for (let j = 0; j < 28; j++) s2 += x0[(b * 5 + 2) * 28 + j];
        return t + s2;
      }, 0) / 84;
      const want = 0.9 * rm0[2] + Math.fround(0.1) * mean2;
      assertClose("bn_running_update torch formula", [refLeaves.get("rm")![2]], [want], 1e-6, 1e-6);
    },
  });
}

for (const relu of [false, true]) {
  Deno.test(`batch norm${relu ? " + relu" : ""}: fused equals the composed fallback (float64)`, () => {
    const outs = [true, false].map((fused) => {
      const g = new Graph();
      const x = g.input("x", [3, 4, 5, 6]);
      const y = batchNorm2d({ g, training: true }, "bn", x, { fused, relu });
      const r = g.input("r", y.shape);
      const loss = sum(mul(y, r), [0, 1, 2, 3]);
      const ps = [x, g.get("bn.weight")!, g.get("bn.bias")!];
      const [dx, dg, db] = gradients(loss, ps);
      const leaves = new Map([
        ["x", randn(360, 811)],
        ["r", randn(360, 812)],
        ["bn.weight", randn(4, 813)],
        ["bn.bias", randn(4, 814)],
        ["bn.running_mean", randn(4, 815)],
        ["bn.running_var", Float64Array.from(randn(4, 816), (v) => 1 + v * v)],
      ]);
      const res = runRef({ y, dx, dg, db }, leaves, g.effects);
      const all: Record<string, Float64Array> = { ...res };
      all.rm = leaves.get("bn.running_mean")!;
      all.rv = leaves.get("bn.running_var")!;
      return all;
    });
    // Both in float64, but the composed form rounds its constants (1/N, eps) to f32 as its
    // kernels do, so the two agree to ~1e-7 relative, not to float64 precision.
    for (const k of ["y", "dx", "dg", "db", "rm", "rv"] as const) {
      assertClose(`fused vs composed ${k}`, outs[0][k], outs[1][k], 1e-7, 1e-6);
    }
  });
}

cases("upsample_nearest / pool_sum", POOL, [
  {
    name: "upsample f2 [2,3,3,4]",
    inputs: { x: T(2, 3, 3, 4) },
    build: (t) => upsampleNearest2d(t.x, 2),
  },
  {
    name: "upsample f3 [1,2,1,1]",
    inputs: { x: T(1, 2, 1, 1) },
    build: (t) => upsampleNearest2d(t.x, 3),
  },
  {
    name: "upsample f1 [3,1,2,5]",
    inputs: { x: T(3, 1, 2, 5) },
    build: (t) => upsampleNearest2d(t.x, 1),
  },
  {
    name: "pool_sum f2 [2,3,6,4]",
    inputs: { x: T(2, 3, 6, 4) },
    build: (t) => t.x.graph.apply("pool_sum", [t.x], { f: 2 }),
  },
  {
    name: "pool_sum f3 [3,1,3,9]",
    inputs: { x: T(3, 1, 3, 9) },
    build: (t) => t.x.graph.apply("pool_sum", [t.x], { f: 3 }),
  },
]);

// ---------------------------------------------------------------------------------------------
// The forward references of the structured ops against independent loops written from the
// PyTorch definitions: the WebGPU comparison cannot catch a misreading that kernel and reference
// share. Both sides are float64 over the same few terms: atol 1e-12.

function refRun(
  inputs: Record<string, number[]>,
  build: (x: Record<string, Tensor>) => Tensor,
  seed: number,
) {
  const g = new Graph();
  const xs: Record<string, Tensor> = {};
  const leaves = new Map<string, Float64Array>();
  Object.entries(inputs).forEach(([k, shape], i) => {
    xs[k] = g.input(k, shape);
    leaves.set(k, randn(numelOf(shape), seed + i));
  });
  const y = build(xs);
  return { y: runRef({ y }, leaves).y, v: leaves, shape: y.shape };
}
/** Row-major index into a 4-D array. */
const at4 = (s: readonly number[], a: number, b: number, c: number, d: number) =>
  ((a * s[1] + b) * s[2] + c) * s[3] + d;

Deno.test("conv2d reference vs an independent zero-padded loop", () => {
  const configs: [number[], number[], ConvOpts, boolean][] = [
    [[2, 3, 9, 8], [4, 3, 3, 3], { stride: 2, padding: 1, dilation: 2 }, true],
    [[1, 2, 11, 7], [3, 2, 5, 3], { stride: 3 }, false],
    [[3, 2, 1, 1], [2, 2, 3, 3], { padding: 1 }, true],
    [[1, 1, 6, 6], [1, 1, 2, 2], { stride: 2, padding: 2 }, false],
  ];
  configs.forEach(([xs, ws, o, hasBias], n) => {
    const ins: Record<string, number[]> = { x: xs, w: ws };
    if (hasBias) ins.b = [ws[0]];
    const r = refRun(ins, (t) => conv2d(t.x, t.w, t.b, { ...o }), 800 + 10 * n);
    const [B, C, H, W] = xs;
    const [O, , KH, KW] = ws;
    const s = o.stride ?? 1, p = o.padding ?? 0, d = o.dilation ?? 1;
    const Hp = H + 2 * p, Wp = W + 2 * p;
    const xp = new Float64Array(B * C * Hp * Wp);
    const x = r.v.get("x")!, w = r.v.get("w")!, bias = r.v.get("b");
    for (let b = 0; b < B; b++) {
      for (let c = 0; c < C; c++) {
        for (let i = 0; i < H; i++) {
          for (let j = 0; j < W; j++) {
            xp[at4([B, C, Hp, Wp], b, c, i + p, j + p)] = x[at4(xs, b, c, i, j)];
          }
        }
      }
    }
    const OH = Math.floor((Hp - d * (KH - 1) - 1) / s) + 1;
    const OW = Math.floor((Wp - d * (KW - 1) - 1) / s) + 1;
    const ys = [B, O, OH, OW];
    if (r.shape.join() !== ys.join()) throw new Error(`conv2d shape [${r.shape}] != [${ys}]`);
    const want = new Float64Array(B * O * OH * OW);
    for (let b = 0; b < B; b++) {
      for (let oc = 0; oc < O; oc++) {
        for (let i = 0; i < OH; i++) {
          for (let j = 0; j < OW; j++) {
            let acc = bias ? bias[oc] : 0;
            for (let c = 0; c < C; c++) {
              for (let ky = 0; ky < KH; ky++) {
                for (let kx = 0; kx < KW; kx++) {
                  acc += xp[at4([B, C, Hp, Wp], b, c, i * s + ky * d, j * s + kx * d)] *
                    w[at4(ws, oc, c, ky, kx)];
                }
              }
            }
            want[at4(ys, b, oc, i, j)] = acc;
          }
        }
      }
    }
    assertClose(`conv2d config ${n}`, r.y, want, 1e-12, 0);
  });
});

Deno.test("conv_transpose reference vs an independent output-side loop", () => {
  const configs: [number[], number[], boolean][] = [
    [[2, 3, 2, 3], [3, 4, 2, 2], true],
    [[1, 2, 3, 1], [2, 3, 3, 3], false],
  ];
  configs.forEach(([xs, ws, hasBias], n) => {
    const ins: Record<string, number[]> = { x: xs, w: ws };
    if (hasBias) ins.b = [ws[1]];
    const r = refRun(ins, (t) => convTranspose(t.x, t.w, t.b), 850 + 10 * n);
    const [B, C, H, W] = xs;
    const [, O, f] = ws;
    const ys = [B, O, H * f, W * f];
    if (r.shape.join() !== ys.join()) throw new Error(`conv_transpose shape [${r.shape}]`);
    const x = r.v.get("x")!, w = r.v.get("w")!, bias = r.v.get("b");
    const want = new Float64Array(numelOf(ys));
    for (let b = 0; b < B; b++) {
      for (let o = 0; o < O; o++) {
        for (let Y = 0; Y < H * f; Y++) {
          for (let X = 0; X < W * f; X++) {
            let acc = bias ? bias[o] : 0;
            for (let c = 0; c < C; c++) {
              acc += x[at4(xs, b, c, Math.floor(Y / f), Math.floor(X / f))] *
                w[at4(ws, c, o, Y % f, X % f)];
            }
            want[at4(ys, b, o, Y, X)] = acc;
          }
        }
      }
    }
    assertClose(`conv_transpose config ${n}`, r.y, want, 1e-12, 0);
  });
});

Deno.test("maxpool2d / upsample_nearest / pool_sum references vs independent loops", () => {
  for (
    const [xs, k, s] of [[[2, 2, 9, 7], 3, 2], [[1, 3, 7, 8], 2, 2], [[1, 1, 8, 11], 2, 3]] as const
  ) {
    const r = refRun({ x: [...xs] }, (t) => maxpool2d(t.x, k, s), 900);
    const x = r.v.get("x")!;
    const [B, C, H, W] = xs;
    const OH = Math.floor((H - k) / s) + 1, OW = Math.floor((W - k) / s) + 1;
    const ys = [B, C, OH, OW];
    const want = new Float64Array(numelOf(ys));
    for (let b = 0; b < B; b++) {
      for (let c = 0; c < C; c++) {
        for (let i = 0; i < OH; i++) {
          for (let j = 0; j < OW; j++) {
            let m = -Infinity;
            for (let a = 0; a < k; a++) {
              for (let e = 0; e < k; e++) m = Math.max(m, x[at4(xs, b, c, i * s + a, j * s + e)]);
            }
            want[at4(ys, b, c, i, j)] = m;
          }
        }
      }
    }
    assertClose(`maxpool2d k${k} s${s}`, r.y, want, 0, 0);
  }
  const xs = [2, 3, 2, 3];
  const up = refRun({ x: xs }, (t) => upsampleNearest2d(t.x, 3), 910);
  const x = up.v.get("x")!;
  const ys = [2, 3, 6, 9];
  const wantUp = new Float64Array(numelOf(ys));
  for (let i = 0; i < wantUp.length; i++) {
    const X = i % 9, Y = Math.floor(i / 9) % 6, bc = Math.floor(i / 54);
    wantUp[i] = x[bc * 6 + Math.floor(Y / 3) * 3 + Math.floor(X / 3)];
  }
  assertClose("upsample_nearest", up.y, wantUp, 0, 0);
  const ps = refRun({ x: ys }, (t) => t.x.graph.apply("pool_sum", [t.x], { f: 3 }), 920);
  const px = ps.v.get("x")!;
  const wantPs = new Float64Array(numelOf(xs));
  for (let i = 0; i < px.length; i++) {
    const X = i % 9, Y = Math.floor(i / 9) % 6, bc = Math.floor(i / 54);
    wantPs[bc * 6 + Math.floor(Y / 3) * 3 + Math.floor(X / 3)] += px[i];
  }
  assertClose("pool_sum", ps.y, wantPs, 1e-12, 0);
});

// ---------------------------------------------------------------------------------------------
// Effects: assign and adam update params/states in place at the end of the program.

const copyLeaves = (m: Map<string, Float64Array>) =>
  new Map([...m].map(([k, v]) => [k, Float64Array.from(Float32Array.from(v))]));

for (const target of ["webgpu", "cpu"] as const) {
  Deno.test({
    name: `assign: in-place updates after every reader [${target}]`,
    ignore: target === "webgpu" && noGpu,
    fn: async () => {
      const g = new Graph();
      const s = g.state("s", [3, 5], { kind: "const", value: 0 });
      const u = g.param("u", [15], { kind: "const", value: 0 });
      const x = g.input("x", [3, 5]);
      // y reads the old s; s becomes 0.5 (s + x) + 1; u becomes the flat x (an aliased source).
      const y = mul(s, x);
      const e1 = g.apply("assign", [s, affine(add(s, x), 0.5, 1)]);
      const e2 = g.apply("assign", [u, reshape(x, [15])]);
      const leaves = new Map([["s", randn(15, 501)], ["u", randn(15, 502)], ["x", randn(15, 503)]]);
      const refLeaves = copyLeaves(leaves);
      const gpuLeaves = copyLeaves(leaves);
      const want = runRef({ y }, refLeaves, [e1, e2]);
      const got = await runOn(target, { y }, gpuLeaves, [e1, e2]);
      for (const t of [e1, e2]) effectsRun.add(t.op);
      assertClose("assign y (old s)", got.y, want.y, 1e-6, 1e-6);
      assertClose("assign s", gpuLeaves.get("s")!, refLeaves.get("s")!, 1e-6, 1e-6);
      assertClose("assign u", gpuLeaves.get("u")!, refLeaves.get("u")!, 0, 0);
      // The reference itself: s = 0.5 (s0 + x) + 1, u = x.
      const s0 = copyLeaves(leaves).get("s")!, x0 = copyLeaves(leaves).get("x")!;
      assertClose(
        "assign ref s",
        refLeaves.get("s")!,
        s0.map((v, i) => 0.5 * (v + x0[i]) + 1),
        1e-12,
        0,
      );
      assertClose("assign ref u", refLeaves.get("u")!, x0, 0, 0);
    },
  });
}

Deno.test("assign: targets must be params or states (compile error)", async () => {
  const g = new Graph();
  const x = g.input("x", [3]);
  const e = g.apply("assign", [x, neg(x)]);
  const { compile } = await import("../lib/backends/compile.ts");
  let msg = "";
  try {
    compile({}, [e]);
  } catch (err) {
    msg = (err as Error).message;
  }
  if (!/not a param or state/.test(msg)) {
    throw new Error(`expected an in-place error, got '${msg}'`);
  }
});

interface AdamCfg {
  name: string;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  decoupled: boolean;
}
const ADAM: AdamCfg[] = [
  { name: "Adam", lr: 0.05, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, decoupled: false },
  {
    name: "Adam + L2 0.01",
    lr: 0.05,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0.01,
    decoupled: false,
  },
  {
    name: "AdamW 0.01",
    lr: 0.05,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0.01,
    decoupled: true,
  },
];
const STEPS = 3;

/**
 * torch.optim.Adam / AdamW (amsgrad=False, maximize=False), written from the PyTorch docs'
 * algorithm, for loss = sum((p - tgt)^2 * c) whose gradient is 2 (p - tgt) c.
 */
function torchAdam(cfg: AdamCfg, p0: Float64Array, tgt: Float64Array, c: Float64Array) {
  const p = p0.slice();
  const m = new Float64Array(p.length);
  const v = new Float64Array(p.length);
  for (let t = 1; t <= STEPS; t++) {
    for (let i = 0; i < p.length; i++) {
      let g = 2 * (p[i] - tgt[i]) * c[i];
      if (cfg.decoupled) p[i] = p[i] * (1 - cfg.lr * cfg.weightDecay); // AdamW
      else g = g + cfg.weightDecay * p[i]; // Adam's L2 penalty
      m[i] = cfg.beta1 * m[i] + (1 - cfg.beta1) * g;
      v[i] = cfg.beta2 * v[i] + (1 - cfg.beta2) * g * g;
      const mHat = m[i] / (1 - cfg.beta1 ** t);
      const vHat = v[i] / (1 - cfg.beta2 ** t);
      p[i] = p[i] - cfg.lr * mHat / (Math.sqrt(vHat) + cfg.eps);
    }
  }
  return { p, m, v };
}

function adamGraph(cfg: AdamCfg, shape: number[]) {
  const g = new Graph();
  const p = g.param("p", shape, { kind: "const", value: 0 });
  const m = g.state("m", shape, { kind: "const", value: 0 });
  const v = g.state("v", shape, { kind: "const", value: 0 });
  const tgt = g.input("tgt", shape);
  const c = g.input("c", shape);
  const h = g.input("hyper", [3]);
  const loss = sum(mul(square(sub(p, tgt)), c), shape.map((_, i) => i));
  const [gp] = gradients(loss, [p]);
  const { name: _n, lr: _lr, ...attrs } = cfg;
  const e = g.apply("adam", [p, gp, m, v, h], attrs);
  return { g, e };
}

// Adam on WebGPU vs float64: p, m, v are O(1) f32 values updated by O(lr) steps, with one sqrt
// and one division per step (a few ulp each): atol 1e-6, rtol 1e-5 over 3 steps.
for (const cfg of ADAM) {
  const shape = [5, 7];
  const n = 35;
  const start = () =>
    new Map<string, Float64Array>([
      ["p", randn(n, 601)],
      ["m", new Float64Array(n)],
      ["v", new Float64Array(n)],
      ["tgt", randn(n, 602)],
      // Some coordinates get tiny gradients so the update is eps-sensitive there.
      ["c", Float64Array.from(randn(n, 603), (x, i) => (i % 7 === 0 ? 1e-4 : 0.5 + x * x))],
      ["hyper", new Float64Array(3)],
    ]);
  const setHyper = (l: Map<string, Float64Array>, t: number) =>
    l.set("hyper", Float64Array.from([cfg.lr, 1 - cfg.beta1 ** t, 1 - cfg.beta2 ** t]));

  Deno.test(`adam: ${cfg.name}, ${STEPS} steps, reference vs torch semantics`, () => {
    const { e } = adamGraph(cfg, shape);
    const leaves = copyLeaves(start());
    const want = torchAdam(cfg, leaves.get("p")!, leaves.get("tgt")!, leaves.get("c")!);
    for (let t = 1; t <= STEPS; t++) {
      setHyper(leaves, t);
      runRef({}, leaves, [e]);
    }
    for (const k of ["p", "m", "v"] as const) {
      assertClose(`${cfg.name} ref ${k}`, leaves.get(k)!, want[k], 1e-12, 1e-12);
    }
  });

  for (const target of ["webgpu", "cpu"] as const) {
    Deno.test({
      name: `adam: ${cfg.name}, ${STEPS} steps, ${target} vs torch semantics [${target}]`,
      ignore: target === "webgpu" && noGpu,
      fn: async () => {
        const { e } = adamGraph(cfg, shape);
        effectsRun.add(e.op);
        const leaves = copyLeaves(start());
        const want = torchAdam(cfg, leaves.get("p")!, leaves.get("tgt")!, leaves.get("c")!);
        for (let t = 1; t <= STEPS; t++) {
          setHyper(leaves, t);
          await runOn(target, {}, leaves, [e]);
        }
        assertClose(`${cfg.name} ${target} p`, leaves.get("p")!, want.p, 1e-6, 1e-5);
        assertClose(`${cfg.name} ${target} m`, leaves.get("m")!, want.m, 1e-6, 1e-5);
        assertClose(`${cfg.name} ${target} v`, leaves.get("v")!, want.v, 1e-7, 1e-5);
      },
    });
  }
}

Deno.test("adam: the three variants differ (the comparisons above can tell them apart)", () => {
  const n = 35;
  const p0 = Float64Array.from(Float32Array.from(randn(n, 601)));
  const tgt = Float64Array.from(Float32Array.from(randn(n, 602)));
  const c = new Float64Array(n).fill(1);
  const [a, l2, w] = ADAM.map((cfg) => torchAdam(cfg, p0, tgt, c).p);
  const maxDiff = (x: Float64Array, y: Float64Array) =>
    x.reduce((s, v, i) => Math.max(s, Math.abs(v - y[i])), 0);
  // 100x the WebGPU tolerance on p.
  if (maxDiff(a, l2) < 1e-4 || maxDiff(a, w) < 1e-4 || maxDiff(l2, w) < 1e-4) {
    throw new Error(`variants too close: ${maxDiff(a, l2)} ${maxDiff(a, w)} ${maxDiff(l2, w)}`);
  }
});

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
          if (tt.kind === "node" && tt.id <= cg.y.id) fdForward.add(tt.op);
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
    await checkOp(c, "cpu");
    if (noGpu) return;
    record(c, true);
    await checkOp(c);
  });
}

// ---------------------------------------------------------------------------------------------
// Bad shapes fail while the graph is built, with a message naming the op and the shapes.

Deno.test("shape errors are raised at graph-build time and name the op and shapes", () => {
  const g = new Graph();
  const x = g.input("x", [1, 3, 8, 8]);
  const w = g.input("w", [4, 5, 3, 3]);
  const a = g.input("a", [2, 3]);
  const b = g.input("b", [4, 3]);
  const before = g.nodes.length;
  expectShapeError("conv2d", () => conv2d(x, w), "conv2d", "[1, 3, 8, 8]", "[4, 5, 3, 3]");
  expectShapeError("add", () => add(a, b), "add", "[2, 3]", "[4, 3]");
  const w3 = g.input("w3", [4, 3, 3, 3]);
  expectShapeError("conv2d bias", () => conv2d(x, w3, a), "conv2d", "[2, 3]");
  expectShapeError("conv2d too big", () => conv2d(x, w3, undefined, { dilation: 5 }), "conv2d");
  expectShapeError("mul", () => mul(a, b), "mul", "[2, 3]", "[4, 3]");
  expectShapeError("reshape", () => reshape(a, [4, 2]), "reshape", "[2, 3]");
  expectShapeError("sum axis", () => sum(a, [2]), "sum", "[2, 3]");
  expectShapeError("slice", () => slice(a, 1, 2, 2), "slice", "[2, 3]");
  expectShapeError("concat", () => concat([a, b], 1), "concat", "[2, 3]", "[4, 3]");
  expectShapeError("expand", () => expand(b, [2, 4, 2]), "expand", "[4, 3]");
  expectShapeError("maxpool2d", () => maxpool2d(x, 9), "maxpool2d", "[1, 3, 8, 8]");
  expectShapeError("conv_transpose", () => convTranspose(x, w), "conv_transpose", "[1, 3, 8, 8]");
  expectShapeError("bce", () => bce(a, b), "bce", "[2, 3]", "[4, 3]");
  expectShapeError("assign", () => g.apply("assign", [a, b]), "assign", "[2, 3]", "[4, 3]");
  expectShapeError("arity", () => g.apply("neg", [a, b]), "neg", "expects 1 inputs");
  if (g.nodes.length !== before + 1) throw new Error("a failed op left a node in the graph");
});

// ---------------------------------------------------------------------------------------------
// Coverage: every op of the table was exercised above. Deno runs tests in file order.

Deno.test("coverage: every op has a cpu kernel", () => {
  const missing = allOps().filter((o) => !o.alias && !cpuLowerings.has(o)).map((o) => o.name);
  if (missing.length) throw new Error(`ops without a cpu kernel: ${missing.join(", ")}`);
});

Deno.test("coverage: every op this file owns (tests/op_coverage.ts) is tested here", () => {
  const mine = new Set(OP_OWNERS["ops_test.ts"]);
  const ops = allOps().filter((o) => mine.has(o.name));
  if (ops.length !== mine.size) throw new Error("an op owned by this file is not in the table");
  const missing: string[] = [];
  for (const op of ops) {
    if (op.inplace) {
      if (!noGpu && !effectsRun.has(op.name)) missing.push(`${op.name} (effect on WebGPU)`);
      continue;
    }
    if (op.grad && !fdForward.has(op.name)) missing.push(`${op.name} (finite differences)`);
    if (noGpu) continue;
    if (!gpuForward.has(op.name)) missing.push(`${op.name} (WebGPU forward)`);
    if (op.grad && !gpuBackward.has(op.name)) missing.push(`${op.name} (WebGPU backward)`);
  }
  // Every gradient-only op was also reached through autodiff on WebGPU.
  if (!noGpu) {
    for (
      const name of [
        "relu_grad",
        "sigmoid_grad",
        "bce_grad",
        "conv2d_bwd_data",
        "conv2d_bwd_weight",
        "conv_transpose_bwd_data",
        "conv_transpose_bwd_weight",
        "maxpool2d_bwd",
        "pool_sum",
        "upsample_nearest",
      ]
    ) {
      if (!gpuInBackward.has(name)) missing.push(`${name} (inside a WebGPU backward)`);
    }
  }
  if (missing.length) throw new Error(`untested ops: ${missing.join(", ")}`);
});
