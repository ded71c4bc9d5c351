/**
 * GELU, dropout and max over an axis (lib/graph/ops/misc.ts, kernels/{webgpu,cpu}/misc.ts), and
 * the LViT configurations of existing ops (conv1d, the strided patch-embedding conv, nearest
 * upsampling by 2..16). Run by tests/misc_ops_test.ts on WebGPU, on the CPU and by finite
 * differences; every op node of every sample, plus `static`, feeds tests/kernels_static_test.ts.
 * Tolerances are given per group with the reason. Notation: f32 unit roundoff u = 6e-8.
 */
import {
  conv2d,
  dropout,
  gelu,
  geluGrad,
  maxAxis,
  maxAxisGrad,
  type Tensor,
  upsampleNearest2d,
} from "../../lib/graph/mod.ts";
import { conv1d } from "../../lib/nn/layers.ts";
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

/** Seeded normals times `scale`. */
const scaled = (shape: number[], seed: number, scale: number): Spec => ({
  shape,
  values: randn(numelOf(shape), seed, scale),
});
/** The [1] step input of dropout: a constant, not differentiated. */
const stepSpec = (step: number): Spec => ({
  shape: [1],
  values: Float64Array.of(step),
  noGrad: true,
});

// ---------------------------------------------------------------------------------------------
// gelu / gelu_grad

// The approximation itself is within 1.2e-7 of erfc relative (previous test), i.e. <= 2e-8 on
// gelu. On top of it the f32 pipeline rounds the output and 2 - e (~2 u relative on |y| up to
// 8 here), and lavapipe's exp is a few ulp; gelu_grad's dy * (Phi + x phi) adds one more
// product. Observed on lavapipe: forward <= 2.9e-7 absolute, backward <= 4.3e-7 on a value of
// ~0.3; the CPU backend (float64 arithmetic, f32 constants) <= 2.3e-7. atol 4e-7, rtol 1e-6
// gives ~3x margin on the worst case.
const GELU = { atol: 4e-7, rtol: 1e-6 };
const tails = [-14, -10, -7, -5, -3, -1.5, -1e-3, -0, 0, 1e-6, 0.5, 1, 2.5, 4, 7, 12];
cases("gelu", GELU, [
  { name: "[1]", inputs: { x: T(1) }, build: (t) => gelu(t.x) },
  { name: "[1,1,1,1]", inputs: { x: T(1, 1, 1, 1) }, build: (t) => gelu(t.x) },
  { name: "[3,5,7] x 3 (tails)", inputs: { x: scaled([3, 5, 7], 11, 3) }, build: (t) => gelu(t.x) },
  { name: "[2,65]", inputs: { x: T(2, 65) }, build: (t) => gelu(t.x) },
  {
    name: "[4,1,196,3] x 2, not a multiple of 64",
    inputs: { x: scaled([4, 1, 196, 3], 12, 2) },
    build: (t) => gelu(t.x),
    fd: false,
  },
  { name: "given tails and zeros", inputs: { x: given([16], tails) }, build: (t) => gelu(t.x) },
  {
    name: "gelu_grad forward [3,5,7]",
    inputs: { x: scaled([3, 5, 7], 13, 3), dy: T(3, 5, 7) },
    build: (t) => geluGrad(t.x, t.dy),
    forwardOnly: true,
  },
  {
    name: "gelu_grad forward, given tails",
    inputs: { x: given([16], tails), dy: T(16) },
    build: (t) => geluGrad(t.x, t.dy),
    forwardOnly: true,
  },
]);

// ---------------------------------------------------------------------------------------------
// dropout

// Each output is x * 0 or x * fround(1/(1-p)), one product of f32 values rounded once to f32;
// the reference keeps it in float64: one rounding, |err| <= 2^-24 |y| (rtol 6e-8, atol 0). The
// backward is the same op on dy = r.
const ONE_ROUNDING = { atol: 0, rtol: 6e-8 };
const drop = (p: number, seed: number) => (t: Record<string, Tensor>) =>
  dropout(t.x, t.step, { p, seed });
