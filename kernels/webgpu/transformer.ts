/**
 * WGSL generators of the transformer ops: (batched) matmul as an instance of the implicit GEMM
 * of gemm.ts (either adapter class), axis permutation as a gather, and the row-wise softmax kernels (layer norm:
 * layer_norm.ts).
 *
 * Determinism (design.md 4): every output is written by exactly one invocation that sums its
 * terms in a fixed order; a softmax row belongs to one invocation, since rows are short (<= a few
 * hundred). No atomics; barriers and workgroup memory only in the hardware-class GEMM, where they
 * stage operands (gemm.ts).
 */
import type { MatmulGeom } from "../../lib/graph/ops/transformer.ts";
import { type KernelPlan, type KernelTarget, SOFTWARE_TARGET } from "./types.ts";
import { ceilDiv, entry, storageDecl, u32, WG } from "./common.ts";
import { gemm, type TiledConfig, tiledConfig } from "./gemm.ts";

/** The GEMM tile edge gemm.ts uses by default. */
const TILE = 8;

/** How a matmul's batch is folded into one GEMM (see `matmulFold`). */
export interface MatmulFold {
  axis: "M" | "N";
  /** Rows (axis M) or columns (axis N) per batch in the GEMM, padding included. */
  pad: number;
  /** The edge of a tile along the folded axis: software register tile or hardware BM / BN. */
  tile: number;
  /** The hardware tile the padding is aligned to (hardware class only). */
  tiled?: TiledConfig;
}

/**
 * How the batch is folded into one GEMM: into the rows ("M": rows b*Mp .. b*Mp + M-1 belong
 * to batch b) or into the columns ("N"). An operand whose load does not depend on the batch
 * (shared, or indexed per row / column) needs no alignment; when both operands are batched the
 * batch of the *other* operand must be the same across a whole tile (an invocation's register
 * tile in the software class, a workgroup's tile in the hardware class), so each batch's rows
 * (or columns) are padded to a multiple of the tile edge; the padded rows load clamped indices
 * and are never stored.
 */
export function matmulFold(g: MatmulGeom, t: KernelTarget = SOFTWARE_TARGET): MatmulFold {
  const both = g.B > 1 && g.batchA && g.batchB;
  const hw = t.kernels === "hardware";
  // Hardware: the tile of one batch's product (both batched) or of the whole folded GEMM.
  const tiled = !hw
    ? undefined
    : both
    ? tiledConfig(g.M, g.N, t)
    : g.B > 1 && g.batchB
    ? tiledConfig(g.M, g.B * g.N, t)
    : tiledConfig(g.B * g.M, g.N, t);
  const tm = tiled ? tiled.tm * tiled.wgY : Math.min(TILE, g.M);
  const tn = tiled ? tiled.tn * tiled.wgX : Math.min(TILE, g.N);
  if (!both) {
    // B batched alone: fold into N, where each column decodes its own batch.
    if (g.B > 1 && g.batchB) return { axis: "N", pad: g.N, tile: tn, tiled };
    return { axis: "M", pad: g.M, tile: tm, tiled };
  }
  const mp = ceilDiv(g.M, tm) * tm;
  const np = ceilDiv(g.N, tn) * tn;
  // Measured on lavapipe (B*H = 16 attention products over 196 tokens, d = 8/16/64): folding
  // into M is as fast or up to 20% faster than into N (q k^T 13.4/17.2/20.7 ms vs
  // 14.9/17.5/20.4; att v 12.7/14.8/19.6 vs 13.6/13.8/24.0): the invocations of neighbouring
  // column tiles then share their A rows. So M, unless its padding wastes clearly more.
  return mp / g.M <= 1.25 * (np / g.N)
    ? { axis: "M", pad: mp, tile: tm, tiled }
    : { axis: "N", pad: np, tile: tn, tiled };
}

const ro = (b: number, name: string) => storageDecl(b, name, false);

/**
 * The GEMM of a matmul for the target's class; `fold` overrides the folding (benchmarks compare
 * the choices).
 */
