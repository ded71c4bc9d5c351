/**
 * Convolution kernels as implicit GEMMs (see gemm.ts), for either adapter class: `t` picks the
 * generator and its tile sizes. Backward passes are gathers: each gradient element is summed by
 * one invocation, never scattered with atomics (design.md 4).
 */
import type { ConvGeom, ConvTGeom } from "../../lib/graph/ops/conv.ts";
import { type KernelPlan, type KernelTarget, SOFTWARE_TARGET } from "./types.ts";
import { gemm } from "./gemm.ts";
import { u32 } from "./common.ts";

const ro = (b: number, name: string) =>
  `@group(0) @binding(${b}) var<storage, read> ${name}: array<f32>;`;

/** y = conv2d(x, w) + bias. M = O, N = B*OH*OW, K = C*KH*KW. */
export function conv2dForward(
  g: ConvGeom,
  hasBias: boolean,
  t: KernelTarget = SOFTWARE_TARGET,
): KernelPlan {
  const { C, H, W, O, KH, KW, OH, OW, stride: s, padding: p, dilation: d } = g;
  const KK = KH * KW;
  return gemm({
    M: O,
    N: g.B * OH * OW,
    K: C * KK,
    decls: [ro(0, "x"), ro(1, "w"), ...(hasBias ? [ro(2, "bias")] : [])],
    bindings: [{ in: 0 }, { in: 1 }, ...(hasBias ? [{ in: 2 }] : [])],
    perN: (j) =>
      `  let b${j} = n${j} / ${u32(OH * OW)}; let r${j} = n${j} % ${u32(OH * OW)};
  let iy${j} = i32((r${j} / ${u32(OW)}) * ${u32(s)}) - ${p}; let ix${j} = i32((r${j} % ${
        u32(OW)
      }) * ${u32(s)}) - ${p};
  let xb${j} = b${j} * ${u32(C * H * W)};`,
    perK: `    let ci = k / ${u32(KK)}; let kr = k % ${u32(KK)};
    let ky = i32((kr / ${u32(KW)}) * ${u32(d)}); let kx = i32((kr % ${u32(KW)}) * ${u32(d)});
    let xc = ci * ${u32(H * W)};`,
    loadA: (i) => `w[m${i} * ${u32(C * KK)} + k]`,
    loadB: (j) => {
      const y = `(iy${j} + ky)`;
      const x = `(ix${j} + kx)`;
      const ok = `(${y} >= 0 && ${y} < ${H} && ${x} >= 0 && ${x} < ${W})`;
      return `select(0.0, x[xb${j} + xc + u32(clamp(${y}, 0, ${H - 1})) * ${
        u32(W)
      } + u32(clamp(${x}, 0, ${W - 1}))], ${ok})`;
    },
    store: (i, j, v) =>
      `out[b${j} * ${u32(O * OH * OW)} + m${i} * ${u32(OH * OW)} + r${j}] = ${v}${
        hasBias ? ` + bias[m${i}]` : ""
      };`,
  }, t);
}

