/**
 * kernels/cpu/conv_taps_wasm.ts, the WebAssembly data movement of the batched convs (conv.ts
 * `Batched`), against loops written from each function's definition, bit for bit: im2col and
 * col2im through tap tables (padding taps included), the tap products added back shifted with and
 * without a bias, and the moves between per-image planes and the chunk layout. Inputs carry
 * signed zeros, which a sum that added 0 for a padding tap instead of skipping it would flip.
 * The conv kernels that use these are checked against the float64 reference in
 * tests/cpu_gemm_test.ts (method "batched").
 */
import { addTaps, chunkPlanes, col2imTaps, im2colTaps } from "../kernels/cpu/conv_taps_wasm.ts";
import { assertEquals } from "./assert.ts";

let st = 5; // an LCG: varied inputs, not good random numbers
const next = () => (st = (Math.imul(st, 1664525) + 1013904223) >>> 0);
const values = (n: number) =>
  Float32Array.from({ length: n }, (_, i) => (i % 7 === 0 ? -0 : next() / 2 ** 32 - 0.5));
const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

/** The tap table of conv.ts `taps`: input offset read by tap t at output q, or -1. */
function taps(H: number, W: number, K: number, s: number, p: number, d: number) {
  const OH = Math.floor((H + 2 * p - d * (K - 1) - 1) / s) + 1;
  const OW = Math.floor((W + 2 * p - d * (K - 1) - 1) / s) + 1;
  const T: number[] = [];
  for (let ky = 0; ky < K; ky++) {
    for (let kx = 0; kx < K; kx++) {
      for (let oy = 0; oy < OH; oy++) {
        for (let ox = 0; ox < OW; ox++) {
          const iy = oy * s - p + ky * d, ix = ox * s - p + kx * d;
          T.push(iy >= 0 && iy < H && ix >= 0 && ix < W ? iy * W + ix : -1);
        }
      }
    }
  }
  return { T: Int32Array.from(T), ohw: OH * OW, hw: H * W, kk: K * K };
}

const GEOMS = [
  [4, 4, 3, 1, 1, 1], // GT U-Net's windows
  [5, 3, 3, 2, 1, 1], // stride 2
  [6, 7, 5, 1, 2, 1], // 5x5
  [7, 7, 3, 1, 2, 2], // dilation 2
];

Deno.test("conv taps (WebAssembly): im2col, col2im, tap sums and chunk moves equal their definitions bit for bit", () => {
  for (const [H, W, K, s, p, d] of GEOMS) {
    const { T, ohw, hw, kk } = taps(H, W, K, s, p, d);
    const C = 3, O = 5, m = 7, lead = 2; // m images starting after `lead` others
    const N = m * ohw;
    // im2col: cols[(c*kk + t)*N + j*ohw + q] = x[j, c, T[t, q]] or 0.
    const x = values((lead + m) * C * hw);
    const want = new Float32Array(C * kk * N);
    for (let j = 0; j < m; j++) {
      for (let c = 0; c < C; c++) {
        for (let t = 0; t < kk; t++) {
          for (let q = 0; q < ohw; q++) {
            const i = T[t * ohw + q];
            want[(c * kk + t) * N + j * ohw + q] = i < 0 ? 0 : x[((lead + j) * C + c) * hw + i];
          }
        }
      }
    }
    const cols = new Float32Array(C * kk * N + 3).fill(9);
    im2colTaps(T, ohw, C, hw, x, lead * C * hw, m, cols);
    assertEquals(bits(cols.subarray(0, want.length)), bits(want));
    assertEquals(cols[want.length], 9);

    // col2im: planes zeroed, then per element the panel entries in t, q order.
    const panel = values(C * kk * N);
    const dx = new Float32Array((lead + m) * C * hw);
    for (let j = 0; j < m; j++) {
      for (let c = 0; c < C; c++) {
        const at = ((lead + j) * C + c) * hw;
        for (let t = 0; t < kk; t++) {
          for (let q = 0; q < ohw; q++) {
            const i = T[t * ohw + q];
            if (i >= 0) dx[at + i] += panel[(c * kk + t) * N + j * ohw + q];
          }
        }
      }
    }
    const got = new Float32Array(dx.length).fill(9);
    col2imTaps(T, ohw, C, hw, panel, m, got, lead * C * hw);
    assertEquals(bits(got.subarray(lead * C * hw)), bits(dx.subarray(lead * C * hw)));
    assertEquals(got[0], 9);

    // addTaps: y[j, o, q] = bias[o] + the sum over t of z[(t*O + o)*M + j*hw + T[t, q]], M = m*hw.
    {
      const M = m * hw, z = values(kk * O * M), bias = values(O);
      for (const b of [bias, undefined]) {
        const y = new Float32Array((lead + m) * O * ohw);
        for (let j = 0; j < m; j++) {
          for (let o = 0; o < O; o++) {
            const at = ((lead + j) * O + o) * ohw;
            for (let q = 0; q < ohw; q++) y[at + q] = b ? b[o] : 0;
            for (let t = 0; t < kk; t++) {
              for (let q = 0; q < ohw; q++) {
                const i = T[t * ohw + q];
                if (i >= 0) y[at + q] += z[(t * O + o) * M + j * hw + i];
              }
            }
          }
        }
        const gy = new Float32Array(y.length);
        addTaps(T, ohw, O, hw, z, m, gy, lead * O * ohw, b);
        assertEquals(bits(gy.subarray(lead * O * ohw)), bits(y.subarray(lead * O * ohw)));
      }
    }

    // chunk moves: chunk[r*M + j*plane + q] = planes[j, r, q], and back with a bias added.
    const R = 4, plane = hw, M = m * plane;
    const planes = values((lead + m) * R * plane);
    const chunk = new Float32Array(R * M);
    chunkPlanes(planes, lead * R * plane, chunk, R, plane, m, true);
    const wantChunk = new Float32Array(R * M);
    for (let j = 0; j < m; j++) {
      for (let r = 0; r < R; r++) {
        for (let q = 0; q < plane; q++) {
          wantChunk[r * M + j * plane + q] = planes[((lead + j) * R + r) * plane + q];
        }
      }
    }
    assertEquals(bits(chunk), bits(wantChunk));
    const bias = values(R);
    for (const b of [bias, undefined]) {
      const back = new Float32Array(planes.length).fill(9);
      chunkPlanes(back, lead * R * plane, chunk, R, plane, m, false, b);
      const wantBack = new Float32Array(m * R * plane);
      for (let j = 0; j < m; j++) {
        for (let r = 0; r < R; r++) {
          for (let q = 0; q < plane; q++) {
            wantBack[(j * R + r) * plane + q] = chunk[r * M + j * plane + q] + (b ? b[r] : 0);
          }
        }
      }
      assertEquals(bits(back.subarray(lead * R * plane)), bits(wantBack));
      assertEquals(back[0], 9);
    }
  }
});
