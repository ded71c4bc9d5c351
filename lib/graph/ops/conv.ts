/**
 * Convolutions: conv2d (stride, padding, dilation, optional bias) and the transposed conv with
 * kernel = stride (U-Net's 2x2 up-convolution). Their gradients are ops of their own, each a
 * gather written as an implicit GEMM (kernels/webgpu/conv.ts, kernels/cpu/conv.ts).
 */
import { defineOp, type OpDef, type Tensor } from "../graph.ts";
import { type Shape, ShapeError } from "../shape.ts";
import { reshape, sum } from "./shape_ops.ts";

/** A conv2d node's sizes: x [B, C, H, W], w [O, C, KH, KW], y [B, O, OH, OW]. */
export interface ConvGeom {
  B: number;
  C: number;
  H: number;
  W: number;
  O: number;
  KH: number;
  KW: number;
  OH: number;
  OW: number;
  stride: number;
  padding: number;
  dilation: number;
}

/** A transposed conv's sizes: x [B, C, H, W], w [C, O, f, f], y [B, O, H f, W f]. */
export interface ConvTGeom {
  B: number;
  C: number;
  H: number;
  W: number;
  O: number;
  f: number;
}

/** Attributes of `conv2d` (PyTorch's Conv2d arguments; the same value for both axes). */
export interface ConvAttrs {
  /** Any further attribute is kept on the node as given. */
  [k: string]: unknown;
  /** Step between output positions, in input pixels. */
  stride: number;
  /** Zero padding added on every side of the input. */
  padding: number;
  /** Spacing between kernel taps. */
  dilation: number;
}

function outSize(n: number, k: number, a: ConvAttrs): number {
  return Math.floor((n + 2 * a.padding - a.dilation * (k - 1) - 1) / a.stride) + 1;
}

/** The geometry of a conv2d of x with w under `a` (shapes already checked). */
export function convGeom(x: Shape, w: Shape, a: ConvAttrs): ConvGeom {
  const [B, C, H, W] = x;
  const [O, , KH, KW] = w;
  return {
    B,
    C,
    H,
    W,
    O,
    KH,
    KW,
    OH: outSize(H, KH, a),
    OW: outSize(W, KW, a),
    stride: a.stride,
    padding: a.padding,
    dilation: a.dilation,
  };
}

/** Float64 reference loop shared by the forward and both backward references. */
function refConvLoop(g: ConvGeom, visit: (xi: number, wi: number, yi: number) => void) {
  const { B, C, H, W, O, KH, KW, OH, OW, stride: s, padding: p, dilation: d } = g;
  for (let b = 0; b < B; b++) {
    for (let o = 0; o < O; o++) {
      for (let oy = 0; oy < OH; oy++) {
        for (let ox = 0; ox < OW; ox++) {
          const yi = ((b * O + o) * OH + oy) * OW + ox;
          for (let c = 0; c < C; c++) {
            for (let ky = 0; ky < KH; ky++) {
              const iy = oy * s - p + ky * d;
              if (iy < 0 || iy >= H) continue;
              for (let kx = 0; kx < KW; kx++) {
                const ix = ox * s - p + kx * d;
                if (ix < 0 || ix >= W) continue;
                visit(((b * C + c) * H + iy) * W + ix, ((o * C + c) * KH + ky) * KW + kx, yi);
              }
            }
          }
        }
      }
    }
  }
}

function checkConv(op: string, ins: Shape[], a: ConvAttrs): ConvGeom {
  const [x, w] = ins;
  if (x.length !== 4 || w.length !== 4) throw new ShapeError(op, ins, "expects 4-D x and w");
  if (x[1] !== w[1]) {
    throw new ShapeError(op, ins, `x has ${x[1]} channels but w expects ${w[1]}`);
  }
  if (ins[2] && (ins[2].length !== 1 || ins[2][0] !== w[0])) {
    throw new ShapeError(op, ins, `bias must be [${w[0]}]`);
  }
  if (!(a.stride >= 1 && a.dilation >= 1 && a.padding >= 0)) {
    throw new ShapeError(op, ins, "stride and dilation must be >= 1, padding >= 0");
  }
  const g = convGeom(x, w, a);
  if (g.OH < 1 || g.OW < 1) throw new ShapeError(op, ins, "kernel larger than padded input");
  return g;
}

