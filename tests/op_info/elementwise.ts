/**
 * Elementwise ops (lib/graph/ops/elementwise.ts, kernels/{webgpu,cpu}/elementwise.ts).
 *
 * The sample inputs of the elementwise ops (an `OpTable`, tests/op_suite.ts): each
 * `cases(group, tolerance, samples)` is run by tests/elementwise_ops_test.ts on WebGPU, on the CPU
 * and by finite differences, and its op nodes feed tests/kernels_static_test.ts. Tolerances are
 * given per group, with the reason. Notation: f32 unit roundoff u = 6e-8; an f32 sum of K terms
 * of magnitude |t| is off by ~sqrt(K)..K * u * |t|.
 */
import {
  add,
  affine,
  bce,
  bceGrad,
  concat,
  div,
  exp,
  expand,
  fma,
  log,
  mul,
  neg,
  relu,
  reluGrad,
  rsqrt,
  sigmoid,
  sigmoidGrad,
  sqrt,
  square,
  stepGt,
  stepLt,
  sub,
} from "../../lib/graph/mod.ts";
import { randn } from "../harness.ts";
import {
  elementwiseStatic,
  given,
  numelOf,
  type OpTable,
  type Spec,
  type SuiteCase,
  T,
  tableBuilder,
} from "../op_suite.ts";

type Case = SuiteCase;
const { groups, cases } = tableBuilder();

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
export const probs = (shape: number[], seed: number): Spec => ({
  shape,
  values: Float64Array.from(randn(numelOf(shape), seed), (v) => 0.05 + 0.9 / (1 + Math.exp(-v))),
});
/** A 0/1 mask, not differentiated. */
export const mask = (shape: number[], seed: number): Spec => ({
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
export const TRANSC = { atol: 1e-6, rtol: 4e-6 };
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

export const ELEMENTWISE_TABLE: OpTable = {
  family: "elementwise",
  groups,
  static: [
    ...["add", "sub", "mul", "div", "fma", "neg", "square", "exp", "log", "sqrt", "rsqrt"]
      .flatMap((op) => elementwiseStatic(op)),
    ...["relu", "relu_grad", "sigmoid", "sigmoid_grad", "bce", "bce_grad"]
      .flatMap((op) => elementwiseStatic(op)),
    ...elementwiseStatic("affine", { a: -1.7, b: 0.1 }),
    ...elementwiseStatic("step_gt", { t: 0.3 }),
    ...elementwiseStatic("step_lt", { t: 0.3 }),
  ],
};
