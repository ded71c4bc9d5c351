/**
 * CPU kernels of the convolution family as GEMMs (blas.ts), NCHW:
 *
 * - stride-1 convs that keep the width (the U-Net's 3x3 convs) and their gradients: per kernel
 *   row, one GEMM over a panel of KW column-shifted copies of the input, written straight into
 *   the output (see `Same`).
 * - other stride-1 conv2d and their two gradients: shifted GEMMs over a
 *   zero-padded copy of the input, one GEMM per tap (or per kernel row) for the whole batch; no
 *   im2col (see `Shifted`). The data gradient is the forward conv of dy with the flipped,
 *   channel-transposed weights.
 * - many small maps (a batch of 8 or more under 64 outputs each, GT U-Net's 4x4 windows): chunks
 *   of images side by side in one GEMM, the 9-tap panel built on the side with fewer channels
 *   (see `Batched`).
 * - other convs, and small images where padding makes the shifted GEMMs wasteful: per image,
 *   y_b = W[O, C*KH*KW] x im2col(x_b); dW = sum_b dy_b x im2col(x_b)^T (beta = 1 after the
 *   first image); dx_b = col2im(W^T x dy_b). 1x1 stride-1 unpadded convs use x_b as is.
 * - conv_transpose (kernel = stride = f, W [C, O*f*f]): col_b = W^T x x_b[C, H*W] and a scatter
 *   that writes each output pixel exactly once (no overlaps since kernel = stride); its
 *   gradients gather dy_b into the same [O*f*f, H*W] layout and multiply by W or x_b.
 *
 * Panels live in planned scratch, so a run allocates nothing; subarray views for the GEMM
 * operands are made on the first run and reused, since the executor passes the same buffers
 * every run. Accumulation is sequential and deterministic.
 */
import type { CpuKernel, CpuPartFn } from "./types.ts";
import type { ConvGeom, ConvTGeom } from "../../lib/graph/ops/conv.ts";
import { sgemm } from "../../lib/backends/cpu/blas.ts";
import { partOf } from "./parts.ts";
import { addTaps, chunkPlanes, col2imTaps, im2colTaps } from "./conv_taps_wasm.ts";

/** Subarray views at fixed offsets of a buffer, rebuilt only when the buffer changes. */
class Views {
  private base: Float32Array | null = null;
  private views: Float32Array[] = [];

  /** length: of each view, or ends: per view; by default to the end of the buffer. */
  constructor(
    private readonly offsets: number[],
    private readonly length?: number,
    private readonly ends?: number[],
  ) {}

  of(a: Float32Array): Float32Array[] {
    if (a !== this.base) {
      this.base = a;
      const n = this.length, e = this.ends;
      this.views = this.offsets.map((o, i) =>
        e ? a.subarray(o, e[i]) : n === undefined ? a.subarray(o) : a.subarray(o, o + n)
      );
    }
    return this.views;
  }
}

