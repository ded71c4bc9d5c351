/**
 * Convolutions (lib/graph/ops/conv.ts, kernels/{webgpu,cpu}/conv.ts).
 *
 * The sample inputs of the conv ops (an `OpTable`, tests/op_suite.ts): each
 * `cases(group, tolerance, samples)` is run by tests/conv_ops_test.ts on WebGPU, on the CPU
 * and by finite differences, and its op nodes feed tests/kernels_static_test.ts. Tolerances are
 * given per group, with the reason. Notation: f32 unit roundoff u = 6e-8; an f32 sum of K terms
 * of magnitude |t| is off by ~sqrt(K)..K * u * |t|.
 */
import { conv2d, convTranspose, type Tensor } from "../../lib/graph/mod.ts";
import { type OpTable, type SuiteCase, T, tableBuilder } from "../op_suite.ts";

type Case = SuiteCase;
const { groups, cases } = tableBuilder();

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

export const CONV_TABLE: OpTable = { family: "conv", groups };
