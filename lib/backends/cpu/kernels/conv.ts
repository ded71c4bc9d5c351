/**
 * CPU kernels of the convolution family as GEMMs (blas.ts), one image at a time, NCHW:
 *
 * - conv2d: y_b[O, OH*OW] = W[O, C*KH*KW] x col_b, where col_b = im2col(x_b) (1x1 stride-1
 *   unpadded convs use x_b itself);
 * - conv2d_bwd_weight: dW = sum_b dy_b[O, OH*OW] x col_b^T, accumulated with beta = 1;
 * - conv2d_bwd_data: col_b = W^T x dy_b, then col2im adds every tap back into dx_b;
 * - conv_transpose (kernel = stride = f, W [C, O*f*f]): col_b = W^T x x_b[C, H*W] and a scatter
 *   that writes each output pixel exactly once (no overlaps since kernel = stride); its
 *   gradients gather dy_b into the same [O*f*f, H*W] layout and multiply by W or x_b.
 *
 * The patch panels live in planned scratch, so a run allocates nothing; per-image subarray views
 * are made on the first run and reused, since the executor passes the same buffers every run.
 */
import type { CpuKernel } from "../../../graph/op.ts";
import type { ConvGeom, ConvTGeom } from "../../../../kernels/conv.ts";
import { sgemm } from "../blas.ts";

/** Per-image views [i*stride, (i+1)*stride) of a buffer, rebuilt only when the buffer changes. */
class Slices {
  private base: Float32Array | null = null;
  private views: Float32Array[] = [];

  constructor(private readonly count: number, private readonly stride: number) {}

  of(a: Float32Array): Float32Array[] {
    if (a !== this.base) {
      this.base = a;
      this.views = [];
      for (let i = 0; i < this.count; i++) {
        this.views.push(a.subarray(i * this.stride, (i + 1) * this.stride));
      }
    }
    return this.views;
  }
}

/**
 * For each tap offset t = k*d - p (k < K), the output positions [lo[k], hi[k]) whose input
 * coordinate o*s + t lies inside [0, n): hoisting these bounds out of the patch loops leaves the
 * innermost loop branch-free.
 */
function tapRanges(n: number, out: number, K: number, s: number, p: number, d: number) {
  const lo = new Int32Array(K);
  const hi = new Int32Array(K);
  for (let k = 0; k < K; k++) {
    const t = k * d - p;
    const a = Math.max(0, Math.ceil(-t / s));
    const b = Math.min(out, Math.floor((n - 1 - t) / s) + 1);
    lo[k] = Math.min(a, out);
    hi[k] = Math.max(b, lo[k]);
  }
  return { lo, hi };
}

/** The index maths of im2col/col2im for one conv geometry, precomputed once per node. */
interface Patches {
  g: ConvGeom;
  oyLo: Int32Array;
  oyHi: Int32Array;
  oxLo: Int32Array;
  oxHi: Int32Array;
}

function patches(g: ConvGeom): Patches {
  const y = tapRanges(g.H, g.OH, g.KH, g.stride, g.padding, g.dilation);
  const x = tapRanges(g.W, g.OW, g.KW, g.stride, g.padding, g.dilation);
  return { g, oyLo: y.lo, oyHi: y.hi, oxLo: x.lo, oxHi: x.hi };
}

/**
 * col[(c*KH + ky)*KW + kx, oy*OW + ox] = x[xOff + (c*H + iy)*W + ix] with iy = oy*s - p + ky*d
 * (likewise ix), and 0 where the tap falls in the padding.
 */
function im2col(P: Patches, x: Float32Array, xOff: number, col: Float32Array): void {
  const { C, H, W, KH, KW, OH, OW, stride: s, padding: p, dilation: d } = P.g;
  const { oyLo, oyHi, oxLo, oxHi } = P;
  const ohw = OH * OW;
  let r = 0;
  for (let c = 0; c < C; c++) {
    const xc = xOff + c * H * W;
    for (let ky = 0; ky < KH; ky++) {
      const y0 = oyLo[ky], y1 = oyHi[ky];
      const ty = ky * d - p;
      for (let kx = 0; kx < KW; kx++) {
        const x0 = oxLo[kx], x1 = oxHi[kx];
        const tx = kx * d - p;
        col.fill(0, r, r + y0 * OW);
        for (let oy = y0; oy < y1; oy++) {
          const dst = r + oy * OW;
          for (let ox = 0; ox < x0; ox++) col[dst + ox] = 0;
          let src = xc + (oy * s + ty) * W + x0 * s + tx;
          for (let ox = x0; ox < x1; ox++, src += s) col[dst + ox] = x[src];
          for (let ox = x1; ox < OW; ox++) col[dst + ox] = 0;
        }
        col.fill(0, r + y1 * OW, r + ohw);
        r += ohw;
      }
    }
  }
}

