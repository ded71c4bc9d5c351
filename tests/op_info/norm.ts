/**
 * Batch norm (lib/graph/ops/norm.ts, kernels/{webgpu,cpu}/norm.ts).
 *
 * The sample inputs of the norm ops (an `OpTable`, tests/op_suite.ts): each
 * `cases(group, tolerance, samples)` is run by tests/norm_ops_test.ts on WebGPU, on the CPU
 * and by finite differences, and its op nodes feed tests/kernels_static_test.ts. Tolerances are
 * given per group, with the reason. Notation: f32 unit roundoff u = 6e-8; an f32 sum of K terms
 * of magnitude |t| is off by ~sqrt(K)..K * u * |t|.
 */
import { bnApplyOp, bnStatsOf } from "../../lib/graph/mod.ts";
import { randn } from "../harness.ts";
import { numelOf, type OpTable, type Spec, type SuiteCase, T, tableBuilder } from "../op_suite.ts";

type Case = SuiteCase;
const { groups, cases } = tableBuilder();

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

export const NORM_TABLE: OpTable = {
  family: "norm",
  groups,
  static: [{
    op: "bn_running_update",
    inputs: [[3], [3], [2, 3]],
    attrs: { momentum: 0.1, unbiased: 70 / 69 },
  }],
};