/** Views of the B consecutive images of `size` values each. */
function perImage(B: number, size: number): Views {
  return new Views(Array.from({ length: B }, (_, b) => b * size), size);
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

/** Writes bias[o] over the O planes of hw values at off (y is then accumulated onto). */
function fillBias(y: Float32Array, off: number, bias: Float32Array, O: number, hw: number) {
  for (let o = 0; o < O; o++) y.fill(bias[o], off + o * hw, off + (o + 1) * hw);
}

/**
 * A stride-1 conv as shifted GEMMs, which avoids im2col's KH*KW-fold copy of the input. With
 * the input zero-padded to [cin, hp, wp] and the output computed on the padded row pitch wp
 * (columns ox >= ow are junk, cropped afterwards), output column n = oy*wp + ox reads the padded
 * input at n + ky*d*wp + kx*d: for each tap the input matrix is the same, shifted by a constant.
 * So y'[cout, N] = sum over taps t of Wt[cout, cin] x panel[cin, N] read from t's shift. The
 * images of the batch sit side by side in the panel rows (image b at column b*L), so one GEMM
 * per tap covers the whole batch. G = KW folds the kx taps into the GEMM depth (the panel then
 * holds KW copies of the padded input, each shifted by kx*d) for fewer, deeper GEMMs.
 */
interface Shifted {
  B: number;
  cin: number;
  hin: number;
  win: number;
  cout: number;
  KH: number;
  KW: number;
  ph: number;
  pw: number;
  d: number;
  /** kx taps per GEMM: 1 or KW. */
  G: number;
  wp: number;
  oh: number;
  ow: number;
  /** hp * wp: columns per image in the panel and the output buffer. */
  L: number;
  /** Panel row length and output pitch, B * L. */
  pitch: number;
  /** GEMM width: the last valid output column of the last image + 1. */
  N: number;
  /** GEMMs per run. */
  T: number;
  /** GEMM depth cin * G. */
  depth: number;
  /** Panel column offset of GEMM t. */
  offs: number[];
}

function shifted(
  B: number,
  cin: number,
  hin: number,
  win: number,
  cout: number,
  K: [number, number],
  ph: number,
  pw: number,
  d: number,
  G: number,
): Shifted {
  const [KH, KW] = K;
  const hp = hin + 2 * ph, wp = win + 2 * pw;
  const oh = hp - d * (KH - 1), ow = wp - d * (KW - 1);
  const q = KW / G;
  const offs: number[] = [];
  for (let t = 0; t < KH * q; t++) offs.push(Math.floor(t / q) * d * wp + (t % q) * G * d);
  const L = hp * wp;
  return {
    B,
    cin,
    hin,
    win,
    cout,
    KH,
    KW,
    ph,
    pw,
    d,
    G,
    wp,
    oh,
    ow,
    L,
    pitch: B * L,
    N: (B - 1) * L + (oh - 1) * wp + ow,
    T: KH * q,
    depth: cin * G,
    offs,
  };
}

/**
 * panel[(c*G + g)*pitch + b*L + m] = padded plane (b, c) at m + g*d: the padded planes in row
 * (c, 0), and in row (c, g) the same row shifted left by g*d (a native copyWithin; its last g*d
 * values are stale but never read: the widest GEMM stops (KW - 1)*d short of the row's end).
 */
function buildPanel(S: Shifted, src: Float32Array, panel: Float32Array): void {
  const { B, cin, hin, win, G, L, pitch, wp, ph, pw, d } = S;
  for (let c = 0; c < cin; c++) {
    const row = c * G * pitch;
    panel.fill(0, row, row + pitch);
    for (let b = 0; b < B; b++) {
      const s0 = (b * cin + c) * hin * win;
      for (let iy = 0; iy < hin; iy++) {
        const dst = row + b * L + (iy + ph) * wp + pw, from = s0 + iy * win;
        for (let ix = 0; ix < win; ix++) panel[dst + ix] = src[from + ix];
      }
    }
    for (let g = 1; g < G; g++) panel.copyWithin(row + g * pitch, row + g * d, row + pitch);
  }
}

/**
 * Packs conv weights per GEMM: wpk[(t*cout + m)*depth + c*G + g] = weight of output m, input c
 * at (ky, kx0 + g). flip: the weights are a forward conv's [cin, cout, KH, KW] used for its data
 * gradient, i.e. transposed in the channels and rotated by 180 degrees.
 */
function packWeights(S: Shifted, w: Float32Array, wpk: Float32Array, flip: boolean): void {
  const { cin, cout, KH, KW, G, T, depth } = S;
  const q = KW / G, kk = KH * KW;
  // Walk the source contiguously (m, c, then its KH*KW taps) and scatter into the T panels.
  for (let m = 0; m < cout; m++) {
    for (let c = 0; c < cin; c++) {
      const from = flip ? (c * cout + m) * kk : (m * cin + c) * kk;
      for (let t = 0; t < T; t++) {
        const ky = Math.floor(t / q), kx0 = (t % q) * G;
        const dst = (t * cout + m) * depth + c * G;
        if (flip) {
          const base = from + (KH - 1 - ky) * KW + KW - 1 - kx0;
          for (let g = 0; g < G; g++) wpk[dst + g] = w[base - g];
        } else {
          const base = from + ky * KW + kx0;
          for (let g = 0; g < G; g++) wpk[dst + g] = w[base + g];
        }
      }
    }
  }
}

/**
 * A stride-1 conv (or a stride-1 conv's data gradient, flip) of a whole batch by shifted GEMMs.
 * Scratch: [panel, output on the padded pitch, packed weights].
 */
function shiftedConv(S: Shifted, flip: boolean, hasBias: boolean): CpuKernel {
  const { B, cout, oh, ow, wp, L, pitch, N, T, depth } = S;
  const panelViews = new Views(S.offs);
  const wViews = new Views(S.offs.map((_, t) => t * cout * depth));
  const zeros = new Float32Array(cout);
  return {
    scratch: [S.depth * pitch, cout * pitch, T * cout * depth],
    run(ins, out, scratch) {
      const panel = scratch[0], ybuf = scratch[1], wpk = scratch[2];
      const bias = hasBias ? ins[2] : zeros;
      packWeights(S, ins[1], wpk, flip);
      buildPanel(S, ins[0], panel);
      const wv = wViews.of(wpk), pv = panelViews.of(panel);
      for (let t = 0; t < T; t++) {
        sgemm(false, false, cout, N, depth, 1, wv[t], depth, pv[t], pitch, t ? 1 : 0, ybuf, pitch);
      }
      // Crop the junk columns (and add the bias, zeros without one).
      for (let b = 0; b < B; b++) {
        for (let m = 0; m < cout; m++) {
          const bv = bias[m];
          for (let oy = 0; oy < oh; oy++) {
            const from = m * pitch + b * L + oy * wp, dst = ((b * cout + m) * oh + oy) * ow;
            for (let ox = 0; ox < ow; ox++) out[dst + ox] = ybuf[from + ox] + bv;
          }
        }
      }
    },
  };
}

/**
 * dW_t^T[depth, cout] = panel_t[depth, N] x dy'^T over the whole batch, with dy' = dy on the
 * panel's padded layout and zeros in the junk columns (which would otherwise pair with real
 * inputs). The transposed product is the faster one for OpenBLAS: its long side is the depth.
 * Scratch: [panel, dy', packed dW^T].
 */
function shiftedBwdWeight(S: Shifted): CpuKernel {
  const { B, cin, cout, KH, KW, G, T, N, L, pitch, depth, oh, ow, wp } = S;
  const panelViews = new Views(S.offs);
  const dwViews = new Views(S.offs.map((_, t) => t * depth * cout));
  return {
    scratch: [depth * pitch, cout * pitch, T * depth * cout],
    run(ins, out, scratch) {
      const panel = scratch[0], dyp = scratch[1], dwpk = scratch[2];
      const dy = ins[1];
      buildPanel(S, ins[0], panel);
      dyp.fill(0);
      for (let b = 0; b < B; b++) {
        for (let m = 0; m < cout; m++) {
          for (let oy = 0; oy < oh; oy++) {
            const dst = m * pitch + b * L + oy * wp, from = ((b * cout + m) * oh + oy) * ow;
            for (let ox = 0; ox < ow; ox++) dyp[dst + ox] = dy[from + ox];
          }
        }
      }
      const pv = panelViews.of(panel), dwv = dwViews.of(dwpk);
      for (let t = 0; t < T; t++) {
        sgemm(false, true, depth, cout, N, 1, pv[t], pitch, dyp, pitch, 0, dwv[t], cout);
      }
      // Unpack [t][c*G + g][m] into [m][c][ky][kx].
      const q = KW / G;
      for (let t = 0; t < T; t++) {
        const ky = Math.floor(t / q), kx0 = (t % q) * G;
        for (let c = 0; c < cin; c++) {
          for (let g = 0; g < G; g++) {
            const from = (t * depth + c * G + g) * cout;
            const dst = (c * KH + ky) * KW + kx0 + g;
            for (let m = 0; m < cout; m++) out[dst + m * cin * KH * KW] = dwpk[from + m];
          }
        }
      }
    },
  };
}

/**
 * A stride-1 conv whose output is as wide as its input (2*pw = d*(KW - 1), e.g. 3x3 with
 * padding 1) needs no junk columns: on the input's own row pitch W, output n = oy*W + ox reads
 * row oy + ky*d of an image padded by ph rows above and below, at column ox + kx*d - pw. Panel
 * row (c, kx) holds channel c shifted by kx*d - pw with the columns that wrap across rows
 * zeroed, so each kernel row ky is one GEMM of depth cin*KW over the panel shifted by ky*d*W,
 * and the product lands in the output (or the output gradient is read) in place: no crop, no
 * copy of dy, one native copy per panel row.
 */
interface Same {
  B: number;
  cin: number;
  H: number;
  W: number;
  cout: number;
  KH: number;
  KW: number;
  ph: number;
  pw: number;
  d: number;
  oh: number;
  /** Panel columns per image, (H + 2*ph) * W, and the panel row length B * L. */
  L: number;
  pitch: number;
  depth: number;
}

function same(
  B: number,
  cin: number,
  H: number,
  W: number,
  cout: number,
  KH: number,
  KW: number,
  ph: number,
  pw: number,
  d: number,
): Same {
  const L = (H + 2 * ph) * W;
  return {
    B,
    cin,
    H,
    W,
    cout,
    KH,
    KW,
    ph,
    pw,
    d,
    oh: H + 2 * ph - d * (KH - 1),
    L,
    pitch: B * L,
    depth: cin * KW,
  };
}

/** Applies when the output keeps the input's width, so that both share the row pitch W. */
function sameApplies(KW: number, pw: number, d: number): boolean {
  return 2 * pw === d * (KW - 1);
}

/** Views of src for every plane (b, c) and column shift kx: the values a panel row copies. */
function sameSources(S: Same): Views {
  const { B, cin, H, W, KW, pw, d } = S;
  const hw = H * W;
  const offs: number[] = [];
  const ends: number[] = [];
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < cin; c++) {
      for (let kx = 0; kx < KW; kx++) {
        const sx = kx * d - pw, p = (b * cin + c) * hw;
        offs.push(p + Math.min(hw, Math.max(0, sx)));
        ends.push(p + Math.max(0, Math.min(hw, hw + sx)));
      }
    }
  }
  return new Views(offs, undefined, ends);
}

