/**
 * The transformer ops (matmul, permute, softmax, fused layer norm), forward and backward, on
 * awkward shapes:
 * - on WebGPU and on the CPU backend against the float64 reference (`checkOp`: y and the
 *   gradients of sum(y * r));
 * - in float64, autodiff against central finite differences (`fdCheck`) for every case of a
 *   differentiable op;
 * - the references against independent formulations (transposes as permutes, the fused layer
 *   norm against a composition of elementwise ops and means);
 * - a composed multi-head self-attention block, end to end;
 * - last, a coverage test over the ops this file owns (tests/op_coverage.ts).
 *
 * Tolerances are given per group with the reason. Notation: f32 unit roundoff u = 6e-8; an f32
 * sum of K terms of typical magnitude |t| is off by ~sqrt(K) u |t| .. K u |t|.
 */
import {
  add,
  affine,
  fma,
  gradients,
  Graph,
  layerNorm,
  linear,
  matmul,
  mean,
  mul,
  permute,
  reshape,
  rsqrt,
  slice,
  softmax,
  square,
  sub,
  sum,
  type Tensor,
} from "../lib/graph/mod.ts";
import { softmaxGrad } from "../lib/graph/ops/transformer.ts";
import { lnApplyOp, lnStatsOf } from "../lib/graph/ops/layer_norm.ts";
import { matmulFold, matmulKernel } from "../kernels/webgpu/transformer.ts";
import { runRef } from "../lib/backends/ref/interpreter.ts";
import { given, numelOf, OpSuite, type Spec, type SuiteCase, T } from "./op_suite.ts";
import { assertClose, randn } from "./harness.ts";
import { expectShapeError } from "./assert.ts";

// Registration and coverage bookkeeping (tests/op_suite.ts).
const suite = new OpSuite("transformer_ops_test.ts");
const { cases } = suite;
type Case = SuiteCase;

// ---------------------------------------------------------------------------------------------
// matmul

/** Stored shape of an operand: [rows, cols] of op(X), swapped when transposed, batch first. */
function stored(rows: number, cols: number, trans: boolean, batch?: number): number[] {
  const m = trans ? [cols, rows] : [rows, cols];
  return batch === undefined ? m : [batch, ...m];
}

/**
 * One case per transpose combination: op(A) [M, K] (batch bA or shared), op(B) [K, N].
 */
function mmCases(M: number, K: number, N: number, bA?: number, bB?: number): Case[] {
  const out: Case[] = [];
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      const a = stored(M, K, transA, bA), b = stored(K, N, transB, bB);
      out.push({
        name: `[${a}]${transA ? "^T" : ""} x [${b}]${transB ? "^T" : ""}`,
        inputs: { a: T(...a), b: T(...b) },
        build: (x) => matmul(x.a, x.b, { transA, transB }),
      });
    }
  }
  return out;
}

// Dot products of K terms a_k b_k with |a_k b_k| ~ 0.64 (N(0,1) inputs): the f32 sum is off by
// ~sqrt(K) u sqrt(K) ~ K u in the worst observed cases (GEMM and BLAS sum in different orders
// from the reference). The gradients are dot products over M, N (and B*M when a shared operand
// sums over the batch) of the same kind. atol = 3e-7 * max contraction (5x the K u estimate),
// floored at 2e-6 for the tiny cases, rtol 1e-5.
const mmTol = (kMax: number) => ({ atol: Math.max(2e-6, 3e-7 * kMax), rtol: 1e-5 });

cases("matmul 2-D", mmTol(19), [
  ...mmCases(5, 7, 3),
  ...mmCases(1, 13, 1), // one row, one column: tiles of 1x1
  ...mmCases(9, 11, 10), // partial 8x8 tiles in both directions, odd K
  ...mmCases(17, 19, 9).slice(0, 2),
  ...mmCases(2, 3, 1).slice(1, 3),
]);

// Both operands batched. Shapes chosen so that the batch folds into M with padded rows
// ([2,11,.] x [2,.,10]: 11 -> 16 rows per batch), into N with padded columns
// ([2,9,.] x [2,.,15]: 15 -> 16 columns), into M without padding (M = 5 < tile), and a batch
// of 1.
cases("matmul batched", mmTol(15), [
  ...mmCases(5, 7, 4, 3, 3),
  ...mmCases(11, 5, 10, 2, 2),
  ...mmCases(9, 5, 15, 2, 2),
  ...mmCases(4, 6, 5, 1, 1),
  ...mmCases(3, 1, 2, 3, 3).slice(0, 1), // K = 1
]);

