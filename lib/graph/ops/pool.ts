/** Max pooling, nearest upsampling and block sums (the upsampling gradient). */
import { defineOp, type OpDef, type Tensor } from "../graph.ts";
import { numel, type Shape, ShapeError } from "../shape.ts";

/** A max-pool node's sizes: x [B, C, H, W], window k, stride s, y [B, C, OH, OW]. */
export interface PoolGeom {
  B: number;
  C: number;
  H: number;
  W: number;
  k: number;
  s: number;
  OH: number;
  OW: number;
}

/** Attributes of `maxpool2d` and `maxpool2d_bwd`: window k, stride s. */
export type PoolAttrs = { k: number; s: number };

/** The geometry of a max pool of ins[0], or a ShapeError naming `op`. */
export function poolGeom(op: string, ins: Shape[], a: PoolAttrs): PoolGeom {
  const x = ins[0];
  if (x.length !== 4) throw new ShapeError(op, ins, "expects a 4-D input");
  if (!(a.k >= 1 && a.s >= 1) || x[2] < a.k || x[3] < a.k) {
    throw new ShapeError(op, ins, `window ${a.k} stride ${a.s} does not fit`);
  }
  const OH = Math.floor((x[2] - a.k) / a.s) + 1;
  const OW = Math.floor((x[3] - a.k) / a.s) + 1;
  return { B: x[0], C: x[1], H: x[2], W: x[3], k: a.k, s: a.s, OH, OW };
}

/** Float64 argmax of each window (first maximum wins), shared by both references. */
function refArgmax(x: Float64Array, g: PoolGeom): Int32Array {
  const { B, C, H, W, k, s, OH, OW } = g;
  const idx = new Int32Array(B * C * OH * OW);
  for (let p = 0; p < B * C; p++) {
    for (let oy = 0; oy < OH; oy++) {
      for (let ox = 0; ox < OW; ox++) {
        let best = p * H * W + oy * s * W + ox * s;
        for (let a = 0; a < k; a++) {
          for (let b = 0; b < k; b++) {
            const j = p * H * W + (oy * s + a) * W + ox * s + b;
            if (x[j] > x[best]) best = j;
          }
        }
        idx[(p * OH + oy) * OW + ox] = best;
      }
    }
  }
  return idx;
}

/** The `maxpool2d` op. */
export const maxpool2dDef: OpDef<PoolAttrs> = defineOp({
  name: "maxpool2d",
  arity: 1,
  shape: (ins, a) => {
    const g = poolGeom("maxpool2d", ins, a);
    return [g.B, g.C, g.OH, g.OW];
  },
  grad: ({ x, dy, attrs }) => [dy.graph.apply("maxpool2d_bwd", [x[0], dy], attrs)],
  ref: (ins, shapes, a) => {
    const idx = refArgmax(ins[0], poolGeom("maxpool2d", shapes, a));
    return Float64Array.from(idx, (j) => ins[0][j]);
  },
});

/** The `maxpool2d_bwd` op. */
export const maxpool2dBwdDef: OpDef<PoolAttrs> = defineOp({
  name: "maxpool2d_bwd",
  arity: 2,
  shape: (ins, a) => {
    const g = poolGeom("maxpool2d_bwd", ins, a);
    if (ins[1].join() !== [g.B, g.C, g.OH, g.OW].join()) {
      throw new ShapeError("maxpool2d_bwd", ins, "dy does not match the pooled shape");
    }
    return ins[0];
  },
  ref: (ins, shapes, a) => {
    const idx = refArgmax(ins[0], poolGeom("maxpool2d_bwd", shapes, a));
    const dx = new Float64Array(numel(shapes[0]));
    idx.forEach((j, o) => (dx[j] += ins[1][o]));
    return dx;
  },
});

/** Attributes of `upsample_nearest` and `pool_sum`: the integer factor. */
export type Factor = { f: number };

/** The `upsample_nearest` op. */
export const upsampleNearestDef: OpDef<Factor> = defineOp({
  name: "upsample_nearest",
  arity: 1,
  shape: (ins, a) => {
    if (ins[0].length !== 4 || !(Number.isInteger(a.f) && a.f >= 1)) {
      throw new ShapeError("upsample_nearest", ins, "expects 4-D input and integer factor");
    }
    const [B, C, H, W] = ins[0];
    return [B, C, H * a.f, W * a.f];
  },
  grad: ({ dy, attrs }) => [dy.graph.apply("pool_sum", [dy], attrs)],
  ref: (ins, shapes, a, out) => {
    const [, , H, W] = shapes[0];
    const [, , HO, WO] = out;
    const y = new Float64Array(numel(out));
    for (let i = 0; i < y.length; i++) {
      const p = Math.floor(i / (HO * WO));
      const r = i % (HO * WO);
      y[i] = ins[0][
        p * H * W + Math.floor(Math.floor(r / WO) / a.f) * W +
        Math.floor((r % WO) / a.f)
      ];
    }
    return y;
  },
});

/** The `pool_sum` op. */
export const poolSumDef: OpDef<Factor> = defineOp({
  name: "pool_sum",
  arity: 1,
  shape: (ins, a) => {
    const [B, C, H, W] = ins[0];
    if (ins[0].length !== 4 || H % a.f || W % a.f) {
      throw new ShapeError("pool_sum", ins, `spatial size not divisible by ${a.f}`);
    }
    return [B, C, H / a.f, W / a.f];
  },
  grad: ({ dy, attrs }) => [dy.graph.apply("upsample_nearest", [dy], attrs)],
  ref: (ins, shapes, a, out) => {
    const [, , H, W] = shapes[0];
    const [, , OH, OW] = out;
    const y = new Float64Array(numel(out));
    for (let i = 0; i < ins[0].length; i++) {
      const p = Math.floor(i / (H * W));
      const r = i % (H * W);
      y[(p * OH + Math.floor(Math.floor(r / W) / a.f)) * OW + Math.floor((r % W) / a.f)] +=
        ins[0][i];
    }
    return y;
  },
});

/** Max pooling with a k x k window and stride s (default s = k), no padding. */
export const maxpool2d = (x: Tensor, k: number = 2, s: number = k): Tensor =>
  x.graph.apply("maxpool2d", [x], { k, s });
/** Nearest-neighbour upsampling by an integer factor. */
export const upsampleNearest2d = (x: Tensor, f: number): Tensor =>
  x.graph.apply("upsample_nearest", [x], { f });