/** The adjoint of im2col: dx[dxOff + ...] = sum of the col entries that read each pixel. */
function col2im(P: Patches, col: Float32Array, dx: Float32Array, dxOff: number): void {
  const { C, H, W, KH, KW, OH, OW, stride: s, padding: p, dilation: d } = P.g;
  const { oyLo, oyHi, oxLo, oxHi } = P;
  const ohw = OH * OW;
  dx.fill(0, dxOff, dxOff + C * H * W);
  let r = 0;
  for (let c = 0; c < C; c++) {
    const xc = dxOff + c * H * W;
    for (let ky = 0; ky < KH; ky++) {
      const y0 = oyLo[ky], y1 = oyHi[ky];
      const ty = ky * d - p;
      for (let kx = 0; kx < KW; kx++) {
        const x0 = oxLo[kx], x1 = oxHi[kx];
        const tx = kx * d - p;
        for (let oy = y0; oy < y1; oy++) {
          const from = r + oy * OW;
          let dst = xc + (oy * s + ty) * W + x0 * s + tx;
          for (let ox = x0; ox < x1; ox++, dst += s) dx[dst] += col[from + ox];
        }
        r += ohw;
      }
    }
  }
}

/** A unit-stride, unpadded 1x1 conv is a plain GEMM on x_b: no patch panel needed. */
function isPointwise(g: ConvGeom): boolean {
  return g.KH === 1 && g.KW === 1 && g.stride === 1 && g.padding === 0;
}

/** Writes bias[o] over the O planes of hw values at off (y is then accumulated onto). */
function fillBias(y: Float32Array, off: number, bias: Float32Array, O: number, hw: number) {
  for (let o = 0; o < O; o++) y.fill(bias[o], off + o * hw, off + (o + 1) * hw);
}

/** conv2d forward: ins x [B,C,H,W], w [O,C,KH,KW], optional bias [O]. */
export function conv2dCpu(g: ConvGeom, hasBias: boolean): CpuKernel {
  const { B, C, H, W, O, KH, KW, OH, OW } = g;
  const K = C * KH * KW, ohw = OH * OW;
  const pointwise = isPointwise(g);
  const P = patches(g);
  const xs = new Slices(B, C * H * W), ys = new Slices(B, O * ohw);
  return {
    scratch: pointwise ? [] : [K * ohw],
    run(ins, out, scratch) {
      const x = ins[0], w = ins[1];
      const xv = xs.of(x), yv = ys.of(out);
      for (let b = 0; b < B; b++) {
        // With a bias the output is pre-filled and the GEMM accumulates onto it (beta = 1).
        if (hasBias) fillBias(out, b * O * ohw, ins[2], O, ohw);
        let cols = xv[b];
        if (!pointwise) {
          cols = scratch[0];
          im2col(P, x, b * C * H * W, cols);
        }
        sgemm(false, false, O, ohw, K, 1, w, K, cols, ohw, hasBias ? 1 : 0, yv[b], ohw);
      }
    },
  };
}

/** conv2d_bwd_data: ins dy [B,O,OH,OW], w [O,C,KH,KW]; out dx [B,C,H,W]. */
export function conv2dBwdDataCpu(g: ConvGeom): CpuKernel {
  const { B, C, H, W, O, KH, KW, OH, OW } = g;
  const K = C * KH * KW, ohw = OH * OW;
  const pointwise = isPointwise(g);
  const P = patches(g);
  const dys = new Slices(B, O * ohw), dxs = new Slices(B, C * H * W);
  return {
    scratch: pointwise ? [] : [K * ohw],
    run(ins, out, scratch) {
      const w = ins[1];
      const dyv = dys.of(ins[0]), dxv = dxs.of(out);
      for (let b = 0; b < B; b++) {
        if (pointwise) {
          sgemm(true, false, C, ohw, O, 1, w, C, dyv[b], ohw, 0, dxv[b], ohw);
        } else {
          const col = scratch[0];
          sgemm(true, false, K, ohw, O, 1, w, K, dyv[b], ohw, 0, col, ohw);
          col2im(P, col, out, b * C * H * W);
        }
      }
    },
  };
}

/** conv2d_bwd_weight: ins x [B,C,H,W], dy [B,O,OH,OW]; out dw [O,C,KH,KW]. */
export function conv2dBwdWeightCpu(g: ConvGeom): CpuKernel {
  const { B, C, H, W, O, KH, KW, OH, OW } = g;
  const K = C * KH * KW, ohw = OH * OW;
  const pointwise = isPointwise(g);
  const P = patches(g);
  const xs = new Slices(B, C * H * W), dys = new Slices(B, O * ohw);
  return {
    scratch: pointwise ? [] : [K * ohw],
    run(ins, out, scratch) {
      const x = ins[0];
      const xv = xs.of(x), dyv = dys.of(ins[1]);
      for (let b = 0; b < B; b++) {
        let cols = xv[b];
        if (!pointwise) {
          cols = scratch[0];
          im2col(P, x, b * C * H * W, cols);
        }
        sgemm(false, true, O, K, ohw, 1, dyv[b], ohw, cols, ohw, b === 0 ? 0 : 1, out, K);
      }
    },
  };
}