// One operand shared by the whole batch: its gradient sums over the batch, as one matmul over
// the folded (batch, row) contraction (with a permute when the layout needs one).
cases("matmul shared operand", mmTol(15), [
  ...mmCases(5, 7, 4, 3, undefined), // B shared
  ...mmCases(5, 7, 4, undefined, 3), // A shared
  ...mmCases(1, 3, 2, 3, undefined).slice(0, 2),
  ...mmCases(3, 4, 1, undefined, 2).slice(2, 4),
]);

// K >= 256 with few output tiles: the GEMM splits K across invocations and adds the partial
// sums in split order in a second pass. The linear case splits K in the weight gradient
// (dW = dy^T x over 300 rows), its most common use. fd: the bilinear loss has no truncation
// error, so finite differences stay exact enough at these sizes.
cases("matmul split-K", mmTol(300), [
  ...mmCases(3, 300, 5).slice(0, 2),
  ...mmCases(3, 260, 2, 2, 2).slice(2, 4),
  ...mmCases(2, 270, 3, 3, undefined).slice(1, 2),
  {
    name: "linear x[300,6] w[5,6] b[5] (split-K in dW)",
    inputs: { x: T(300, 6), w: T(5, 6), b: T(5) },
    build: (t) => linear(t.x, t.w, t.b),
  },
]);

cases("linear", mmTol(24), [
  {
    name: "x[2,7,6] w[5,6] b[5] (leading axes flattened)",
    inputs: { x: T(2, 7, 6), w: T(5, 6), b: T(5) },
    build: (t) => linear(t.x, t.w, t.b),
  },
  {
    name: "x[9] w[3,9] no bias (a single vector)",
    inputs: { x: T(9), w: T(3, 9) },
    build: (t) => linear(t.x, t.w),
  },
  {
    name: "x[3,4,2,24] w[10,24] b[10], forward and backward, no fd",
    inputs: { x: T(3, 4, 2, 24), w: T(10, 24), b: T(10) },
    build: (t) => linear(t.x, t.w, t.b),
    fd: false,
  },
]);

// Attention-sized products (T = 50 tokens, d = 16, 6 heads x batches): the larger tile grids.
cases("matmul attention-sized", mmTol(50), [
  {
    name: "q k^T [6,50,16] x [6,50,16]^T",
    inputs: { q: T(6, 50, 16), k: T(6, 50, 16) },
    build: (t) => matmul(t.q, t.k, { transB: true }),
    fd: false,
  },
  {
    name: "att v [6,50,50] x [6,50,16]",
    inputs: { p: T(6, 50, 50), v: T(6, 50, 16) },
    build: (t) => matmul(t.p, t.v),
    fd: false,
  },
]);

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
  for (const [g, w] of want) {
    const f = matmulFold(g);
    if (`${f.axis}${f.pad}` !== w) {
      throw new Error(`fold of ${JSON.stringify(g)}: ${f.axis}${f.pad}`);
    }
  }
  // The split-K shapes above really take the two-pass path.
  const split = (B: number, M: number, N: number, K: number, bA: boolean, bB: boolean) =>
    matmulKernel({ B, M, N, K, transA: false, transB: false, batchA: bA, batchB: bB })
      .kernels.length;
  if (split(1, 3, 5, 300, false, false) !== 2) throw new Error("2-D split-K not split");
  if (split(2, 3, 2, 260, true, true) !== 2) throw new Error("batched split-K not split");
  if (split(3, 2, 3, 270, true, false) !== 2) throw new Error("shared-B split-K not split");
  if (split(1, 5, 6, 300, false, false) !== 2) throw new Error("linear dW split-K not split");
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

// ---------------------------------------------------------------------------------------------
// permute: exact copies on every backend (atol 0), gradients are permutes too.

const EXACT = { atol: 0, rtol: 0 };
const perm = (shape: number[], p: number[]): Case => ({
  name: `[${shape}] by [${p}]`,
  inputs: { x: T(...shape) },
  build: (t) => permute(t.x, p),
});
cases("permute", EXACT, [
  perm([2, 5, 3, 2, 3], [2, 0, 3, 1, 4]), // [B,T,3,H,d] -> [3,B,H,T,d]
  perm([2, 3, 5, 4], [0, 2, 1, 3]), // heads back: [B,H,T,d] -> [B,T,H,d]
  perm([2, 3, 4], [2, 0, 1]), // strided innermost axis
  perm([3, 1, 4], [1, 2, 0]), // a size-1 axis
  perm([4, 7], [1, 0]),
  perm([3, 5], [0, 1]), // identity: one contiguous copy
  perm([5], [0]),
  perm([1, 1, 1], [2, 1, 0]),
]);

