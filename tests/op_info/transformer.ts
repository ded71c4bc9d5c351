/**
 * Matmul, permute and softmax (lib/graph/ops/transformer.ts, kernels/{webgpu,cpu}/transformer.ts),
 * and a multi-head self-attention block composed from them. Run by tests/transformer_ops_test.ts
 * on WebGPU, on the CPU and by finite differences; every op node of every sample, plus `static`
 * (every GEMM batch folding, padded tiles, split-K, attention-sized softmax), feeds
 * tests/kernels_static_test.ts. Tolerances are given per group with the reason. Notation: f32
 * unit roundoff u = 6e-8; an f32 sum of K terms of typical magnitude |t| is off by
 * ~sqrt(K) u |t| .. K u |t|.
 */
import {
  affine,
  layerNorm,
  linear,
  matmul,
  permute,
  reshape,
  slice,
  softmax,
  type Tensor,
} from "../../lib/graph/mod.ts";
import { softmaxGrad } from "../../lib/graph/ops/transformer.ts";

import { randn } from "../harness.ts";
import { given, type OpTable, type SuiteCase, T, tableBuilder } from "../op_suite.ts";

type Case = SuiteCase;
const { groups, cases } = tableBuilder();

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

export const TRANSFORMER_TABLE: OpTable = {
  family: "transformer",
  groups,
  static: [
    { op: "matmul", inputs: [[5, 7], [7, 3]] },
    { op: "matmul", inputs: [[9, 11], [10, 11]], attrs: { transB: true } },
    // Batch folded into M, rows padded 11 -> 16.
    { op: "matmul", inputs: [[3, 11, 5], [3, 5, 10]] },
    // Into N, columns padded.
    { op: "matmul", inputs: [[2, 5, 9], [2, 15, 5]], attrs: { transA: true, transB: true } },
    { op: "matmul", inputs: [[3, 5, 7], [7, 4]] }, // shared B
    { op: "matmul", inputs: [[5, 7], [3, 4, 7]], attrs: { transB: true } }, // shared A
    { op: "matmul", inputs: [[3, 300], [300, 5]] }, // split-K
    { op: "matmul", inputs: [[2, 260, 3], [2, 260, 2]], attrs: { transA: true } }, // batched split-K
    { op: "permute", inputs: [[2, 5, 3, 2, 3]], attrs: { perm: [2, 0, 3, 1, 4] } },
    { op: "permute", inputs: [[2, 3, 4]], attrs: { perm: [2, 0, 1] } },
    { op: "permute", inputs: [[3, 5]], attrs: { perm: [0, 1] } },
    { op: "permute", inputs: [[1, 1]], attrs: { perm: [1, 0] } },
    { op: "softmax", inputs: [[3, 7]] },
    { op: "softmax", inputs: [[16, 196, 196]] },
    { op: "softmax_grad", inputs: [[3, 7], [3, 7]] },
  ],
};
