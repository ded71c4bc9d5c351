/**
 * GELU, dropout and max over an axis (lib/graph/ops/misc.ts, kernels/{webgpu,cpu}/misc.ts). Their
 * run samples are still registered by tests/misc_ops_test.ts; here are the kernel shapes for
 * tests/kernels_static_test.ts.
 */
import { elementwiseStatic, type OpTable } from "../op_suite.ts";

const big = 64 * 65535 + 1;

export const MISC_TABLE: OpTable = {
  family: "misc",
  groups: [],
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