export function matmulKernel(
  g: MatmulGeom,
  t: KernelTarget = SOFTWARE_TARGET,
  fold: MatmulFold = matmulFold(g, t),
): KernelPlan {
  const { B, M, N, K } = g;
  const P = fold.pad;
  const sA = g.batchA && B > 1 ? M * K : 0;
  const sB = g.batchB && B > 1 ? K * N : 0;
  // Offsets of A(row, k) and B(k, col) inside one batch's matrix.
  const inA = (r: string) => (g.transA ? `k * ${u32(M)} + ${r}` : `${r} * ${u32(K)} + k`);
  const inB = (c: string) => (g.transB ? `${c} * ${u32(K)} + k` : `k * ${u32(N)} + ${c}`);
  const batchOff = (stride: number, b: string) => (stride ? `${b} * ${u32(stride)} + ` : "");
  const padded = P !== (fold.axis === "M" ? M : N);
  // Hardware loads: neighbouring invocations take neighbouring addresses.
  const hw = {
    tiled: fold.tiled,
    contigA: g.transA ? "m" as const : "k" as const,
    contigB: g.transB ? "k" as const : "n" as const,
  };
  if (fold.axis === "M") {
    // m{i} = batch * P + row; the batch of the tile is that of m0 (all rows of a tile share it
    // when padded; when not padded, B's load does not depend on the batch at all).
    const row = (i: number) =>
      padded ? `min(m${i} % ${u32(P)}, ${u32(M - 1)})` : B === 1 ? `m${i}` : `m${i} % ${u32(P)}`;
    const bat = (i: number) => `(m${i} / ${u32(P)})`;
    return gemm({
      M: B * P,
      N,
      K,
      tm: fold.tile,
      ...hw,
      decls: [ro(0, "lhs"), ro(1, "rhs")],
      bindings: [{ in: 0 }, { in: 1 }],
      loadA: (i) =>
        !g.transA && !padded
          ? `lhs[m${i} * ${u32(K)} + k]` // batch * M * K + row * K folds to m * K
          : `lhs[${batchOff(sA, bat(i))}${inA(row(i))}]`,
      loadB: (j) => `rhs[${batchOff(sB, bat(0))}${inB(`n${j}`)}]`,
      store: (i, _j, v) => {
        const st = padded
          ? `out[(${bat(i)} * ${u32(M)} + m${i} % ${u32(P)}) * ${u32(N)} + n${_j}] = ${v};`
          : `out[m${i} * ${u32(N)} + n${_j}] = ${v};`;
        return padded ? `if (m${i} % ${u32(P)} < ${u32(M)}) { ${st} }` : st;
      },
    }, t);
  }
  // Fold into N: n{j} = batch * P + col, decoded once per column.
  return gemm({
    M,
    N: B * P,
    K,
    tn: fold.tile,
    ...hw,
    decls: [ro(0, "lhs"), ro(1, "rhs")],
    bindings: [{ in: 0 }, { in: 1 }],
    perN: (j) =>
      `  let cb${j} = n${j} / ${u32(P)}; let cn${j} = ${
        padded ? `min(n${j} % ${u32(P)}, ${u32(N - 1)})` : `n${j} % ${u32(P)}`
      };`,
    loadA: (i) => `lhs[${batchOff(sA, "cb0")}${inA(`m${i}`)}]`,
    loadB: (j) => `rhs[${batchOff(sB, `cb${j}`)}${inB(`cn${j}`)}]`,
    store: (i, j, v) => {
      const st = `out[(cb${j} * ${u32(M)} + m${i}) * ${u32(N)} + cn${j}] = ${v};`;
      return padded ? `if (n${j} % ${u32(P)} < ${u32(N)}) { ${st} }` : st;
    },
  }, t);
}

/**
 * out[i] = x[offset(i)] for a permutation: `sizes` are the output's (collapsed) axis sizes and
 * `srcStrides` the input strides of those axes.
 */
export function permuteKernel(sizes: number[], srcStrides: number[]): KernelPlan {
  const n = sizes.reduce((a, b) => a * b, 1);
  const terms: string[] = [];
  let inner = 1;
  for (let d = sizes.length - 1; d >= 0; d--) {
    let c = inner === 1 ? "i" : `(i / ${u32(inner)})`;
    if (d > 0) c = `${c} % ${u32(sizes[d])}`;
    terms.push(srcStrides[d] === 1 ? `(${c})` : `(${c}) * ${u32(srcStrides[d])}`);
    inner *= sizes[d];
  }
  const index = terms.length ? terms.join(" + ") : "0u";
  return {
    kernels: [{
      code: `${ro(0, "x")}\n${storageDecl(1, "out", true)}\n${
        entry(`  let i = gi;\n  if (i >= ${u32(n)}) { return; }\n  out[i] = x[${index}];`)
      }`,
      bindings: [{ in: 0 }, { out: true }],
      workgroups: ceilDiv(n, WG),
    }],
  };
}

/** Softmax over rows of L values, one invocation per row: max, exp and sum, scale. */
export function softmaxKernel(R: number, L: number): KernelPlan {
  return {
    kernels: [{
      code: `${ro(0, "x")}\n${storageDecl(1, "out", true)}\n${
        entry(`  if (gi >= ${u32(R)}) { return; }
  let base = gi * ${u32(L)};
  var mx = x[base];
  for (var j = 1u; j < ${u32(L)}; j++) { mx = max(mx, x[base + j]); }
  var s = 0.0;
  for (var j = 0u; j < ${u32(L)}; j++) {
    let e = exp(x[base + j] - mx);
    out[base + j] = e;
    s += e;
  }
  let inv = 1.0 / s;
  for (var j = 0u; j < ${u32(L)}; j++) { out[base + j] = out[base + j] * inv; }`)
      }`,
      bindings: [{ in: 0 }, { out: true }],
      workgroups: ceilDiv(R, WG),
    }],
  };
}

/** dx = y * (dy - sum(dy * y)) per row of L values, one invocation per row. */
export function softmaxGradKernel(R: number, L: number): KernelPlan {
  return {
    kernels: [{
      code: `${ro(0, "y")}\n${ro(1, "dy")}\n${storageDecl(2, "out", true)}\n${
        entry(`  if (gi >= ${u32(R)}) { return; }
  let base = gi * ${u32(L)};
  var s = 0.0;
  for (var j = 0u; j < ${u32(L)}; j++) { s = fma(dy[base + j], y[base + j], s); }
  for (var j = 0u; j < ${u32(L)}; j++) { out[base + j] = y[base + j] * (dy[base + j] - s); }`)
      }`,
      bindings: [{ in: 0 }, { in: 1 }, { out: true }],
      workgroups: ceilDiv(R, WG),
    }],
  };
}