/** dx from dy and w. M = C, N = B*H*W, K = O*KH*KW; a gather over the taps that hit (iy, ix). */
export function conv2dBackwardData(g: ConvGeom, t: KernelTarget = SOFTWARE_TARGET): KernelPlan {
  const { C, H, W, O, KH, KW, OH, OW, stride: s, padding: p, dilation: d } = g;
  const KK = KH * KW;
  return gemm({
    M: C,
    N: g.B * H * W,
    K: O * KK,
    decls: [ro(0, "dy"), ro(1, "w")],
    bindings: [{ in: 0 }, { in: 1 }],
    perN: (j) =>
      `  let b${j} = n${j} / ${u32(H * W)}; let r${j} = n${j} % ${u32(H * W)};
  let ty${j} = i32(r${j} / ${u32(W)}) + ${p}; let tx${j} = i32(r${j} % ${u32(W)}) + ${p};
  let db${j} = b${j} * ${u32(O * OH * OW)};`,
    perK: `    let o = k / ${u32(KK)}; let kr = k % ${u32(KK)};
    let ky = i32((kr / ${u32(KW)}) * ${u32(d)}); let kx = i32((kr % ${u32(KW)}) * ${u32(d)});
    let dc = o * ${u32(OH * OW)};`,
    loadA: (i) => `w[(o * ${u32(C)} + m${i}) * ${u32(KK)} + kr]`,
    loadB: (j) => {
      const y = `(ty${j} - ky)`;
      const x = `(tx${j} - kx)`;
      const oy = s === 1 ? y : `(${y} / ${s})`;
      const ox = s === 1 ? x : `(${x} / ${s})`;
      const div = s === 1 ? "" : ` && ${y} % ${s} == 0 && ${x} % ${s} == 0`;
      const ok = `(${y} >= 0 && ${x} >= 0${div} && ${oy} < ${OH} && ${ox} < ${OW})`;
      return `select(0.0, dy[db${j} + dc + u32(clamp(${oy}, 0, ${OH - 1})) * ${
        u32(OW)
      } + u32(clamp(${ox}, 0, ${OW - 1}))], ${ok})`;
    },
    store: (i, j, v) => `out[b${j} * ${u32(C * H * W)} + m${i} * ${u32(H * W)} + r${j}] = ${v};`,
  }, t);
}

/** dw from x and dy. M = O, N = C*KH*KW, K = B*OH*OW (split over K when the grid is small). */
export function conv2dBackwardWeight(g: ConvGeom, t: KernelTarget = SOFTWARE_TARGET): KernelPlan {
  const { C, H, W, O, KH, KW, OH, OW, stride: s, padding: p, dilation: d } = g;
  const KK = KH * KW;
  return gemm({
    M: O,
    N: C * KK,
    K: g.B * OH * OW,
    decls: [ro(0, "x"), ro(1, "dy")],
    bindings: [{ in: 0 }, { in: 1 }],
    perN: (j) =>
      `  let xc${j} = (n${j} / ${u32(KK)}) * ${u32(H * W)};
  let ky${j} = i32(((n${j} % ${u32(KK)}) / ${u32(KW)}) * ${u32(d)}); let kx${j} = i32(((n${j} % ${
        u32(KK)
      }) % ${u32(KW)}) * ${u32(d)});`,
    perK: `    let bk = k / ${u32(OH * OW)}; let rk = k % ${u32(OH * OW)};
    let iy0 = i32((rk / ${u32(OW)}) * ${u32(s)}) - ${p}; let ix0 = i32((rk % ${u32(OW)}) * ${
      u32(s)
    }) - ${p};
    let xb = bk * ${u32(C * H * W)}; let db = bk * ${u32(O * OH * OW)} + rk;`,
    loadA: (i) => `dy[db + m${i} * ${u32(OH * OW)}]`,
    loadB: (j) => {
      const y = `(iy0 + ky${j})`;
      const x = `(ix0 + kx${j})`;
      const ok = `(${y} >= 0 && ${y} < ${H} && ${x} >= 0 && ${x} < ${W})`;
      return `select(0.0, x[xb + xc${j} + u32(clamp(${y}, 0, ${H - 1})) * ${
        u32(W)
      } + u32(clamp(${x}, 0, ${W - 1}))], ${ok})`;
    },
    store: (i, j, v) => `out[m${i} * ${u32(C * KK)} + n${j}] = ${v};`,
    contigB: "k", // x along (b, oy, ox): neighbouring k are neighbouring pixels
  }, t);
}

