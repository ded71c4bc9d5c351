/**
 * Fused batch-norm kernels (training mode). Per-channel reductions run over (n, h, w) in
 * contiguous chunks whose partial sums a second dispatch adds in chunk order: fixed order, no
 * atomics, and enough invocations for both cores even when C is 16.
 */
import type { BnGeom } from "../../lib/graph/ops/norm.ts";
import type { KernelPlan, WgslKernel } from "./types.ts";
import { ceilDiv, entry, f32, storageDecl, u32, WG } from "./common.ts";

/** Elements of one channel summed by one invocation in the first pass. */
const CHUNK = 256;

function chunks(g: BnGeom) {
  return ceilDiv(g.B * g.HW, CHUNK);
}

/**
 * Pass 1 of a per-channel sum: part[c * K + k] = sum over chunk k of term(i), where `i` is the
 * NCHW offset of the element. Bindings: the given read-only buffers, then `part`.
 */
function partialPass(g: BnGeom, reads: string[], term: string, pre = ""): WgslKernel {
  const K = chunks(g);
  const N = g.B * g.HW;
  const decls = reads.map((n, i) => storageDecl(i, n, false));
  decls.push(storageDecl(reads.length, "part", true));
  return {
    code: `${decls.join("\n")}
${
      entry(`  if (gi >= ${u32(g.C * K)}) { return; }
  let c = gi / ${u32(K)};
  let k = gi % ${u32(K)};
${pre}
  let r1 = min((k + 1u) * ${u32(CHUNK)}, ${u32(N)});
  var s = 0.0;
  for (var r = k * ${u32(CHUNK)}; r < r1; r++) {
    let i = (r / ${u32(g.HW)}) * ${u32(g.C * g.HW)} + c * ${u32(g.HW)} + r % ${u32(g.HW)};
    s += ${term};
  }
  part[gi] = s;`)
    }`,
    bindings: [],
    workgroups: ceilDiv(g.C * K, WG),
  };
}

/** Pass 2: dst[row * C + c] = scale * sum over k of part[c * K + k], in k order. */
function combinePass(g: BnGeom, row: number, scale: number): WgslKernel {
  const K = chunks(g);
  return {
    code: `${storageDecl(0, "part", false)}\n${storageDecl(1, "dst", true)}\n${
      entry(`  if (gi >= ${u32(g.C)}) { return; }
  var s = 0.0;
  for (var k = 0u; k < ${u32(K)}; k++) { s += part[gi * ${u32(K)} + k]; }
  dst[${u32(row * g.C)} + gi] = s * ${f32(scale)};`)
    }`,
    bindings: [],
    workgroups: ceilDiv(g.C, WG),
  };
}

/** stats [2, C] = (mean, biased variance) of x per channel, two-pass for accuracy. */
export function bnStats(g: BnGeom): KernelPlan {
  const n = g.B * g.HW;
  const p1 = partialPass(g, ["x"], "x[i]");
  p1.bindings = [{ in: 0 }, { scratch: 0 }];
  const c1 = combinePass(g, 0, 1 / n);
  c1.bindings = [{ scratchIn: 0 }, { out: true }];
  // The centred pass reads the mean from the op's own output (bound read_write, only read).
  const p2 = partialPass(
    g,
    ["x"],
    "(x[i] - m) * (x[i] - m)",
    "",
  );
  p2.code = p2.code.replace(
    storageDecl(1, "part", true),
    `${storageDecl(1, "stats", true)}\n${storageDecl(2, "part", true)}`,
  ).replace("  var s = 0.0;", "  let m = stats[c];\n  var s = 0.0;");
  p2.bindings = [{ in: 0 }, { out: true }, { scratch: 0 }];
  const c2 = combinePass(g, 1, 1 / n);
  c2.bindings = [{ scratchIn: 0 }, { out: true }];
  return { scratch: [g.C * chunks(g)], kernels: [p1, c1, p2, c2] };
}

/** WGSL expression of xhat at offset i for channel c (needs x, stats bound). */
const xhat = (g: BnGeom, eps: number) =>
  `(x[i] - stats[c]) * inverseSqrt(stats[${u32(g.C)} + c] + ${f32(eps)})`;