/**
 * Scatters col[(o*f + a)*f + e, i*W + j] (+ bias[o]) to y[yOff + (o*H*f + i*f + a)*W*f + j*f + e]
 * for one image; with kernel = stride every output pixel is written exactly once.
 */
function scatterT(
  g: ConvTGeom,
  col: Float32Array,
  y: Float32Array,
  yOff: number,
  bias: Float32Array,
): void {
  const { H, W, O, f } = g;
  const hw = H * W, wf = W * f;
  for (let o = 0; o < O; o++) {
    const bv = bias[o];
    for (let i = 0; i < H; i++) {
      for (let a = 0; a < f; a++) {
        const row = yOff + ((o * H + i) * f + a) * wf;
        for (let e = 0; e < f; e++) {
          const src = ((o * f + a) * f + e) * hw + i * W;
          for (let j = 0; j < W; j++) y[row + j * f + e] = col[src + j] + bv;
        }
      }
    }
  }
}

/** The inverse permutation of scatterT (without bias): dy of one image into [O*f*f, H*W]. */
function gatherT(g: ConvTGeom, dy: Float32Array, dyOff: number, col: Float32Array): void {
  const { H, W, O, f } = g;
  const hw = H * W, wf = W * f;
  for (let o = 0; o < O; o++) {
    for (let i = 0; i < H; i++) {
      for (let a = 0; a < f; a++) {
        const row = dyOff + ((o * H + i) * f + a) * wf;
        for (let e = 0; e < f; e++) {
          const dst = ((o * f + a) * f + e) * hw + i * W;
          for (let j = 0; j < W; j++) col[dst + j] = dy[row + j * f + e];
        }
      }
    }
  }
}

/** conv_transpose forward: ins x [B,C,H,W], w [C,O,f,f], optional bias [O]. */
export function convTransposeCpu(g: ConvTGeom, hasBias: boolean): CpuKernel {
  const { B, C, H, W, O, f } = g;
  const hw = H * W, off = O * f * f;
  const xs = new Slices(B, C * hw), ys = new Slices(B, O * hw * f * f);
  // Without a bias the scatter adds these zeros, which keeps its inner loop uniform.
  const zeros = new Float32Array(O);
  return {
    scratch: f === 1 ? [] : [off * hw],
    run(ins, out, scratch) {
      const w = ins[1];
      const bias = hasBias ? ins[2] : zeros;
      const xv = xs.of(ins[0]), yv = ys.of(out);
      for (let b = 0; b < B; b++) {
        if (f === 1) {
          if (hasBias) fillBias(out, b * O * hw, bias, O, hw);
          sgemm(true, false, O, hw, C, 1, w, O, xv[b], hw, hasBias ? 1 : 0, yv[b], hw);
        } else {
          sgemm(true, false, off, hw, C, 1, w, off, xv[b], hw, 0, scratch[0], hw);
          scatterT(g, scratch[0], out, b * O * hw * f * f, bias);
        }
      }
    },
  };
}

/** conv_transpose_bwd_data: ins dy [B,O,H*f,W*f], w [C,O,f,f]; out dx [B,C,H,W]. */
export function convTransposeBwdDataCpu(g: ConvTGeom): CpuKernel {
  const { B, C, H, W, O, f } = g;
  const hw = H * W, off = O * f * f;
  const dys = new Slices(B, off * hw), dxs = new Slices(B, C * hw);
  return {
    scratch: f === 1 ? [] : [off * hw],
    run(ins, out, scratch) {
      const dy = ins[0], w = ins[1];
      const dyv = dys.of(dy), dxv = dxs.of(out);
      for (let b = 0; b < B; b++) {
        let cols = dyv[b];
        if (f !== 1) {
          cols = scratch[0];
          gatherT(g, dy, b * off * hw, cols);
        }
        sgemm(false, false, C, hw, off, 1, w, off, cols, hw, 0, dxv[b], hw);
      }
    },
  };
}

/** conv_transpose_bwd_weight: ins x [B,C,H,W], dy [B,O,H*f,W*f]; out dw [C,O,f,f]. */
export function convTransposeBwdWeightCpu(g: ConvTGeom): CpuKernel {
  const { B, C, H, W, O, f } = g;
  const hw = H * W, off = O * f * f;
  const xs = new Slices(B, C * hw), dys = new Slices(B, off * hw);
  return {
    scratch: f === 1 ? [] : [off * hw],
    run(ins, out, scratch) {
      const dy = ins[1];
      const xv = xs.of(ins[0]), dyv = dys.of(dy);
      for (let b = 0; b < B; b++) {
        let cols = dyv[b];
        if (f !== 1) {
          cols = scratch[0];
          gatherT(g, dy, b * off * hw, cols);
        }
        sgemm(false, true, C, off, hw, 1, xv[b], hw, cols, hw, b === 0 ? 0 : 1, out, off);
      }
    },
  };
}
