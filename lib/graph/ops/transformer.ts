/**
 * The transformer ops of the LViT model: matmul (2-D, batched, or batched times a shared
 * matrix), axis permutation and softmax over the last axis (layer norm: layer_norm.ts).
 */
import { defineOp, type OpDef, type Tensor } from "../graph.ts";
import { numel, type Shape, ShapeError, stridesOf } from "../shape.ts";
import { add } from "./elementwise.ts";
import { reshape } from "./shape_ops.ts";

/**
 * out[b] = op(A_b) · op(B_b) with op(A_b) [M, K], op(B_b) [K, N]. `batchA` / `batchB` say
 * whether the operand has a batch axis of B matrices; an operand without one is shared by every
 * batch (B = 1 with neither batched is the plain 2-D product).
 */
export interface MatmulGeom {
  B: number;
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  batchA: boolean;
  batchB: boolean;
}

// ---------------------------------------------------------------------------------------------
// matmul

/** Transposes of the operands, as in BLAS: op(A) = A^T when transA. */
export type MatmulAttrs = { transA?: boolean; transB?: boolean };

/** The geometry of op(ins[0]) · op(ins[1]), or a ShapeError. */
export function mmGeom(ins: Shape[], a: MatmulAttrs): MatmulGeom {
  const [sa, sb] = ins;
  if (sa.length < 2 || sa.length > 3 || sb.length < 2 || sb.length > 3) {
    throw new ShapeError("matmul", ins, "expects 2-D or 3-D (batched) operands");
  }
  const batchA = sa.length === 3, batchB = sb.length === 3;
  if (batchA && batchB && sa[0] !== sb[0]) {
    throw new ShapeError("matmul", ins, `batch sizes ${sa[0]} and ${sb[0]} differ`);
  }
  const B = batchA ? sa[0] : batchB ? sb[0] : 1;
  const [a0, a1] = sa.slice(-2), [b0, b1] = sb.slice(-2);
  const [M, K] = a.transA ? [a1, a0] : [a0, a1];
  const [K2, N] = a.transB ? [b1, b0] : [b0, b1];
  if (K !== K2) {
    throw new ShapeError(
      "matmul",
      ins,
      `inner sizes ${K} and ${K2} differ (transA ${!!a.transA}, transB ${!!a.transB})`,
    );
  }
  if (!(B > 0 && M > 0 && N > 0 && K > 0)) throw new ShapeError("matmul", ins, "empty operand");
  return {
    B,
    M,
    N,
    K,
    transA: !!a.transA,
    transB: !!a.transB,
    batchA,
    batchB,
  };
}

const mm = (a: Tensor, b: Tensor, transA = false, transB = false) =>
  a.graph.apply("matmul", [a, b], { transA, transB });

/**
 * dA of C = op(A) op(B). With A batched (or both 2-D) it is one matmul per batch; a shared A
 * sums over the batch, which is the contraction over (batch, n) of one 2-D matmul once dy is
 * laid out [M, B*N] and B as [B*N, K] (or [K, B*N]).
 */
function gradA(a: Tensor, b: Tensor, dy: Tensor, tA: boolean, tB: boolean): Tensor {
  if (a.rank === 3 || b.rank === 2) return tA ? mm(b, dy, tB, true) : mm(dy, b, false, !tB);
  const [B, M, N] = dy.shape;
  const K = tB ? b.shape[2] : b.shape[1];
  const dyP = reshape(permute(dy, [1, 0, 2]), [M, B * N]);
  if (tB) {
    const bF = reshape(b, [B * N, K]);
    return tA ? mm(bF, dyP, true, true) : mm(dyP, bF);
  }
  const bP = reshape(permute(b, [1, 0, 2]), [K, B * N]);
  return tA ? mm(bP, dyP, false, true) : mm(dyP, bP, false, true);
}