/** y = xhat * gamma + beta, clamped at 0 when a ReLU is fused. Inputs: x, stats, gamma, beta. */
export function bnApply(g: BnGeom, eps: number, relu: boolean): KernelPlan {
  const n = g.B * g.C * g.HW;
  const decls = ["x", "stats", "gamma", "beta"].map((v, i) => storageDecl(i, v, false));
  return {
    kernels: [{
      code: `${decls.join("\n")}\n${storageDecl(4, "out", true)}\n${
        entry(`  let i = gi;
  if (i >= ${u32(n)}) { return; }
  let c = (i / ${u32(g.HW)}) % ${u32(g.C)};
  out[i] = ${relu ? "max(" : ""}fma(${xhat(g, eps)}, gamma[c], beta[c])${relu ? ", 0.0)" : ""};`)
      }`,
      bindings: [{ in: 0 }, { in: 1 }, { in: 2 }, { in: 3 }, { out: true }],
      workgroups: ceilDiv(n, WG),
    }],
  };
}

/** dy at offset i, masked by the fused ReLU's output y when there is one. */
const dyAt = (relu: boolean) => (relu ? "select(0.0, dy[i], y[i] > 0.0)" : "dy[i]");

/**
 * psums [2, C] = (sum of dy * xhat, sum of dy) per channel. Inputs: x, stats, dy (and y, the
 * output of a fused ReLU, whose sign masks dy).
 */
export function bnBackwardSums(g: BnGeom, eps: number, relu: boolean): KernelPlan {
  const ys = relu ? ["y"] : [];
  const yb = relu ? [{ in: 3 }] : [];
  const p1 = partialPass(g, ["x", "stats", "dy", ...ys], `${dyAt(relu)} * ${xhat(g, eps)}`);
  p1.bindings = [{ in: 0 }, { in: 1 }, { in: 2 }, ...yb, { scratch: 0 }];
  const c1 = combinePass(g, 0, 1);
  c1.bindings = [{ scratchIn: 0 }, { out: true }];
  const p2 = partialPass(g, ["dy", ...ys], dyAt(relu));
  p2.bindings = [{ in: 2 }, ...yb, { scratch: 0 }];
  const c2 = combinePass(g, 1, 1);
  c2.bindings = [{ scratchIn: 0 }, { out: true }];
  return { scratch: [g.C * chunks(g)], kernels: [p1, c1, p2, c2] };
}

/**
 * dx = gamma * invstd * (dy - (sum dy + xhat * sum dy*xhat) / N): the whole batch-norm
 * derivative including the batch statistics. Inputs: x, stats, gamma, dy, psums.
 */
export function bnBackwardData(g: BnGeom, eps: number, relu: boolean): KernelPlan {
  const n = g.B * g.C * g.HW;
  const N = g.B * g.HW;
  const names = ["x", "stats", "gamma", "dy", "psums", ...(relu ? ["y"] : [])];
  const decls = names.map((v, i) => storageDecl(i, v, false));
  return {
    kernels: [{
      code: `${decls.join("\n")}\n${storageDecl(names.length, "out", true)}\n${
        entry(`  let i = gi;
  if (i >= ${u32(n)}) { return; }
  let c = (i / ${u32(g.HW)}) % ${u32(g.C)};
  let inv = inverseSqrt(stats[${u32(g.C)} + c] + ${f32(eps)});
  let xh = (x[i] - stats[c]) * inv;
  let corr = (psums[${u32(g.C)} + c] + xh * psums[c]) * ${f32(1 / N)};
  out[i] = gamma[c] * inv * (${dyAt(relu)} - corr);`)
      }`,
      bindings: [...names.map((_, k) => ({ in: k })), { out: true }],
      workgroups: ceilDiv(n, WG),
    }],
  };
}

/** rm, rv (read_write) from stats [2, C]: the running-statistics update of one layer. */
export function runningUpdate(C: number, momentum: number, unbiased: number): KernelPlan {
  const m = Math.fround(momentum);
  return {
    kernels: [{
      code: `${storageDecl(0, "rm", true)}\n${storageDecl(1, "rv", true)}\n${
        storageDecl(2, "st", false)
      }\n${
        entry(`  if (gi >= ${u32(C)}) { return; }
  rm[gi] = ${f32(1 - m)} * rm[gi] + ${f32(m)} * st[gi];
  rv[gi] = ${f32(1 - m)} * rv[gi] + ${f32(m)} * ${f32(unbiased)} * st[${u32(C)} + gi];`)
      }`,
      bindings: [{ inplace: 0 }, { inplace: 1 }, { in: 2 }],
      workgroups: ceilDiv(C, WG),
    }],
  };
}