/**
 * panel[(c*KW + kx)*pitch + b*L + (iy + ph)*W + ox] = src (b, c, iy, ox + kx*d - pw), else 0,
 * for the planes (b, c) numbered q = b*cin + c in [q0, q1) (all of them by default).
 */
function buildSame(
  S: Same,
  src: Float32Array,
  views: Views,
  panel: Float32Array,
  q0 = 0,
  q1 = S.B * S.cin,
): void {
  const { cin, H, W, KW, ph, pw, d, L, pitch } = S;
  const hw = H * W, top = ph * W;
  const v = views.of(src);
  for (let q = q0; q < q1; q++) {
    const b = Math.floor(q / cin), c = q % cin;
    for (let kx = 0; kx < KW; kx++) {
      const i = q * KW + kx;
      const sx = kx * d - pw;
      const seg = (c * KW + kx) * pitch + b * L, data = seg + top;
      panel.fill(0, seg, data);
      panel.fill(0, data + hw, seg + L);
      if (sx <= -W || sx >= W) {
        panel.fill(0, data, data + hw);
        continue;
      }
      // Destination n reads source n + sx: the copy starts at max(0, -sx).
      panel.set(v[i], data + Math.max(0, -sx));
      if (sx < 0) {
        for (let y = 0; y < H; y++) panel.fill(0, data + y * W, data + y * W - sx);
      } else if (sx > 0) {
        for (let y = 0; y < H; y++) panel.fill(0, data + (y + 1) * W - sx, data + (y + 1) * W);
      }
    }
  }
}