/** dB, symmetric to gradA: a shared B sums over (batch, m). */
function gradB(a: Tensor, b: Tensor, dy: Tensor, tA: boolean, tB: boolean): Tensor {
  if (b.rank === 3 || a.rank === 2) return tB ? mm(dy, a, true, tA) : mm(a, dy, !tA, false);
  const [B, M, N] = dy.shape;
  const K = tA ? a.shape[1] : a.shape[2];
  const dyF = reshape(dy, [B * M, N]);
  if (!tA) {
    const aF = reshape(a, [B * M, K]);
    return tB ? mm(dyF, aF, true, false) : mm(aF, dyF, true, false);
  }
  const aP = reshape(permute(a, [1, 0, 2]), [K, B * M]);
  return tB ? mm(dyF, aP, true, true) : mm(aP, dyF);
}

/** The `matmul` op. */
export const matmulDef: OpDef<MatmulAttrs> = defineOp({
  name: "matmul",
  arity: 2,
  shape: (ins, a) => {
    const g = mmGeom(ins, a);
    return g.batchA || g.batchB ? [g.B, g.M, g.N] : [g.M, g.N];
  },
  grad: ({ x, dy, attrs }) => {
    const tA = !!attrs.transA, tB = !!attrs.transB;
    return [gradA(x[0], x[1], dy, tA, tB), gradB(x[0], x[1], dy, tA, tB)];
  },
  ref: (ins, shapes, a) => {
    const g = mmGeom(shapes, a);
    const [A, Bm] = ins;
    const { M, N, K } = g;
    const out = new Float64Array(g.B * M * N);
    for (let b = 0; b < g.B; b++) {
      const oa = g.batchA ? b * M * K : 0, ob = g.batchB ? b * K * N : 0;
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < N; n++) {
          let s = 0;
          for (let k = 0; k < K; k++) {
            s += A[oa + (g.transA ? k * M + m : m * K + k)] *
              Bm[ob + (g.transB ? n * K + k : k * N + n)];
          }
          out[(b * M + m) * N + n] = s;
        }
      }
    }
    return out;
  },
  macs: (ins, a) => {
    const g = mmGeom(ins, a);
    return g.B * g.M * g.N * g.K;
  },
});

// ---------------------------------------------------------------------------------------------
// permute

/** Attributes of `permute`: output axis i is input axis perm[i]. */
export type PermuteAttrs = { perm: number[] };

function checkPerm(ins: Shape[], perm: number[]) {
  const r = ins[0].length;
  const seen = new Set(perm);
  if (perm.length !== r || seen.size !== r || perm.some((p) => !(p >= 0 && p < r))) {
    throw new ShapeError("permute", ins, `[${perm.join(", ")}] is not a permutation of ${r} axes`);
  }
}

/**
 * The permutation as output axis sizes and the input strides of those axes, with size-1 axes
 * dropped and neighbouring output axes merged where they are contiguous in the input too
 * ([B,T,3,H,d] -> [3,B,H,T,d] keeps d as one contiguous run): fewer divisions per element on
 * the GPU, longer inner loops on the CPU.
 */
export function permPlan(shape: Shape, perm: number[]): { sizes: number[]; strides: number[] } {
  const is = stridesOf(shape);
  const sizes: number[] = [];
  const strides: number[] = [];
  for (const p of perm) {
    if (shape[p] === 1) continue;
    const k = sizes.length - 1;
    if (k >= 0 && strides[k] === shape[p] * is[p]) {
      sizes[k] *= shape[p];
      strides[k] = is[p];
    } else {
      sizes.push(shape[p]);
      strides.push(is[p]);
    }
  }
  return { sizes, strides };
}

/** The `permute` op. */
export const permuteDef: OpDef<PermuteAttrs> = defineOp({
  name: "permute",
  arity: 1,
  shape: (ins, a) => {
    checkPerm(ins, a.perm);
    return a.perm.map((p) => ins[0][p]);
  },
  grad: ({ dy, attrs }) => {
    const inv = new Array<number>(attrs.perm.length);
    attrs.perm.forEach((p, i) => (inv[p] = i));
    return [permute(dy, inv)];
  },
  ref: (ins, shapes, a, out) => {
    const is = stridesOf(shapes[0]);
    const os = stridesOf(out);
    const res = new Float64Array(numel(out));
    for (let i = 0; i < res.length; i++) {
      let off = 0;
      for (let d = 0; d < out.length; d++) off += (Math.floor(i / os[d]) % out[d]) * is[a.perm[d]];
      res[i] = ins[0][off];
    }
    return res;
  },
});