/** The `conv2d` op. */
export const conv2dDef: OpDef<ConvAttrs> = defineOp({
  name: "conv2d",
  shape: (ins, a) => {
    if (ins.length < 2 || ins.length > 3) throw new ShapeError("conv2d", ins, "expects x, w[, b]");
    const g = checkConv("conv2d", ins, a);
    return [g.B, g.O, g.OH, g.OW];
  },
  grad: ({ x, dy, attrs }) => {
    const [xi, w] = x;
    const g = [
      dy.graph.apply("conv2d_bwd_data", [dy, w], { ...attrs, inShape: xi.shape }),
      dy.graph.apply("conv2d_bwd_weight", [xi, dy], { ...attrs, wShape: w.shape }),
    ];
    if (x[2]) g.push(reshape(sum(dy, [0, 2, 3]), x[2].shape));
    return g;
  },
  ref: (ins, shapes, a, out) => {
    const g = convGeom(shapes[0], shapes[1], a);
    const y = new Float64Array(out[0] * out[1] * out[2] * out[3]);
    refConvLoop(g, (xi, wi, yi) => (y[yi] += ins[0][xi] * ins[1][wi]));
    if (ins[2]) {
      const hw = g.OH * g.OW;
      for (let i = 0; i < y.length; i++) y[i] += ins[2][Math.floor(i / hw) % g.O];
    }
    return y;
  },
  macs: (ins, _a, out) => out[0] * out[1] * out[2] * out[3] * ins[1][1] * ins[1][2] * ins[1][3],
});

type BwdData = ConvAttrs & { inShape: number[] };
/** The `conv2d_bwd_data` op. */
export const conv2dBwdDataDef: OpDef<BwdData> = defineOp({
  name: "conv2d_bwd_data",
  arity: 2,
  shape: (ins, a) => {
    const g = checkConv("conv2d_bwd_data", [a.inShape, ins[1]], a);
    if (ins[0].join() !== [g.B, g.O, g.OH, g.OW].join()) {
      throw new ShapeError("conv2d_bwd_data", ins, "dy does not match the conv output");
    }
    return a.inShape;
  },
  ref: (ins, shapes, a, out) => {
    const dx = new Float64Array(out.reduce((t, d) => t * d, 1));
    refConvLoop(
      convGeom(a.inShape, shapes[1], a),
      (xi, wi, yi) => (dx[xi] += ins[0][yi] * ins[1][wi]),
    );
    return dx;
  },
  // The forward conv's products: every dy element meets C*KH*KW weights.
  macs: (ins) => ins[0][0] * ins[0][1] * ins[0][2] * ins[0][3] * ins[1][1] * ins[1][2] * ins[1][3],
});

type BwdWeight = ConvAttrs & { wShape: number[] };
/** The `conv2d_bwd_weight` op. */
export const conv2dBwdWeightDef: OpDef<BwdWeight> = defineOp({
  name: "conv2d_bwd_weight",
  arity: 2,
  shape: (ins, a) => {
    const g = checkConv("conv2d_bwd_weight", [ins[0], a.wShape], a);
    if (ins[1].join() !== [g.B, g.O, g.OH, g.OW].join()) {
      throw new ShapeError("conv2d_bwd_weight", ins, "dy does not match the conv output");
    }
    return a.wShape;
  },
  ref: (ins, shapes, a, out) => {
    const dw = new Float64Array(out.reduce((t, d) => t * d, 1));
    refConvLoop(
      convGeom(shapes[0], a.wShape, a),
      (xi, wi, yi) => (dw[wi] += ins[1][yi] * ins[0][xi]),
    );
    return dw;
  },
  macs: (ins, _a, out) => ins[1][0] * ins[1][1] * ins[1][2] * ins[1][3] * out[1] * out[2] * out[3],
});

// Transposed convolution, weight layout [C_in, C_out, f, f] as in PyTorch.
/** The geometry of a transposed conv of x with w [C_in, C_out, f, f]. */
export function convTGeom(x: Shape, w: Shape): ConvTGeom {
  return { B: x[0], C: x[1], H: x[2], W: x[3], O: w[1], f: w[2] };
}

function refConvT(g: ConvTGeom, visit: (xi: number, wi: number, yi: number) => void) {
  const { B, C, H, W, O, f } = g;
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) {
      for (let i = 0; i < H; i++) {
        for (let j = 0; j < W; j++) {
          const xi = ((b * C + c) * H + i) * W + j;
          for (let o = 0; o < O; o++) {
            for (let a = 0; a < f; a++) {
              for (let e = 0; e < f; e++) {
                const yi = ((b * O + o) * H * f + i * f + a) * W * f + j * f + e;
                visit(xi, ((c * O + o) * f + a) * f + e, yi);
              }
            }
          }
        }
      }
    }
  }
}