/**
 * wpk[(ky*cout + m)*depth + c*KW + kx] = w (m, c, ky, kx), or for flip its data-gradient form,
 * for the outputs m in [m0, m1) (all by default).
 */
function packSame(
  S: Same,
  w: Float32Array,
  wpk: Float32Array,
  flip: boolean,
  m0 = 0,
  m1 = S.cout,
): void {
  const { cin, KH, KW, depth } = S;
  const cout = S.cout;
  const kk = KH * KW;
  for (let m = m0; m < m1; m++) {
    for (let c = 0; c < cin; c++) {
      const from = flip ? (c * cout + m) * kk + kk - 1 : (m * cin + c) * kk;
      for (let ky = 0; ky < KH; ky++) {
        const dst = (ky * cout + m) * depth + c * KW, k0 = ky * KW;
        if (flip) { for (let kx = 0; kx < KW; kx++) wpk[dst + kx] = w[from - k0 - kx]; }
        else for (let kx = 0; kx < KW; kx++) wpk[dst + kx] = w[from + k0 + kx];
      }
    }
  }
}

/** Panel views per (image, kernel row): where GEMM ky of image b reads. */
function sameTaps(S: Same): Views {
  const offs: number[] = [];
  for (let b = 0; b < S.B; b++) {
    for (let ky = 0; ky < S.KH; ky++) offs.push(b * S.L + ky * S.d * S.W);
  }
  return new Views(offs);
}

/**
 * Forward conv (or, flip, a conv's data gradient). Scratch: [panel, packed weights]. `prepare`
 * (packing, panel and bias, split by outputs and planes) then `finish` (the GEMMs) is `run`.
 */
function sameConv(S: Same, flip: boolean, hasBias: boolean): CpuKernel {
  const { B, KH, cout, cin, oh, W, pitch, depth } = S;
  const n = oh * W;
  const sources = sameSources(S), taps = sameTaps(S);
  const wViews = new Views(Array.from({ length: KH }, (_, ky) => ky * cout * depth));
  const outs = perImage(B, cout * n);
  const prepare: CpuPartFn = (ins, out, scratch, part, parts) => {
    packSame(S, ins[1], scratch[1], flip, ...partOf(cout, part, parts));
    buildSame(S, ins[0], sources, scratch[0], ...partOf(B * cin, part, parts));
    if (!hasBias) return;
    const [q0, q1] = partOf(B * cout, part, parts);
    for (let q = q0; q < q1; q++) out.fill(ins[2][q % cout], q * n, (q + 1) * n);
  };
  const finish = (_ins: Float32Array[], out: Float32Array, scratch: Float32Array[]) => {
    const wv = wViews.of(scratch[1]), pv = taps.of(scratch[0]), ov = outs.of(out);
    for (let b = 0; b < B; b++) {
      for (let ky = 0; ky < KH; ky++) {
        // With a bias the output was filled with it and every GEMM accumulates (beta = 1).
        const beta = ky > 0 || hasBias ? 1 : 0;
        sgemm(
          false,
          false,
          cout,
          n,
          depth,
          1,
          wv[ky],
          depth,
          pv[b * KH + ky],
          pitch,
          beta,
          ov[b],
          n,
        );
      }
    }
  };
  return staged([depth * pitch, KH * cout * depth], prepare, finish);
}

