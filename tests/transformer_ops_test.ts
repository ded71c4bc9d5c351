/**
 * The transformer ops (matmul, permute, softmax): the samples of tests/op_info/transformer.ts,
 * forward and backward, on awkward shapes:
 * - on WebGPU and on the CPU backend against the float64 reference (`checkOp`: y and the
 *   gradients of sum(y * r));
 * - in float64, autodiff against central finite differences (`fdCheck`) for every case of a
 *   differentiable op;
 * - the references against independent formulations (transposes as permutes);
 * - a composed multi-head self-attention block, end to end (in the table);
 * - last, a coverage test over the ops this file owns (tests/op_coverage.ts).
 *
 * Tolerances are given per group with the reason. Notation: f32 unit roundoff u = 6e-8; an f32
 * sum of K terms of typical magnitude |t| is off by ~sqrt(K) u |t| .. K u |t|.
 */
import {
  Graph,
  layerNorm,
  linear,
  matmul,
  permute,
  reshape,
  type Tensor,
} from "../lib/graph/mod.ts";
import { permPlan, softmaxGrad } from "../lib/graph/ops/transformer.ts";
import { permuteCpu, softmaxCpu, softmaxRowsJs } from "../kernels/cpu/transformer.ts";
import { SOFTMAX_CHUNK } from "../kernels/cpu/softmax_wasm.ts";

import { matmulFold, matmulKernel } from "../kernels/webgpu/transformer.ts";
import { SOFTWARE_TARGET } from "../kernels/webgpu/types.ts";
import { runRef } from "../lib/backends/ref/interpreter.ts";
import { OpSuite } from "./op_suite.ts";
import { assertClose, randn } from "./harness.ts";
import { assertEquals, expectShapeError } from "./assert.ts";
import { TRANSFORMER_TABLE } from "./op_info/transformer.ts";

// Registration and coverage bookkeeping (tests/op_suite.ts).
const suite = new OpSuite("transformer_ops_test.ts", { hardware: true });
suite.table(TRANSFORMER_TABLE);

/** The hardware kernel class with the spec's default limits. */
const HARDWARE = { ...SOFTWARE_TARGET, kernels: "hardware" as const };

Deno.test("matmul: the tested shapes reach every batch folding of the GEMM", () => {
  const geom = (B: number, M: number, N: number, batchA: boolean, batchB: boolean) => ({
    B,
    M,
    N,
    K: 5,
    transA: false,
    transB: false,
    batchA,
    batchB,
  });
  const want: [ReturnType<typeof geom>, string][] = [
    [geom(2, 11, 10, true, true), "M16"],
    [geom(2, 9, 15, true, true), "N16"],
    [geom(16, 196, 16, true, true), "M200"], // attention: rows padded 196 -> 200
    [geom(3, 5, 4, true, true), "M5"], // tiles of 5 rows, 4 columns: no padding, a tie
    [geom(3, 5, 4, true, false), "M5"], // shared B: rows of all batches
    [geom(3, 5, 4, false, true), "N4"], // shared A: columns of all batches
    [geom(1, 4, 5, true, true), "M4"], // a batch of one is a 2-D product
  ];
  // The hardware class pads each batch to its 64 x 64 workgroup tile instead.
  const hwWant: [ReturnType<typeof geom>, string][] = [
    [geom(2, 11, 10, true, true), "M64"],
    [geom(2, 9, 15, true, true), "N64"],
    [geom(16, 196, 16, true, true), "M256"],
    [geom(3, 5, 4, true, false), "M5"],
    [geom(3, 5, 4, false, true), "N4"],
  ];
  for (const [list, t] of [[want, SOFTWARE_TARGET], [hwWant, HARDWARE]] as const) {
    for (const [g, w] of list) {
      const f = matmulFold(g, t);
      if (`${f.axis}${f.pad}` !== w) {
        throw new Error(`${t.kernels} fold of ${JSON.stringify(g)}: ${f.axis}${f.pad}`);
      }
    }
  }
  // The split-K shapes above really take the two-pass path, in both kernel classes.
  for (const t of [SOFTWARE_TARGET, HARDWARE]) {
    const split = (B: number, M: number, N: number, K: number, bA: boolean, bB: boolean) =>
      matmulKernel({ B, M, N, K, transA: false, transB: false, batchA: bA, batchB: bB }, t)
        .kernels.length;
    const c = t.kernels;
    if (split(1, 3, 5, 300, false, false) !== 2) throw new Error(`${c}: 2-D split-K not split`);
    if (split(2, 3, 2, 260, true, true) !== 2) throw new Error(`${c}: batched split-K not split`);
    if (split(3, 2, 3, 270, true, false) !== 2) throw new Error(`${c}: shared-B split-K`);
    if (split(1, 5, 6, 300, false, false) !== 2) throw new Error(`${c}: linear dW not split`);
  }
});