/** The `conv_transpose` op. */
export const convTransposeDef: OpDef<Record<string, never>> = defineOp({
  name: "conv_transpose",
  shape: (ins) => {
    const [x, w, b] = ins;
    if (ins.length < 2 || x.length !== 4 || w.length !== 4 || w[2] !== w[3]) {
      throw new ShapeError("conv_transpose", ins, "expects x [B,C,H,W], w [C,O,f,f][, b [O]]");
    }
    if (x[1] !== w[0]) {
      throw new ShapeError("conv_transpose", ins, `x has ${x[1]} channels but w expects ${w[0]}`);
    }
    if (b && (b.length !== 1 || b[0] !== w[1])) {
      throw new ShapeError("conv_transpose", ins, `bias must be [${w[1]}]`);
    }
    return [x[0], w[1], x[2] * w[2], x[3] * w[2]];
  },
  grad: ({ x, dy }) => {
    const g = [
      dy.graph.apply("conv_transpose_bwd_data", [dy, x[1]]),
      dy.graph.apply("conv_transpose_bwd_weight", [x[0], dy], { wShape: x[1].shape }),
    ];
    if (x[2]) g.push(reshape(sum(dy, [0, 2, 3]), x[2].shape));
    return g;
  },
  ref: (ins, shapes, _a, out) => {
    const g = convTGeom(shapes[0], shapes[1]);
    const y = new Float64Array(out[0] * out[1] * out[2] * out[3]);
    refConvT(g, (xi, wi, yi) => (y[yi] += ins[0][xi] * ins[1][wi]));
    if (ins[2]) {
      const hw = out[2] * out[3];
      for (let i = 0; i < y.length; i++) y[i] += ins[2][Math.floor(i / hw) % g.O];
    }
    return y;
  },
  macs: (ins, _a, out) => out[0] * out[1] * out[2] * out[3] * ins[1][0],
});

/** The `conv_transpose_bwd_data` op. */
export const convTransposeBwdDataDef: OpDef<Record<string, never>> = defineOp<
  Record<string, never>
>({
  name: "conv_transpose_bwd_data",
  arity: 2,
  shape: (ins) => {
    const [dy, w] = ins;
    const f = w[2];
    if (dy.length !== 4 || dy[1] !== w[1] || dy[2] % f || dy[3] % f) {
      throw new ShapeError("conv_transpose_bwd_data", ins, "dy does not match the weight");
    }
    return [dy[0], w[0], dy[2] / f, dy[3] / f];
  },
  ref: (ins, shapes, _a, out) => {
    const dx = new Float64Array(out[0] * out[1] * out[2] * out[3]);
    refConvT(convTGeom(out, shapes[1]), (xi, wi, yi) => (dx[xi] += ins[0][yi] * ins[1][wi]));
    return dx;
  },
  macs: (ins) => ins[0][0] * ins[0][1] * ins[0][2] * ins[0][3] * ins[1][0],
});

/** The `conv_transpose_bwd_weight` op. */
export const convTransposeBwdWeightDef: OpDef<{ wShape: number[] }> = defineOp<
  { wShape: number[] }
>({
  name: "conv_transpose_bwd_weight",
  arity: 2,
  shape: (ins, a) => {
    const [x, dy] = ins;
    const f = a.wShape[2];
    if (dy.join() !== [x[0], a.wShape[1], x[2] * f, x[3] * f].join()) {
      throw new ShapeError("conv_transpose_bwd_weight", ins, "dy does not match x and the weight");
    }
    return a.wShape;
  },
  ref: (ins, shapes, a, out) => {
    const dw = new Float64Array(out[0] * out[1] * out[2] * out[3]);
    refConvT(convTGeom(shapes[0], a.wShape), (xi, wi, yi) => (dw[wi] += ins[0][xi] * ins[1][yi]));
    return dw;
  },
  macs: (ins, _a, out) => ins[1][0] * ins[1][1] * ins[1][2] * ins[1][3] * out[0],
});

/** 2-D convolution (cross-correlation, PyTorch semantics) of x [B,C,H,W] with w [O,C,KH,KW]. */
export function conv2d(
  x: Tensor,
  w: Tensor,
  b?: Tensor,
  opts: Partial<ConvAttrs> = {},
): Tensor {
  const a: ConvAttrs = { stride: 1, padding: 0, dilation: 1, ...opts };
  return x.graph.apply("conv2d", b ? [x, w, b] : [x, w], a);
}

/** Transposed convolution with kernel = stride = f (w [C, O, f, f]). */
export function convTranspose(x: Tensor, w: Tensor, b?: Tensor): Tensor {
  return x.graph.apply("conv_transpose", b ? [x, w, b] : [x, w], {});
}