cases("dropout", ONE_ROUNDING, [
  { name: "[1] p 0.5", inputs: { x: T(1), step: stepSpec(3) }, build: drop(0.5, 1) },
  { name: "[3,5,7] p 0.1", inputs: { x: T(3, 5, 7), step: stepSpec(0) }, build: drop(0.1, 7) },
  {
    name: "[2,3,67] p 0.5",
    inputs: { x: T(2, 3, 67), step: stepSpec(12345) },
    build: drop(0.5, 2),
  },
  {
    name: "[4097] p 0.9, step 2^24 - 1",
    inputs: { x: T(4097), step: stepSpec(2 ** 24 - 1) },
    build: drop(0.9, 3),
    fd: false,
  },
  {
    name: "[2,196,64] p 0.1 (LViT token dropout)",
    inputs: { x: T(2, 196, 64), step: stepSpec(41) },
    build: drop(0.1, 2024),
    fd: false,
  },
  {
    name: "op with p = 0 is the identity",
    inputs: { x: T(3, 7), step: stepSpec(5) },
    build: (t) => t.x.graph.apply("dropout", [t.x, t.step], { p: 0, seed: 9 }),
  },
  {
    name: "op with p = 1 gives zeros",
    inputs: { x: T(2, 9), step: stepSpec(5) },
    build: (t) => t.x.graph.apply("dropout", [t.x, t.step], { p: 1, seed: 9 }),
  },
]);

// ---------------------------------------------------------------------------------------------
// max_axis / max_axis_grad

// The max is a selection and the gradient a routing of dy = r: both exact (atol 0, rtol 0).
const EXACT = { atol: 0, rtol: 0 };
const mx = (axis: number) => (t: Record<string, Tensor>) => maxAxis(t.x, axis);
cases("max_axis", EXACT, [
  { name: "[2,5,3,4] axis 1 (PLAM)", inputs: { x: T(2, 5, 3, 4) }, build: mx(1) },
  { name: "[1,1,1,1] axis 1", inputs: { x: T(1, 1, 1, 1) }, build: mx(1) },
  { name: "[3,7] axis 0", inputs: { x: T(3, 7) }, build: mx(0) },
  { name: "[3,7] axis -1", inputs: { x: T(3, 7) }, build: mx(-1) },
  { name: "[5,2,3] axis 0", inputs: { x: T(5, 2, 3) }, build: mx(0) },
  { name: "[2,3,65] axis 2", inputs: { x: T(2, 3, 65) }, build: mx(2) },
  { name: "[2,64,7,9] axis 1", inputs: { x: T(2, 64, 7, 9) }, build: mx(1), fd: false },
  {
    name: "ties: the first maximum wins",
    inputs: { x: given([1, 4, 1, 3], [1, 2, 0, 3, 2, -1, 3, 2, 0, 3, 1, 0]) },
    build: mx(1),
    fd: false,
  },
  {
    name: "max_axis_grad forward [2,5,3,4] axis 1",
    inputs: { x: T(2, 5, 3, 4), dy: T(2, 1, 3, 4) },
    build: (t) => maxAxisGrad(t.x, t.dy, 1),
    forwardOnly: true,
  },
  {
    name: "max_axis_grad forward [4,3] axis 1, ties",
    inputs: { x: given([4, 3], [1, 1, 1, 2, 0, 2, -1, -3, -1, 0, 0, 5]), dy: T(4, 1) },
    build: (t) => maxAxisGrad(t.x, t.dy, 1),
    forwardOnly: true,
  },
]);

// ---------------------------------------------------------------------------------------------
// conv1d (functional form and layer)

// K = C*k products of N(0,1) values (forward), O*k (data gradient), B*L (weight gradient), all
// <= 42 here: f32 error ~ K u sqrt(K); atol 5e-6, rtol 1e-5 as the conv2d cases scaled to K.
const CONV1D = { atol: 5e-6, rtol: 1e-5 };
const c1 = (x: number[], o: number, k: number, padding: number, bias = true): Case => ({
  name: `x[${x}] w[${o},${x[1]},${k}] padding ${padding}${bias ? " +bias" : ""}`,
  inputs: {
    x: T(...x),
    w: T(o, x[1], k),
    ...(bias ? { b: T(o) } : {}),
  },
  build: (t) => conv1d(t.x, t.w, t.b, padding),
});
cases("conv1d", CONV1D, [
  c1([2, 3, 7], 4, 3, 1),
  c1([1, 5, 1], 2, 3, 1),
  c1([3, 2, 13], 3, 3, 1, false),
  c1([2, 10, 16], 6, 3, 1), // CTBN3-like: the 10 words as channels, sliding along embeddings
  c1([1, 4, 9], 2, 5, 2),
  c1([2, 3, 6], 2, 3, 0),
]);

