/**
 * Shape ops and sums (lib/graph/ops/shape_ops.ts, kernels/{webgpu,cpu}/{movement,reduce}.ts).
 *
 * The sample inputs of the shape ops (an `OpTable`, tests/op_suite.ts): each
 * `cases(group, tolerance, samples)` is run by tests/shape_ops_test.ts on WebGPU, on the CPU
 * and by finite differences, and its op nodes feed tests/kernels_static_test.ts. Tolerances are
 * given per group, with the reason. Notation: f32 unit roundoff u = 6e-8; an f32 sum of K terms
 * of magnitude |t| is off by ~sqrt(K)..K * u * |t|.
 */
import { concat, mean, neg, pad, relu, reshape, slice, sum } from "../../lib/graph/mod.ts";
import { type OpTable, type SuiteCase, T, tableBuilder } from "../op_suite.ts";

type Case = SuiteCase;
const { groups, cases } = tableBuilder();

// ---------------------------------------------------------------------------------------------
// Shape ops: pure data movement is exact (atol 0); sums are f32 reductions.

const MOVE = { atol: 0, rtol: 0 };
// One f32 rounding (the elementwise EXACT tolerance).
const EXACT = { atol: 2e-6, rtol: 2e-6 };
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

export const SHAPE_OPS_TABLE: OpTable = { family: "shape_ops", groups };