// ---------------------------------------------------------------------------------------------
// softmax

// exp is a few ulp on lavapipe, then a division by a sum of L <= 50 terms of magnitude <= 1:
// ~sqrt(L) u relative. The backward sums dy * y over the row (|dy| ~ 1): atol 1e-6 covers the
// sum's rounding, rtol 1e-5 the exp.
const SOFTMAX = { atol: 1e-6, rtol: 1e-5 };
cases("softmax", SOFTMAX, [
  { name: "[3,7]", inputs: { x: T(3, 7) }, build: (t) => softmax(t.x) },
  { name: "[2,1,5]", inputs: { x: T(2, 1, 5) }, build: (t) => softmax(t.x) },
  { name: "[4,1] (rows of one)", inputs: { x: T(4, 1) }, build: (t) => softmax(t.x) },
  { name: "[11] (one row)", inputs: { x: T(11) }, build: (t) => softmax(t.x) },
  {
    // exp(100) overflows f32: only a max-subtracted softmax gets these right.
    name: "large logits (max-subtracted)",
    inputs: { x: given([2, 4], [100, 101, 99, -50, -300, -299.5, -301, -400]) },
    build: (t) => softmax(t.x),
  },
  { name: "[3,2,50] (attention rows)", inputs: { x: T(3, 2, 50) }, build: (t) => softmax(t.x) },
  {
    name: "[2,196] (LViT token rows), no fd",
    inputs: { x: T(2, 196) },
    build: (t) => softmax(t.x),
    fd: false,
  },
  {
    name: "softmax_grad forward [5,9]",
    inputs: {
      y: { shape: [5, 9], values: Float64Array.from(randn(45, 31), (v) => 1 / (1 + Math.exp(v))) },
      dy: T(5, 9),
    },
    build: (t) => softmaxGrad(t.y, t.dy),
    forwardOnly: true,
  },
]);

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

// ---------------------------------------------------------------------------------------------
// A multi-head self-attention block composed from the ops above: qkv linear -> reshape ->
// permute -> q k^T * d^-0.5 -> softmax -> @ v -> permute back -> proj linear. Sums of <= 8
// terms per product and a 5-way softmax: the per-op tolerances compound over ~10 ops, 2e-5.

function attention(
  x: Tensor,
  wqkv: Tensor,
  bqkv: Tensor,
  wp: Tensor,
  bp: Tensor,
  H: number,
): Tensor {
  const [B, T, C] = x.shape;
  const d = C / H;
  const qkv = permute(reshape(linear(x, wqkv, bqkv), [B, T, 3, H, d]), [2, 0, 3, 1, 4]);
  const part = (i: number) => reshape(slice(qkv, 0, i, 1), [B * H, T, d]);
  const [q, k, v] = [0, 1, 2].map(part);
  const att = softmax(affine(matmul(q, k, { transB: true }), d ** -0.5, 0));
  const o = permute(reshape(matmul(att, v), [B, H, T, d]), [0, 2, 1, 3]);
  return linear(reshape(o, [B, T, C]), wp, bp);
}

cases("multi-head self-attention", { atol: 2e-5, rtol: 2e-5 }, [
  {
    name: "B2 T5 C6 H2",
    inputs: {
      x: T(2, 5, 6),
      wqkv: { shape: [18, 6], values: randn(108, 951, 0.5) },
      bqkv: T(18),
      wp: { shape: [6, 6], values: randn(36, 952, 0.5) },
      bp: T(6),
    },
    build: (t) => attention(t.x, t.wqkv, t.bqkv, t.wp, t.bp, 2),
  },
  {
    name: "B1 T3 C4 H1",
    inputs: { x: T(1, 3, 4), wqkv: T(12, 4), bqkv: T(12), wp: T(4, 4), bp: T(4) },
    build: (t) => attention(t.x, t.wqkv, t.bqkv, t.wp, t.bp, 1),
  },
  {
    name: "B3 T7 C8 H4, layer-normed input",
    inputs: {
      x: T(3, 7, 8),
      g: T(8),
      b: T(8),
      wqkv: { shape: [24, 8], values: randn(192, 953, 0.5) },
      bqkv: T(24),
      wp: { shape: [8, 8], values: randn(64, 954, 0.5) },
      bp: T(8),
    },
    build: (t) => attention(layerNorm(t.x, t.g, t.b), t.wqkv, t.bqkv, t.wp, t.bp, 4),
  },
]);

// ---------------------------------------------------------------------------------------------
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

suite.coverageTest(["softmax_grad", "ln_bwd_data", "ln_bwd_params", "matmul", "permute"]);