Deno.test("matmul reference: transposes equal explicit permutes, batches equal 2-D products", () => {
  const g = new Graph();
  const a = g.input("a", [3, 4, 5]);
  const b = g.input("b", [3, 6, 5]);
  const w = g.input("w", [5, 2]);
  const c = g.input("c", [3, 5, 4]);
  const outs: Record<string, Tensor> = {
    t: matmul(a, b, { transB: true }),
    p: matmul(a, permute(b, [0, 2, 1])),
    s: matmul(a, w),
    s2: reshape(matmul(reshape(a, [12, 5]), w), [3, 4, 2]),
    tt: matmul(c, b, { transA: true, transB: true }),
    tp: matmul(permute(c, [0, 2, 1]), permute(b, [0, 2, 1])),
    bt: matmul(b, a, { transB: true }),
    btp: permute(matmul(a, b, { transB: true }), [0, 2, 1]),
  };
  const leaves = new Map([["a", randn(60, 1)], ["b", randn(90, 2)], ["w", randn(10, 3)], [
    "c",
    randn(60, 4),
  ]]);
  const r = runRef(outs, leaves);
  assertClose("A B^T", r.t, r.p, 1e-12, 1e-12);
  assertClose("shared B", r.s, r.s2, 1e-12, 1e-12);
  assertClose("C^T B^T", r.tt, r.tp, 1e-12, 1e-12);
  assertClose("B A^T = (A B^T)^T", r.bt, r.btp, 1e-12, 1e-12);
  // And one element by hand: t[1, 2, 3] = sum_k a[1,2,k] b[1,3,k].
  const av = leaves.get("a")!, bv = leaves.get("b")!;
  let s = 0;
  for (let k = 0; k < 5; k++) s += av[(1 * 4 + 2) * 5 + k] * bv[(1 * 6 + 3) * 5 + k];
  assertClose("t[1,2,3]", [r.t[(1 * 4 + 2) * 6 + 3]], [s], 1e-12, 1e-12);
});

// Bad shapes fail while the graph is built, naming the op and the shapes.

Deno.test("transformer ops: shape errors at graph-build time name the op and shapes", () => {
  const g = new Graph();
  const a = g.input("a", [2, 3]);
  const b = g.input("b", [4, 5]);
  const a3 = g.input("a3", [2, 4, 3]);
  const b3 = g.input("b3", [3, 3, 5]);
  const before = g.nodes.length;
  expectShapeError("matmul K", () => matmul(a, b), "matmul", "[2, 3]", "[4, 5]");
  expectShapeError("matmul batch", () => matmul(a3, b3), "matmul", "batch sizes 2 and 3");
  expectShapeError("matmul rank", () => matmul(g.input("v", [3]), b), "matmul", "[3]");
  expectShapeError("permute", () => permute(a3, [0, 0, 1]), "permute", "[2, 4, 3]");
  expectShapeError("permute rank", () => permute(a, [1, 0, 2]), "permute", "[2, 3]");
  expectShapeError("layerNorm gamma", () => layerNorm(a, b, b), "ln_apply", "gamma");
  expectShapeError("linear", () => linear(a, b), "linear", "[2, 3]", "[4, 5]");
  expectShapeError("softmax_grad", () => softmaxGrad(a, b), "softmax_grad", "[2, 3]");
  // v, and the ln_stats node of the failed layerNorm, are the only additions.
  if (g.nodes.length !== before + 2) throw new Error("a failed op left a node in the graph");
});