/** Transposed conv with kernel = stride = f: every output pixel comes from one input pixel. */
export function convTForward(
  g: ConvTGeom,
  hasBias: boolean,
  t: KernelTarget = SOFTWARE_TARGET,
): KernelPlan {
  const { B, C, H, W, O, f } = g;
  const ff = f * f;
  const HO = H * f;
  const WO = W * f;
  return gemm({
    M: O * ff,
    N: B * H * W,
    K: C,
    decls: [ro(0, "x"), ro(1, "w"), ...(hasBias ? [ro(2, "bias")] : [])],
    bindings: [{ in: 0 }, { in: 1 }, ...(hasBias ? [{ in: 2 }] : [])],
    perN: (j) =>
      `  let b${j} = n${j} / ${u32(H * W)}; let r${j} = n${j} % ${u32(H * W)};
  let xb${j} = b${j} * ${u32(C * H * W)} + r${j};
  let ob${j} = b${j} * ${u32(O * HO * WO)} + (r${j} / ${u32(W)}) * ${u32(f * WO)} + (r${j} % ${
        u32(W)
      }) * ${u32(f)};`,
    loadA: (i) => `w[k * ${u32(O * ff)} + m${i}]`,
    loadB: (j) => `x[xb${j} + k * ${u32(H * W)}]`,
    store: (i, j, v) => {
      const o = `(m${i} / ${u32(ff)})`;
      const a = `((m${i} % ${u32(ff)}) / ${u32(f)})`;
      const c = `(m${i} % ${u32(f)})`;
      return `out[ob${j} + ${o} * ${u32(HO * WO)} + ${a} * ${u32(WO)} + ${c}] = ${v}${
        hasBias ? ` + bias[${o}]` : ""
      };`;
    },
  }, t);
}

/** dx[b,c,i,j] = sum over (o, a, b') of dy[b, o, i*f+a, j*f+b'] * w[c, o, a, b']. */
export function convTBackwardData(g: ConvTGeom, t: KernelTarget = SOFTWARE_TARGET): KernelPlan {
  const { B, C, H, W, O, f } = g;
  const ff = f * f;
  const HO = H * f;
  const WO = W * f;
  return gemm({
    M: C,
    N: B * H * W,
    K: O * ff,
    decls: [ro(0, "dy"), ro(1, "w")],
    bindings: [{ in: 0 }, { in: 1 }],
    perN: (j) =>
      `  let b${j} = n${j} / ${u32(H * W)}; let r${j} = n${j} % ${u32(H * W)};
  let db${j} = b${j} * ${u32(O * HO * WO)} + (r${j} / ${u32(W)}) * ${u32(f * WO)} + (r${j} % ${
        u32(W)
      }) * ${u32(f)};`,
    perK: `    let ko = (k / ${u32(ff)}) * ${u32(HO * WO)} + ((k % ${u32(ff)}) / ${u32(f)}) * ${
      u32(WO)
    } + k % ${u32(f)};`,
    loadA: (i) => `w[m${i} * ${u32(O * ff)} + k]`,
    loadB: (j) => `dy[db${j} + ko]`,
    store: (i, j, v) => `out[b${j} * ${u32(C * H * W)} + m${i} * ${u32(H * W)} + r${j}] = ${v};`,
  }, t);
}

/** dw[c, (o,a,b')] = sum over (b, i, j) of x[b,c,i,j] * dy[b, o, i*f+a, j*f+b']. */
export function convTBackwardWeight(g: ConvTGeom, t: KernelTarget = SOFTWARE_TARGET): KernelPlan {
  const { B, C, H, W, O, f } = g;
  const ff = f * f;
  const HO = H * f;
  const WO = W * f;
  return gemm({
    M: C,
    N: O * ff,
    K: B * H * W,
    decls: [ro(0, "x"), ro(1, "dy")],
    bindings: [{ in: 0 }, { in: 1 }],
    perN: (j) =>
      `  let no${j} = (n${j} / ${u32(ff)}) * ${u32(HO * WO)} + ((n${j} % ${u32(ff)}) / ${
        u32(f)
      }) * ${u32(WO)} + n${j} % ${u32(f)};`,
    perK: `    let bk = k / ${u32(H * W)}; let rk = k % ${u32(H * W)};
    let xk = bk * ${u32(C * H * W)} + rk;
    let dk = bk * ${u32(O * HO * WO)} + (rk / ${u32(W)}) * ${u32(f * WO)} + (rk % ${u32(W)}) * ${
      u32(f)
    };`,
    loadA: (i) => `x[xk + m${i} * ${u32(H * W)}]`,
    loadB: (j) => `dy[dk + no${j}]`,
    store: (i, j, v) => `out[m${i} * ${u32(O * ff)} + n${j}] = ${v};`,
    contigB: "k", // dy along (b, i, j): neighbouring k are f apart, neighbouring n jump rows
  }, t);
}