/**
 * dW^T per kernel row: dwk[ky][c*KW + kx][m] = sum over images of panel_ky x dy_b^T, dy_b read
 * in place. Scratch: [panel, dW in that order]. `prepare` builds the panel (split by planes).
 */
function sameBwdWeight(S: Same): CpuKernel {
  const { B, cin, cout, KH, KW, oh, W, pitch, depth } = S;
  const n = oh * W;
  const sources = sameSources(S), taps = sameTaps(S);
  const dws = new Views(Array.from({ length: KH }, (_, ky) => ky * depth * cout));
  const dys = perImage(B, cout * n);
  const prepare: CpuPartFn = (ins, _out, scratch, part, parts) =>
    buildSame(S, ins[0], sources, scratch[0], ...partOf(B * cin, part, parts));
  const finish = (ins: Float32Array[], out: Float32Array, scratch: Float32Array[]) => {
    const dwk = scratch[1];
    const pv = taps.of(scratch[0]), dv = dws.of(dwk), yv = dys.of(ins[1]);
    for (let ky = 0; ky < KH; ky++) {
      for (let b = 0; b < B; b++) {
        sgemm(
          false,
          true,
          depth,
          cout,
          n,
          1,
          pv[b * KH + ky],
          pitch,
          yv[b],
          n,
          b ? 1 : 0,
          dv[ky],
          cout,
        );
      }
    }
    const kk = KH * KW;
    for (let ky = 0; ky < KH; ky++) {
      for (let c = 0; c < cin; c++) {
        for (let kx = 0; kx < KW; kx++) {
          const from = (ky * depth + c * KW + kx) * cout, dst = c * kk + ky * KW + kx;
          for (let m = 0; m < cout; m++) out[dst + m * cin * kk] = dwk[from + m];
        }
      }
    }
  };
  return staged([depth * pitch, KH * depth * cout], prepare, finish);
}

/** The kernel whose `run` is `prepare` on one part, then `finish` (CpuKernel.prepare). */
function staged(
  scratch: number[],
  prepare: CpuPartFn,
  finish: NonNullable<CpuKernel["finish"]>,
): CpuKernel {
  return {
    scratch,
    run(ins, out, s) {
      prepare(ins, out, s, 0, 1);
      finish(ins, out, s);
    },
    prepare,
    finish,
  };
}

/**
 * Many small images (GT U-Net's 4x4 windows: B = 8192 at 256x256) as few wide GEMMs. Per image,
 * a 4x4 map gives GEMMs of 16 columns, too small to reach BLAS speed or to be split over threads,
 * so `n` images at a time sit side by side ([rows, n*plane], image j at column j*plane) and one
 * GEMM covers them all. The panel is built on the side with fewer channels, since a 3x3 panel
 * holds 9 copies of it: the forward conv of C channels into O either im2cols x (C <= O) or
 * multiplies x as it is by every tap's weights and adds the 9 products, shifted, into y (C > O);
 * the data gradient either im2cols dy in the flipped geometry (a stride-1 conv of O channels into
 * C) or col2ims W^T dy; the weight gradient pairs dy with im2col(x), or im2col(dy) in the flipped
 * geometry with x. The chunk size depends only on the shapes, so results do not depend on the
 * number of threads.
 */
interface Batched {
  g: ConvGeom;
  /** Taps of x (the conv's own geometry). */
  T: Int32Array;
  /** Taps of dy in the flipped geometry (stride 1, padding d*(k-1) - p), or null. */
  F: Int32Array | null;
  /** Images per chunk. */
  n: number;
  kk: number;
  hw: number;
  ohw: number;
}

/** Panel columns a chunk aims for, and the most elements (16 MiB) one panel may take. */
const BATCH_COLUMNS = 4096, BATCH_PANEL = 1 << 22;