// ---------------------------------------------------------------------------------------------
// Coverage: every op this file owns was exercised above. Deno runs tests in file order.
// kernels/cpu/softmax_wasm.ts runs the CPU softmax as WebAssembly; it must give
// the JavaScript rows' f32 bits: rows of 1, 3, 16, 17 and 960 values (pair loop tails, chunks of
// whole rows, the chunk limit itself), large and tiny logits, rows with NaN first or last, an
// infinity, and zero maxima of either sign (where its max's rules differ from Math.max's), through
// run and runPart.
Deno.test("softmax on the CPU: the WebAssembly kernel equals the JavaScript bit for bit", () => {
  let st = 11; // an LCG: varied inputs, not good random numbers
  const next = () => (st = (Math.imul(st, 1664525) + 1013904223) >>> 0);
  const unit = () => next() / 2 ** 32 - 0.5;
  const bits = (a: Float32Array, i: number) =>
    Number.isNaN(a[i]) ? "NaN" : new Uint32Array(a.buffer, a.byteOffset, a.length)[i];
  for (const [R, L] of [[5, 1], [7, 3], [300, 16], [129, 17], [37, 960], [2, SOFTMAX_CHUNK]]) {
    const n = R * L;
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = unit() * [0.1, 4, 90, 1e30][i % 4];
    if (R > 5) {
      x[L] = NaN; // row 1 starts with NaN,
      x[2 * L + L - 1] = NaN; // row 2 ends with one,
      x[3 * L] = Infinity; // row 3 has +Infinity,
      for (let j = 0; j < L; j++) x[4 * L + j] = j % 2 ? -0 : -1; // row 4's max is -0,
      for (let j = 0; j < L; j++) x[5 * L + j] = [-0, 0, -2][j % 3]; // row 5's is 0 and -0
    }
    const want = new Float32Array(n);
    softmaxRowsJs(x, want, 0, R, L);
    for (const parts of [1, 3]) {
      const got = new Float32Array(n).fill(7), k = softmaxCpu(R, L);
      if (parts === 1) k.run([x], got, []);
      else for (let p = 0; p < parts; p++) k.runPart!([x], got, [], p, parts);
      for (let i = 0; i < n; i++) {
        if (bits(got, i) !== bits(want, i)) {
          throw new Error(`softmax ${R}x${L} [${i}]: ${got[i]}, want ${want[i]}`);
        }
      }
    }
  }
});

// The CPU permute copies blocks of its two innermost axes, parts (threads) taking ranges of
// blocks: every part split must give run's output, which must be the permutation itself.
Deno.test("permute on the CPU: parts give run's output, the permutation's values", () => {
  const cases: [number[], number[]][] = [
    [[64, 4, 16, 4], [0, 1, 3, 2]],
    [[6, 16, 4, 4], [0, 2, 1, 3]],
    [[2, 3, 4, 5, 6], [4, 2, 0, 3, 1]],
    [[3, 5], [1, 0]],
    [[7], [0]],
  ];
  for (const [shape, perm] of cases) {
    const p = permPlan(shape, perm);
    const n = shape.reduce((a, b) => a * b, 1);
    const x = Float32Array.from({ length: n }, (_, i) => i);
    // The permutation by its definition: out[idx] = x[sum of idx[k] * stride of axis perm[k]].
    const strides = shape.map((_, k) => shape.slice(k + 1).reduce((a, b) => a * b, 1));
    const outShape = perm.map((a) => shape[a]);
    const want = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      let rest = i, src = 0;
      for (let k = outShape.length - 1; k >= 0; k--) {
        src += (rest % outShape[k]) * strides[perm[k]];
        rest = Math.floor(rest / outShape[k]);
      }
      want[i] = x[src];
    }
    const k = permuteCpu(p.sizes, p.strides);
    const whole = new Float32Array(n);
    k.run([x], whole, []);
    assertEquals(Array.from(whole), Array.from(want));
    for (const parts of [2, 3, 7]) {
      const got = new Float32Array(n).fill(-1);
      for (let q = parts - 1; q >= 0; q--) k.runPart!([x], got, [], q, parts);
      assertEquals(Array.from(got), Array.from(want));
    }
  }
});

suite.coverageTest(["softmax_grad", "matmul", "permute"]);
