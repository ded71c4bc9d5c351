/**
 * Fused layer norm: the samples of tests/op_info/layer_norm.ts on WebGPU, on the CPU and by finite
 * differences; the fused ops against the composed form (float64); the ln_apply contract; last,
 * coverage.
 */
import {
  add,
  fma,
  gradients,
  Graph,
  layerNorm,
  mean,
  mul,
  rsqrt,
  square,
  sub,
  sum,
  type Tensor,
} from "../lib/graph/mod.ts";
import { lnApplyOp, lnStatsOf } from "../lib/graph/ops/layer_norm.ts";
import { runRef } from "../lib/backends/ref/interpreter.ts";
import { assertClose, randn } from "./harness.ts";
import { OpSuite } from "./op_suite.ts";
import { LAYER_NORM_TABLE } from "./op_info/layer_norm.ts";

const suite = new OpSuite("layer_norm_ops_test.ts");
suite.table(LAYER_NORM_TABLE);

/** torch.nn.LayerNorm over the last axis from existing ops, the unfused form. */
function composedLayerNorm(x: Tensor, g: Tensor, b: Tensor, eps: number): Tensor {
  const ax = x.rank - 1;
  const d = sub(x, mean(x, [ax]));
  const inv = rsqrt(add(mean(square(d), [ax]), eps));
  return fma(mul(d, inv), g, b);
}

Deno.test("layer norm: fused equals the composed ops (float64), values and gradients", () => {
  const outs = [true, false].map((fused) => {
    const g = new Graph();
    const x = g.input("x", [3, 4, 6]);
    const gm = g.input("g", [6]);
    const bt = g.input("b", [6]);
    const y = fused ? layerNorm(x, gm, bt, 1e-5) : composedLayerNorm(x, gm, bt, 1e-5);
    const r = g.input("r", y.shape);
    const loss = sum(mul(y, r), [0, 1, 2]);
    const [dx, dg, db] = gradients(loss, [x, gm, bt]);
    const leaves = new Map([
      ["x", randn(72, 911)],
      ["g", randn(6, 912)],
      ["b", randn(6, 913)],
      ["r", randn(72, 914)],
    ]);
    return runRef({ y, dx, dg, db }, leaves);
  });
  // Both in float64, but the composed form rounds its constants (1/C in the means, eps) to f32
  // as its kernels do, so the two agree to ~1e-7 relative, not to float64 precision.
  for (const k of ["y", "dx", "dg", "db"]) {
    assertClose(`fused vs composed ${k}`, outs[0][k], outs[1][k], 1e-7, 1e-6);
  }
});

Deno.test("layer norm: ln_apply refuses statistics of another tensor when differentiated", () => {
  const g = new Graph();
  const x = g.input("x", [2, 3]);
  const z = g.input("z", [2, 3]);
  const y = lnApplyOp(x, lnStatsOf(z), g.input("g", [3]), g.input("b", [3]), 1e-5);
  let err: unknown;
  try {
    gradients(sum(y, [0, 1]), [x]);
  } catch (e) {
    err = e;
  }
  if (!(err instanceof Error) || !err.message.includes("ln_stats of the same input")) {
    throw new Error(`expected the ln_apply contract error, got ${err}`);
  }
});

suite.coverageTest(["ln_bwd_data", "ln_bwd_params"]);