// ---------------------------------------------------------------------------------------------
// Existing ops in the LViT configurations: patch embedding and Reconstruct's upsampling.

// Patch embedding: conv2d with kernel = stride = p, K = C p^2 = 48 and 512 products (forward),
// O p^2 (data gradient), B OH OW (weight gradient): f32 error ~ K u, observed <= 1.0e-5 at
// K = 512 (both backends); atol 5e-5 as conv.ts's big-K convolutions, rtol 2e-5.
cases("patch embedding conv (kernel = stride = p)", { atol: 5e-5, rtol: 2e-5 }, [
  {
    name: "p 4 on x[2,3,12,12], w[3,3,4,4] +bias",
    inputs: { x: T(2, 3, 12, 12), w: T(3, 3, 4, 4), b: T(3) },
    build: (t) => conv2d(t.x, t.w, t.b, { stride: 4 }),
  },
  {
    name: "p 16 on x[1,2,32,32], w[4,2,16,16] +bias",
    inputs: { x: T(1, 2, 32, 32), w: T(4, 2, 16, 16), b: T(4) },
    build: (t) => conv2d(t.x, t.w, t.b, { stride: 16 }),
    fd: false,
  },
]);

// Nearest upsampling copies (exact); its gradient sums f^2 values of r ~ N(0,1) in f32, error
// ~ sqrt(f^2) u times partial sums of size ~f, i.e. f^2 u (observed 9.4e-6 at f = 16 on
// lavapipe): atol 5 f^2 u = 3e-7 f^2, rtol 1e-5.
const UPSAMPLE: [number, number[]][] = [
  [2, [2, 3, 3, 5]],
  [4, [1, 2, 3, 2]],
  [8, [1, 3, 2, 2]],
  [16, [1, 2, 1, 3]],
];
for (const [f, shape] of UPSAMPLE) {
  cases(`upsample nearest x${f}`, { atol: 3e-7 * f * f, rtol: 1e-5 }, [
    {
      name: `x[${shape}]`,
      inputs: { x: T(...shape) },
      build: (t) => upsampleNearest2d(t.x, f),
      fd: f <= 4 ? {} : false,
    },
  ]);
}

const big = 64 * 65535 + 1;

export const MISC_TABLE: OpTable = {
  family: "misc",
  groups,
  static: [
    ...elementwiseStatic("gelu"),
    { op: "gelu_grad", inputs: [[3, 5], [3, 5]] },
    { op: "gelu_grad", inputs: [[2, 3, 5, 7], [2, 3, 5, 7]] },
    { op: "gelu_grad", inputs: [[big], [big]] },
    { op: "dropout", inputs: [[3, 5], [1]], attrs: { p: 0.1, seed: 7 } },
    { op: "dropout", inputs: [[2, 3, 5, 7], [1]], attrs: { p: 0.5, seed: 0 } },
    { op: "dropout", inputs: [[4 * 64 * 65535 + 5], [1]], attrs: { p: 0.9, seed: 2 ** 32 + 3 } },
    { op: "max_axis", inputs: [[2, 5, 3, 4]], attrs: { axis: 1 } },
    { op: "max_axis", inputs: [[3, 7]], attrs: { axis: 0 } },
    { op: "max_axis", inputs: [[2, 3, 65]], attrs: { axis: 2 } },
    { op: "max_axis_grad", inputs: [[2, 5, 3, 4], [2, 1, 3, 4]], attrs: { axis: 1 } },
    { op: "max_axis_grad", inputs: [[3, 7], [1, 7]], attrs: { axis: 0 } },
    { op: "max_axis_grad", inputs: [[2, 3, 65], [2, 3, 1]], attrs: { axis: 2 } },
  ],
};