// ---------------------------------------------------------------------------------------------
// softmax

/** Rows R and row length L of a tensor reduced over its last axis. */
export function rows(op: string, ins: Shape[]): { R: number; L: number } {
  const s = ins[0];
  if (s.length < 1 || s[s.length - 1] < 1) {
    throw new ShapeError(op, ins, "expects a non-empty last axis");
  }
  const L = s[s.length - 1];
  return { R: numel(s) / L, L };
}

export function sameAs0(op: string, ins: Shape[], k: number, what: string) {
  if (ins[k].join() !== ins[0].join()) throw new ShapeError(op, ins, `${what} must match x`);
}

/** The `softmax` op. */
export const softmaxDef: OpDef = defineOp({
  name: "softmax",
  arity: 1,
  shape: (ins) => {
    rows("softmax", ins);
    return ins[0];
  },
  grad: ({ y, dy }) => [softmaxGrad(y, dy)],
  ref: (ins, shapes) => {
    const { R, L } = rows("softmax", shapes);
    const x = ins[0];
    const out = new Float64Array(x.length);
    for (let r = 0; r < R; r++) {
      const base = r * L;
      let mx = -Infinity;
      for (let j = 0; j < L; j++) mx = Math.max(mx, x[base + j]);
      let s = 0;
      for (let j = 0; j < L; j++) s += out[base + j] = Math.exp(x[base + j] - mx);
      for (let j = 0; j < L; j++) out[base + j] /= s;
    }
    return out;
  },
});

/** The `softmax_grad` op. */
export const softmaxGradDef: OpDef = defineOp({
  name: "softmax_grad",
  arity: 2,
  shape: (ins) => {
    rows("softmax_grad", ins);
    sameAs0("softmax_grad", ins, 1, "dy");
    return ins[0];
  },
  ref: (ins, shapes) => {
    const { R, L } = rows("softmax_grad", shapes);
    const [y, dy] = ins;
    const out = new Float64Array(y.length);
    for (let r = 0; r < R; r++) {
      const base = r * L;
      let s = 0;
      for (let j = 0; j < L; j++) s += dy[base + j] * y[base + j];
      for (let j = 0; j < L; j++) out[base + j] = y[base + j] * (dy[base + j] - s);
    }
    return out;
  },
});

// ---------------------------------------------------------------------------------------------
// Model-building functions.

/**
 * op(a) · op(b): 2-D [M, K] x [K, N], batched [B, M, K] x [B, K, N], or either operand 2-D and
 * shared by every batch of the other. `transA` / `transB` transpose the last two axes of an
 * operand without copying it.
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulAttrs = {}): Tensor {
  return mm(a, b, !!opts.transA, !!opts.transB);
}

/** Reorders the axes of x: output axis i is input axis perm[i] (torch.permute). */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  return x.graph.apply("permute", [x], { perm: [...perm] });
}

/** Softmax over the last axis, max-subtracted. */
export const softmax = (x: Tensor): Tensor => x.graph.apply("softmax", [x]);

/** The softmax backward: y * (dy - sum(dy * y)) over the last axis, from the output y. */
export const softmaxGrad = (y: Tensor, dy: Tensor) => y.graph.apply("softmax_grad", [y, dy]);

/**
 * x · w^T + bias over the last axis, as torch.nn.Linear: x [..., Cin], w [Cout, Cin],
 * bias [Cout]. Leading axes are flattened into the rows of one 2-D matmul.
 */
export function linear(x: Tensor, w: Tensor, bias?: Tensor): Tensor {
  const cin = x.shape[x.rank - 1];
  if (x.rank < 1 || w.rank !== 2 || w.shape[1] !== cin) {
    const shapes = bias ? [x.shape, w.shape, bias.shape] : [x.shape, w.shape];
    throw new ShapeError("linear", shapes, `expects x [..., Cin] and w [Cout, ${cin}]`);
  }
  const outShape = [...x.shape.slice(0, -1), w.shape[0]];
  const x2 = x.rank === 2 ? x : reshape(x, [x.size / cin, cin]);
  let y = mm(x2, w, false, true);
  if (bias) y = add(y, bias);
  return x.rank === 2 ? y : reshape(y, outShape);
}