/** Batched applies to maps under 64 outputs (no GEMM of one image reaches a register tile). */
function batchedApplies(g: ConvGeom): boolean {
  return g.OH * g.OW < 64 && g.B >= 8;
}

function batched(g: ConvGeom): Batched {
  const { C, H, W, O, KH, KW, OH, OW, stride: s, padding: p, dilation: d } = g;
  const kk = KH * KW, hw = H * W, ohw = OH * OW;
  const flippable = s === 1 && p <= d * (KH - 1) && p <= d * (KW - 1);
  const F = flippable
    ? taps({ ...g, C: O, H: OH, W: OW, O: C, OH: H, OW: W, padding: d * (KH - 1) - p })
    : null;
  // Rows of the largest panel any of the three kernels builds, over columns of either plane.
  const rows = Math.max(C, O) * kk, plane = Math.max(hw, ohw);
  const cols = Math.min(BATCH_COLUMNS, Math.floor(BATCH_PANEL / rows));
  const n = Math.max(1, Math.min(g.B, Math.floor(cols / plane)));
  return { g, T: taps(g), F, n, kk, hw, ohw };
}

/**
 * For tap t = ky*KW + kx and output q = oy*OW + ox, the input offset iy*W + ix that it reads
 * (iy = oy*s - p + ky*d, likewise ix), or -1 in the padding: on maps of a few pixels a lookup per
 * element beats im2col's per-row ranges and fills.
 */
function taps(g: ConvGeom): Int32Array {
  const { H, W, KH, KW, OH, OW, stride: s, padding: p, dilation: d } = g;
  const T = new Int32Array(KH * KW * OH * OW);
  let i = 0;
  for (let ky = 0; ky < KH; ky++) {
    for (let kx = 0; kx < KW; kx++) {
      for (let oy = 0; oy < OH; oy++) {
        for (let ox = 0; ox < OW; ox++, i++) {
          const iy = oy * s - p + ky * d, ix = ox * s - p + kx * d;
          T[i] = iy >= 0 && iy < H && ix >= 0 && ix < W ? iy * W + ix : -1;
        }
      }
    }
  }
  return T;
}

/** Calls f for each chunk of `n` images in order: first image b0, m images, N = m*plane columns. */
function eachChunk(
  B: number,
  n: number,
  plane: number,
  f: (b0: number, m: number, N: number) => void,
): void {
  for (let b0 = 0; b0 < B; b0 += n) {
    const m = Math.min(n, B - b0);
    f(b0, m, m * plane);
  }
}

/** wt[(t*O + o)*C + c] = w[(o*C + c)*kk + t]: each tap's [O, C] weights, stacked. */
function packTaps(w: Float32Array, wt: Float32Array, O: number, C: number, kk: number): void {
  for (let o = 0; o < O; o++) {
    for (let c = 0; c < C; c++) {
      for (let t = 0; t < kk; t++) wt[(t * O + o) * C + c] = w[(o * C + c) * kk + t];
    }
  }
}

/** wf[(c*O + o)*kk + t] = w[(o*C + c)*kk + kk-1-t]: the flipped conv's weights, [C, O, KH, KW]. */
function packFlipped(w: Float32Array, wf: Float32Array, O: number, C: number, kk: number): void {
  for (let o = 0; o < O; o++) {
    for (let c = 0; c < C; c++) {
      for (let t = 0; t < kk; t++) wf[(c * O + o) * kk + t] = w[(o * C + c) * kk + kk - 1 - t];
    }
  }
}

/** conv2d forward over chunks of images (see `Batched`). */
function batchedConv(S: Batched, hasBias: boolean): CpuKernel {
  const { g, T, n, kk, hw, ohw } = S, { B, C, O } = g;
  const K = C * kk;
  if (C <= O) {
    return {
      scratch: [K * n * ohw, O * n * ohw],
      run(ins, out, [cols, yc]) {
        const x = ins[0], w = ins[1];
        eachChunk(B, n, ohw, (b0, m, N) => {
          im2colTaps(T, ohw, C, hw, x, b0 * C * hw, m, cols);
          sgemm(false, false, O, N, K, 1, w, K, cols, N, 0, yc, N);
          chunkPlanes(out, b0 * O * ohw, yc, O, ohw, m, false, hasBias ? ins[2] : undefined);
        });
      },
    };
  }
  return {
    scratch: [kk * O * C, C * n * hw, kk * O * n * hw],
    run(ins, out, [wt, xc, z]) {
      packTaps(ins[1], wt, O, C, kk);
      eachChunk(B, n, hw, (b0, m, N) => {
        chunkPlanes(ins[0], b0 * C * hw, xc, C, hw, m, true);
        sgemm(false, false, kk * O, N, C, 1, wt, C, xc, N, 0, z, N);
        addTaps(T, ohw, O, hw, z, m, out, b0 * O * ohw, hasBias ? ins[2] : undefined);
      });
    },
  };
}

