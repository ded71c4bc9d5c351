/**
 * Pooling and upsampling: every sample of tests/op_info/pool.ts on WebGPU, on the CPU and by
 * finite differences; the forward references against independent loops; last, coverage.
 */
import { maxpool2d, upsampleNearest2d } from "../lib/graph/mod.ts";
import { assertClose } from "./harness.ts";
import { at4, numelOf, OpSuite, refRun } from "./op_suite.ts";
import { POOL_TABLE } from "./op_info/pool.ts";

const suite = new OpSuite("pool_ops_test.ts");
suite.table(POOL_TABLE);

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

suite.coverageTest(["maxpool2d_bwd", "pool_sum", "upsample_nearest"]);
