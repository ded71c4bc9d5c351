/**
 * WGSL generators of the fused layer norm over the last axis (R rows of C channels).
 *
 * Determinism (design.md 4): every output is written by exactly one invocation that sums its
 * terms in a fixed order. The statistics and the data gradient give one invocation a whole row,
 * since rows are short (<= a few hundred); the parameter gradient, a sum over rows per channel,
 * is a gather per channel over chunks of rows whose partial sums a second dispatch adds in chunk
 * order. No atomics, no barriers, no shared memory.
 */
import type { KernelPlan } from "./types.ts";
import { ceilDiv, entry, f32, storageDecl, u32, WG } from "./common.ts";

const ro = (b: number, name: string) => storageDecl(b, name, false);

/** stats [2, R] = (mean, biased variance) of each row of C values; two passes per row. */
export function lnStatsKernel(R: number, C: number): KernelPlan {
  return {
    kernels: [{
      code: `${ro(0, "x")}\n${storageDecl(1, "out", true)}\n${
        entry(`  if (gi >= ${u32(R)}) { return; }
  let base = gi * ${u32(C)};
  var s = 0.0;
  for (var c = 0u; c < ${u32(C)}; c++) { s += x[base + c]; }
  let m = s * ${f32(1 / C)};
  var v = 0.0;
  for (var c = 0u; c < ${u32(C)}; c++) { let d = x[base + c] - m; v = fma(d, d, v); }
  out[gi] = m;
  out[${u32(R)} + gi] = v * ${f32(1 / C)};`)
      }`,
      bindings: [{ in: 0 }, { out: true }],
      workgroups: ceilDiv(R, WG),
    }],
  };
}

/** y = (x - mean) / sqrt(var + eps) * gamma + beta, elementwise. Inputs x, stats, gamma, beta. */
export function lnApplyKernel(R: number, C: number, eps: number): KernelPlan {
  const n = R * C;
  const decls = ["x", "stats", "gamma", "beta"].map((v, i) => ro(i, v));
  return {
    kernels: [{
      code: `${decls.join("\n")}\n${storageDecl(4, "out", true)}\n${
        entry(`  let i = gi;
  if (i >= ${u32(n)}) { return; }
  let r = i / ${u32(C)};
  let c = i % ${u32(C)};
  let xh = (x[i] - stats[r]) * inverseSqrt(stats[${u32(R)} + r] + ${f32(eps)});
  out[i] = fma(xh, gamma[c], beta[c]);`)
      }`,
      bindings: [{ in: 0 }, { in: 1 }, { in: 2 }, { in: 3 }, { out: true }],
      workgroups: ceilDiv(n, WG),
    }],
  };
}

/**
 * dx = inv * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * gamma: the layer-norm data
 * gradient through the row statistics. One invocation per row computes both row sums, then
 * writes the row. Inputs x, stats, gamma, dy.
 */
export function lnBwdDataKernel(R: number, C: number, eps: number): KernelPlan {
  const decls = ["x", "stats", "gamma", "dy"].map((v, i) => ro(i, v));
  return {
    kernels: [{
      code: `${decls.join("\n")}\n${storageDecl(4, "out", true)}\n${
        entry(`  if (gi >= ${u32(R)}) { return; }
  let base = gi * ${u32(C)};
  let m = stats[gi];
  let inv = inverseSqrt(stats[${u32(R)} + gi] + ${f32(eps)});
  var s1 = 0.0;
  var s2 = 0.0;
  for (var c = 0u; c < ${u32(C)}; c++) {
    let gv = dy[base + c] * gamma[c];
    s1 += gv;
    s2 = fma(gv, (x[base + c] - m) * inv, s2);
  }
  let a1 = s1 * ${f32(1 / C)};
  let a2 = s2 * ${f32(1 / C)};
  for (var c = 0u; c < ${u32(C)}; c++) {
    let xh = (x[base + c] - m) * inv;
    out[base + c] = inv * (dy[base + c] * gamma[c] - a1 - xh * a2);
  }`)
      }`,
      bindings: [{ in: 0 }, { in: 1 }, { in: 2 }, { in: 3 }, { out: true }],
      workgroups: ceilDiv(R, WG),
    }],
  };
}

/** Rows summed by one invocation of the layer-norm parameter gradient. */
export const LN_ROW_CHUNK = 64;

/** Number of row chunks of the parameter gradient (1: a single pass, no scratch). */
export const lnChunks = (R: number) => ceilDiv(R, LN_ROW_CHUNK);

/**
 * psums [2, C] = (sum over rows of dy * xhat, sum over rows of dy) per channel. Pass 1: one
 * invocation per (row chunk k, channel c) writes part[(2k + w) * C + c]; neighbouring
 * invocations read neighbouring channels of the same rows. Pass 2 (only with several chunks):
 * out[w * C + c] = sum over k in order. With one chunk pass 1 writes `out` directly, which has
 * exactly the layout of part for k = 0. Inputs x, stats, dy.
 */
export function lnBwdParamsKernel(R: number, C: number, eps: number): KernelPlan {
  const K = lnChunks(R);
  const decls = ["x", "stats", "dy"].map((v, i) => ro(i, v));
  const dst = K === 1 ? "out" : "part";
  const p1 = `${decls.join("\n")}\n${storageDecl(3, dst, true)}\n${
    entry(`  if (gi >= ${u32(K * C)}) { return; }
  let k = gi / ${u32(C)};
  let c = gi % ${u32(C)};
  let r1 = min((k + 1u) * ${u32(LN_ROW_CHUNK)}, ${u32(R)});
  var s1 = 0.0;
  var s2 = 0.0;
  for (var r = k * ${u32(LN_ROW_CHUNK)}; r < r1; r++) {
    let d = dy[r * ${u32(C)} + c];
    let xh = (x[r * ${u32(C)} + c] - stats[r]) * inverseSqrt(stats[${u32(R)} + r] + ${f32(eps)});
    s1 = fma(d, xh, s1);
    s2 += d;
  }
  ${dst}[2u * k * ${u32(C)} + c] = s1;
  ${dst}[(2u * k + 1u) * ${u32(C)} + c] = s2;`)
  }`;
  const pass1 = {
    code: p1,
    bindings: [{ in: 0 }, { in: 1 }, { in: 2 }, K === 1 ? { out: true as const } : { scratch: 0 }],
    workgroups: ceilDiv(K * C, WG),
  };
  if (K === 1) return { kernels: [pass1] };
  const p2 = `${ro(0, "part")}\n${storageDecl(1, "out", true)}\n${
    entry(`  if (gi >= ${u32(2 * C)}) { return; }
  var s = 0.0;
  for (var k = 0u; k < ${u32(K)}; k++) { s += part[k * ${u32(2 * C)} + gi]; }
  out[gi] = s;`)
  }`;
  return {
    scratch: [2 * K * C],
    kernels: [pass1, {
      code: p2,
      bindings: [{ scratchIn: 0 }, { out: true }],
      workgroups: ceilDiv(2 * C, WG),
    }],
  };
}