/** conv2d_bwd_data over chunks of images (see `Batched`). */
function batchedBwdData(S: Batched): CpuKernel {
  const { g, T, F, n, kk, hw, ohw } = S, { B, C, O } = g;
  if (F && O <= C) {
    const K = O * kk;
    return {
      scratch: [C * K, K * n * hw, C * n * hw],
      run(ins, out, [wf, cols, dxc]) {
        packFlipped(ins[1], wf, O, C, kk);
        eachChunk(B, n, hw, (b0, m, N) => {
          im2colTaps(F, hw, O, ohw, ins[0], b0 * O * ohw, m, cols);
          sgemm(false, false, C, N, K, 1, wf, K, cols, N, 0, dxc, N);
          chunkPlanes(out, b0 * C * hw, dxc, C, hw, m, false);
        });
      },
    };
  }
  const K = C * kk;
  return {
    scratch: [K * n * ohw, O * n * ohw],
    run(ins, out, [cols, dyc]) {
      const w = ins[1];
      eachChunk(B, n, ohw, (b0, m, N) => {
        chunkPlanes(ins[0], b0 * O * ohw, dyc, O, ohw, m, true);
        sgemm(true, false, K, N, O, 1, w, K, dyc, N, 0, cols, N);
        col2imTaps(T, ohw, C, hw, cols, m, out, b0 * C * hw);
      });
    },
  };
}

/** conv2d_bwd_weight over chunks of images, summed in chunk order (see `Batched`). */
function batchedBwdWeight(S: Batched): CpuKernel {
  const { g, T, F, n, kk, hw, ohw } = S, { B, C, O } = g;
  if (F && O < C) {
    const K = O * kk;
    return {
      scratch: [K * n * hw, C * n * hw, K * C],
      run(ins, out, [cols, xc, dwf]) {
        eachChunk(B, n, hw, (b0, m, N) => {
          im2colTaps(F, hw, O, ohw, ins[1], b0 * O * ohw, m, cols);
          chunkPlanes(ins[0], b0 * C * hw, xc, C, hw, m, true);
          sgemm(false, true, K, C, N, 1, cols, N, xc, N, b0 === 0 ? 0 : 1, dwf, C);
        });
        // dwf[(o*kk + t')*C + c] is dW[o, c] at the flipped tap t' = kk-1-t.
        for (let o = 0; o < O; o++) {
          for (let c = 0; c < C; c++) {
            for (let t = 0; t < kk; t++) {
              out[(o * C + c) * kk + t] = dwf[(o * kk + kk - 1 - t) * C + c];
            }
          }
        }
      },
    };
  }
  const K = C * kk;
  return {
    scratch: [K * n * ohw, O * n * ohw],
    run(ins, out, [cols, dyc]) {
      eachChunk(B, n, ohw, (b0, m, N) => {
        im2colTaps(T, ohw, C, hw, ins[0], b0 * C * hw, m, cols);
        chunkPlanes(ins[1], b0 * O * ohw, dyc, O, ohw, m, true);
        sgemm(false, true, O, K, N, 1, dyc, N, cols, N, b0 === 0 ? 0 : 1, out, K);
      });
    },
  };
}

/** How a conv's GEMMs are formed: the input itself, im2col panels, or shifted GEMMs. */
type Method = "pointwise" | "im2col" | "same" | "batched" | { G: number };

/**
 * A method to use instead of the automatic choice (tests cover every path with it): "im2col",
 * "batched" (im2col over chunks of images, see `Batched`), "shifted" (one GEMM per tap) or
 * "shifted-rows" (one per kernel row, kx folded into the depth). Where shifted GEMMs do not apply
 * (stride > 1, or the data gradient of padding > d*(k-1)), im2col is used.
 */
export type ConvMethod = "im2col" | "batched" | "shifted" | "shifted-rows";

/**
 * Picks the method of one of the three conv2d ops (thresholds from OpenBLAS timings of the
 * U-Net's shapes on 2 cores). Shifted GEMMs need stride 1 (and, for the data gradient, padding
 * <= d*(k-1)); they also compute hp*wp columns per image for oh*ow outputs, so on small padded
 * images (8x8 with padding 1: 100 for 64) im2col's exact GEMM wins. Folding kx into the depth
 * (G = KW) makes deeper GEMMs, better for everything but a handful of channels on either side.
 * Convs that keep the width ("same" padding, the U-Net's 3x3s) use `sameConv` instead, whatever
 * the image size: exact GEMMs like im2col's with a KW-fold copy instead of KH*KW, and no crop or
 * dy repack; in the U-Net step it cut the conv time by about a fifth against the shifted GEMMs.
 * Before all of these, a batch of 8 or more maps under 64 outputs runs batched (`Batched`): in GT
 * U-Net's step it cut the window convs' times 1.2-7x against the per-image methods.
 */
