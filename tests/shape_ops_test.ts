/**
 * The shape ops and sums: every sample of tests/op_info/shape_ops.ts on WebGPU, on the CPU and by
 * finite differences; shape errors of every family at graph-build time; last, coverage.
 */
import {
  add,
  bce,
  concat,
  conv2d,
  convTranspose,
  expand,
  Graph,
  maxpool2d,
  mul,
  reshape,
  slice,
  sum,
} from "../lib/graph/mod.ts";
import { expectShapeError } from "./assert.ts";
import { OpSuite } from "./op_suite.ts";
import { SHAPE_OPS_TABLE } from "./op_info/shape_ops.ts";

const suite = new OpSuite("shape_ops_test.ts");
suite.table(SHAPE_OPS_TABLE);

// ---------------------------------------------------------------------------------------------
// Bad shapes fail while the graph is built, with a message naming the op and the shapes.

Deno.test("shape errors are raised at graph-build time and name the op and shapes", () => {
  const g = new Graph();
  const x = g.input("x", [1, 3, 8, 8]);
  const w = g.input("w", [4, 5, 3, 3]);
  const a = g.input("a", [2, 3]);
  const b = g.input("b", [4, 3]);
  const before = g.nodes.length;
  expectShapeError("conv2d", () => conv2d(x, w), "conv2d", "[1, 3, 8, 8]", "[4, 5, 3, 3]");
  expectShapeError("add", () => add(a, b), "add", "[2, 3]", "[4, 3]");
  const w3 = g.input("w3", [4, 3, 3, 3]);
  expectShapeError("conv2d bias", () => conv2d(x, w3, a), "conv2d", "[2, 3]");
  expectShapeError("conv2d too big", () => conv2d(x, w3, undefined, { dilation: 5 }), "conv2d");
  expectShapeError("mul", () => mul(a, b), "mul", "[2, 3]", "[4, 3]");
  expectShapeError("reshape", () => reshape(a, [4, 2]), "reshape", "[2, 3]");
  expectShapeError("sum axis", () => sum(a, [2]), "sum", "[2, 3]");
  expectShapeError("slice", () => slice(a, 1, 2, 2), "slice", "[2, 3]");
  expectShapeError("concat", () => concat([a, b], 1), "concat", "[2, 3]", "[4, 3]");
  expectShapeError("expand", () => expand(b, [2, 4, 2]), "expand", "[4, 3]");
  expectShapeError("maxpool2d", () => maxpool2d(x, 9), "maxpool2d", "[1, 3, 8, 8]");
  expectShapeError("conv_transpose", () => convTranspose(x, w), "conv_transpose", "[1, 3, 8, 8]");
  expectShapeError("bce", () => bce(a, b), "bce", "[2, 3]", "[4, 3]");
  expectShapeError("assign", () => g.apply("assign", [a, b]), "assign", "[2, 3]", "[4, 3]");
  expectShapeError("arity", () => g.apply("neg", [a, b]), "neg", "expects 1 inputs");
  if (g.nodes.length !== before + 1) throw new Error("a failed op left a node in the graph");
});

suite.coverageTest([]);
