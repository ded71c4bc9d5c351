/**
 * Pooling and upsampling (lib/graph/ops/pool.ts, kernels/{webgpu,cpu}/pool.ts).
 *
 * The sample inputs of the pool ops (an `OpTable`, tests/op_suite.ts): each
 * `cases(group, tolerance, samples)` is run by tests/pool_ops_test.ts on WebGPU, on the CPU
 * and by finite differences, and its op nodes feed tests/kernels_static_test.ts. Tolerances are
 * given per group, with the reason. Notation: f32 unit roundoff u = 6e-8; an f32 sum of K terms
 * of magnitude |t| is off by ~sqrt(K)..K * u * |t|.
 */
import { maxpool2d, upsampleNearest2d } from "../../lib/graph/mod.ts";
import { given, type OpTable, type SuiteCase, T, tableBuilder } from "../op_suite.ts";

type Case = SuiteCase;
const { groups, cases } = tableBuilder();

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

export const POOL_TABLE: OpTable = { family: "pool", groups };