function method(g: ConvGeom, op: "fwd" | "data" | "weight", force?: ConvMethod): Method {
  const { C, H, W, O, KH, KW, OH, OW, stride: s, padding: p, dilation: d } = g;
  if (force === "im2col") return "im2col";
  if (force === "batched" || (!force && batchedApplies(g))) return "batched";
  if (KH === 1 && KW === 1 && s === 1 && p === 0 && !force) return "pointwise";
  if (s !== 1) return "im2col";
  if (op === "data" && (p > d * (KH - 1) || p > d * (KW - 1))) return "im2col";
  if (force) return { G: force === "shifted" ? 1 : KW };
  if (sameApplies(KW, p, d)) return "same";
  const [hp, wp, outs] = op === "data"
    ? [OH + 2 * (d * (KH - 1) - p), OW + 2 * (d * (KW - 1) - p), H * W]
    : [H + 2 * p, W + 2 * p, OH * OW];
  if (hp * wp > 1.4 * outs) return "im2col";
  return { G: Math.min(C, O) < 8 ? 1 : KW };
}

/** conv2d forward: ins x [B,C,H,W], w [O,C,KH,KW], optional bias [O]. */
export function conv2dCpu(g: ConvGeom, hasBias: boolean, force?: ConvMethod): CpuKernel {
  const { B, C, H, W, O, KH, KW, OH, OW } = g;
  const K = C * KH * KW, ohw = OH * OW;
  const m = method(g, "fwd", force);
  if (m === "batched") return batchedConv(batched(g), hasBias);
  if (m === "same") {
    const p = g.padding, d = g.dilation;
    return sameConv(same(B, C, H, W, O, KH, KW, p, p, d), false, hasBias);
  }
  if (typeof m === "object") {
    const p = g.padding;
    return shiftedConv(shifted(B, C, H, W, O, [KH, KW], p, p, g.dilation, m.G), false, hasBias);
  }
  const pointwise = m === "pointwise";
  const P = patches(g);
  const xs = perImage(B, C * H * W), ys = perImage(B, O * ohw);
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
export function conv2dBwdDataCpu(g: ConvGeom, force?: ConvMethod): CpuKernel {
  const { B, C, H, W, O, KH, KW, OH, OW, padding: p, dilation: d } = g;
  const K = C * KH * KW, ohw = OH * OW;
  const m = method(g, "data", force);
  if (m === "batched") return batchedBwdData(batched(g));
  if (m === "same") {
    const S = same(B, O, OH, OW, C, KH, KW, d * (KH - 1) - p, d * (KW - 1) - p, d);
    return sameConv(S, true, false);
  }
  if (typeof m === "object") {
    // dx is the full correlation of dy with the flipped, channel-transposed weights: a stride-1
    // conv of dy with padding d*(k-1) - p.
    const S = shifted(B, O, OH, OW, C, [KH, KW], d * (KH - 1) - p, d * (KW - 1) - p, d, m.G);
    return shiftedConv(S, true, false);
  }
  const pointwise = m === "pointwise";
  const P = patches(g);
  const dys = perImage(B, O * ohw), dxs = perImage(B, C * H * W);
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
export function conv2dBwdWeightCpu(g: ConvGeom, force?: ConvMethod): CpuKernel {
  const { B, C, H, W, O, KH, KW, OH, OW } = g;
  const K = C * KH * KW, ohw = OH * OW;
  const m = method(g, "weight", force);
  if (m === "batched") return batchedBwdWeight(batched(g));
  if (m === "same") {
    const p = g.padding;
    return sameBwdWeight(same(B, C, H, W, O, KH, KW, p, p, g.dilation));
  }
  if (typeof m === "object") {
    const p = g.padding;
    return shiftedBwdWeight(shifted(B, C, H, W, O, [KH, KW], p, p, g.dilation, m.G));
  }
  const pointwise = m === "pointwise";
  const P = patches(g);
  const xs = perImage(B, C * H * W), dys = perImage(B, O * ohw);
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
  const xs = perImage(B, C * hw), ys = perImage(B, O * hw * f * f);
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
  const dys = perImage(B, off * hw), dxs = perImage(B, C * hw);
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
  const xs = perImage(B, C * hw), dys = perImage(B, off * hw);
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
