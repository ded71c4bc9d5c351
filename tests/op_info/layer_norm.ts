/**
 * Fused layer norm (lib/graph/ops/layer_norm.ts, kernels/{webgpu,cpu}/layer_norm.ts). Run by
 * tests/layer_norm_ops_test.ts on WebGPU, on the CPU and by finite differences; every op node of
 * every sample, plus `static`, feeds tests/kernels_static_test.ts.
 */
import { layerNorm } from "../../lib/graph/mod.ts";

import { lnStatsOf } from "../../lib/graph/ops/layer_norm.ts";
import { randn } from "../harness.ts";
import { numelOf, type OpTable, type Spec, type SuiteCase, T, tableBuilder } from "../op_suite.ts";

type Case = SuiteCase;
const { groups, cases } = tableBuilder();

// ---------------------------------------------------------------------------------------------
// Layer norm (fused)

// Row statistics of C <= 33 terms, then a division by the row's std (~1 for N(0,1) inputs);
// the parameter gradients sum over up to 200 rows: sqrt(200) u * |terms| ~ 1e-6. 1e-5 both.
const LN = { atol: 1e-5, rtol: 1e-5 };
const lnCase = (x: number[], seed: number, extra = ""): Case => {
  const C = x[x.length - 1];
  return {
    name: `layerNorm x[${x}]${extra}`,
    inputs: {
      x: { shape: x, values: randn(numelOf(x), seed) },
      g: { shape: [C], values: randn(C, seed + 1).map((v) => 1 + 0.3 * v) },
      b: T(C),
    },
    build: (t) => layerNorm(t.x, t.g, t.b),
  };
};
const lnStatsSpec = (R: number, seed: number): Spec => ({
  shape: [2, R],
  values: Float64Array.from(randn(2 * R, seed), (v, i) => (i < R ? v : 0.5 + v * v)),
  noGrad: true,
});

cases("layer norm (fused)", LN, [
  lnCase([2, 5, 7], 901),
  lnCase([1, 6], 902, " (one row)"),
  lnCase([3, 1], 903, " (one channel: y = beta)"),
  lnCase([70, 9], 904, " (parameter gradient in 2 row chunks)"),
  // Rows of 3 channels can have a std of ~0.1: xhat = (x - mean) / std amplifies the f32
  // rounding of the stored mean by 1/std (measured 5e-6 on both backends), hence 3e-5.
  { ...lnCase([130, 3], 905, " (3 row chunks)"), atol: 3e-5 },
  { ...lnCase([4, 50, 24], 906, " (LViT-like rows), no fd"), fd: false },
  {
    name: "ln_stats forward x[5,33]",
    inputs: { x: T(5, 33) },
    build: (t) => lnStatsOf(t.x),
    forwardOnly: true,
  },
  {
    name: "ln_bwd_data forward",
    inputs: { x: T(6, 5), s: lnStatsSpec(6, 907), g: T(5), dy: T(6, 5) },
    build: (t) => t.x.graph.apply("ln_bwd_data", [t.x, t.s, t.g, t.dy], { eps: 1e-5 }),
    forwardOnly: true,
  },
  {
    name: "ln_bwd_params forward, 200 rows (4 chunks)",
    inputs: { x: T(200, 7), s: lnStatsSpec(200, 908), dy: T(200, 7) },
    build: (t) => t.x.graph.apply("ln_bwd_params", [t.x, t.s, t.dy], { eps: 1e-5 }),
    forwardOnly: true,
  },
]);

const eps = { eps: 1e-5 };

export const LAYER_NORM_TABLE: OpTable = {
  family: "layer_norm",
  groups,
  static: [
    { op: "ln_stats", inputs: [[2, 196, 64]] },
    { op: "ln_apply", inputs: [[2, 5, 7], [2, 10], [7], [7]], attrs: eps },
    { op: "ln_bwd_data", inputs: [[2, 5, 7], [2, 10], [7], [2, 5, 7]], attrs: eps },
    { op: "ln_bwd_params", inputs: [[5, 7], [2, 5], [5, 7]], attrs: eps }, // one pass
    { op: "ln_bwd_params", inputs: [[200, 7], [2, 200], [200, 7]], attrs: eps }, // chunked
  ],
};
