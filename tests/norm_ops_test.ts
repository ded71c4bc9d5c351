/**
 * Batch norm: every sample of tests/op_info/norm.ts on WebGPU, on the CPU and by finite
 * differences; the running-statistics effect; the fused ops against the composed fallback;
 * last, coverage.
 */
import { bnRunningUpdate, bnStatsOf, gradients, Graph, mul, sum } from "../lib/graph/mod.ts";
import { runRef } from "../lib/backends/ref/interpreter.ts";
import { batchNorm2d } from "../lib/nn/layers.ts";
import { assertClose, noGpu, randn, runOn } from "./harness.ts";
import { copyLeaves, OpSuite } from "./op_suite.ts";
import { NORM_TABLE } from "./op_info/norm.ts";

const suite = new OpSuite("norm_ops_test.ts");
suite.table(NORM_TABLE);

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
      suite.effects[target].add(e.op);
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

suite.coverageTest([]);
