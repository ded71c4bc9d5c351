/**
 * The CPU backend's SGEMM and the GEMM-based conv kernels built on it:
 * - sgemm: the BLAS path (when a library loads) and the TypeScript fallback, each against a
 *   float64 triple loop, for every transpose combination, sizes that leave partial blocks
 *   everywhere, leading dimensions above the minimum and operands that are subarrays.
 *   Tolerance: an f32 sum of K products is off by at most ~K * u * sum|a*b| (u = 6e-8); the
 *   check allows 2e-6 * K * sum|terms|, which still catches any wrong index.
 * - conv2d and its gradients by every method (im2col, shifted GEMMs per tap or per kernel row,
 *   the automatic choice) against the op table's float64 reference, with outputs and scratch
 *   pre-filled with NaN so a value read before it is written shows. The op tests (conv_ops_test.ts)
 *   only reach the methods the automatic choice picks for their shapes.
 */
import { blasInfo, sgemm } from "../lib/backends/cpu/blas.ts";
import { sgemmTs } from "../lib/backends/cpu/gemm_ts.ts";
import {
  conv2dBwdDataCpu,
  conv2dBwdWeightCpu,
  conv2dCpu,
  type ConvMethod,
} from "../kernels/cpu/conv.ts";
import type { ConvGeom } from "../lib/graph/ops/conv.ts";
import { getOp } from "../lib/graph/mod.ts";
import type { CpuKernel } from "../kernels/cpu/types.ts";
import { fillNormal } from "../lib/rng/philox.ts";

type Gemm = typeof sgemm;

function normals(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  fillNormal(a, seed, 7, 0);
  return a;
}

/** Runs one product and compares every element of C, including the untouched padding. */
function check(
  name: string,
  gemm: Gemm,
  tA: boolean,
  tB: boolean,
  M: number,
  N: number,
  K: number,
  o: { alpha: number; beta: number; pad: number; nanC?: boolean },
) {
  const lda = (tA ? M : K) + o.pad, ldb = (tB ? K : N) + o.pad + 1, ldc = N + o.pad + 2;
  // Operands are views at an offset, so a backend that ignored byteOffset would fail.
  const A = normals((tA ? K : M) * lda + 5, 1).subarray(5);
  const B = normals((tB ? N : K) * ldb + 3, 2).subarray(3);
  const C = normals(M * ldc, 3);
  if (o.nanC) C.fill(NaN);
  const C0 = Float64Array.from(C);
  const a = (i: number, k: number) => (tA ? A[k * lda + i] : A[i * lda + k]);
  const b = (k: number, j: number) => (tB ? B[j * ldb + k] : B[k * ldb + j]);
  gemm(tA, tB, M, N, K, o.alpha, A, lda, B, ldb, o.beta, C, ldc);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < ldc; j++) {
      const got = C[i * ldc + j];
      if (j >= N) {
        if (!Object.is(got, Math.fround(C0[i * ldc + j]))) {
          throw new Error(`${name}: C[${i},${j}] outside the ${M}x${N} result was written`);
        }
        continue;
      }
      let s = 0, mag = 0;
      for (let k = 0; k < K; k++) {
        s += a(i, k) * b(k, j);
        mag += Math.abs(a(i, k) * b(k, j));
      }
      const c0 = o.beta === 0 ? 0 : o.beta * C0[i * ldc + j];
      const want = o.alpha * s + c0;
      const tol = 2e-6 * (K + 1) * (Math.abs(o.alpha) * mag + Math.abs(c0)) + 1e-6;
      if (!(Math.abs(got - want) <= tol)) {
        throw new Error(`${name}: C[${i},${j}] = ${got}, expected ${want} (tol ${tol})`);
      }
    }
  }
}

const SIZES: [number, number, number][] = [[1, 1, 1], [7, 13, 5], [65, 33, 129]];
const info = blasInfo();

for (const [impl, gemm] of [["blas", sgemm], ["ts", sgemmTs]] as [string, Gemm][]) {
  for (const [M, N, K] of SIZES) {
    Deno.test({
      name: `sgemm [${impl}] ${M}x${N}x${K}, all transposes, padded leading dimensions`,
      // With no library, sgemm itself is the fallback, which the [ts] tests cover.
      ignore: impl === "blas" && info.library === null,
      fn: () => {
        for (const tA of [false, true]) {
          for (const tB of [false, true]) {
            const n = `${impl} ${tA ? "T" : "N"}${tB ? "T" : "N"} ${M}x${N}x${K}`;
            check(`${n} alpha 1 beta 0`, gemm, tA, tB, M, N, K, { alpha: 1, beta: 0, pad: 0 });
            check(`${n} alpha -0.75 beta 0.5`, gemm, tA, tB, M, N, K, {
              alpha: -0.75,
              beta: 0.5,
              pad: 3,
            });
            check(`${n} beta 1`, gemm, tA, tB, M, N, K, { alpha: 2, beta: 1, pad: 1 });
            // beta = 0 must not read C (BLAS semantics): NaN there must not leak through.
            check(`${n} beta 0 over NaN`, gemm, tA, tB, M, N, K, {
              alpha: 1,
              beta: 0,
              pad: 2,
              nanC: true,
            });
          }
        }
      },
    });
  }
}

Deno.test("sgemm [ts] deeper than one packed block (K = 600, N = 1100)", () => {
  check("ts 9x1100x600", sgemmTs, false, true, 9, 1100, 600, { alpha: 1, beta: 0.25, pad: 1 });
  check("ts 70x5x600", sgemmTs, true, false, 70, 5, 600, { alpha: 1, beta: 0, pad: 0 });
});

Deno.test("sgemm rejects operands too short for their shape", () => {
  const a = new Float32Array(6), c = new Float32Array(4);
  const bad: [string, () => void][] = [
    [
      "B of 5 values for 3x2",
      () => sgemm(false, false, 2, 2, 3, 1, a, 3, a.subarray(1), 2, 0, c, 2),
    ],
    ["lda below the row length", () => sgemm(false, false, 2, 2, 3, 1, a, 2, a, 2, 0, c, 2)],
    ["C of 4 values with ldc 3", () => sgemm(false, false, 2, 2, 3, 1, a, 3, a, 2, 0, c, 3)],
  ];
  for (const [what, f] of bad) {
    let threw = false;
    try {
      f();
    } catch (e) {
      threw = e instanceof RangeError;
    }
    if (!threw) throw new Error(`${what}: expected a RangeError`);
  }
});

Deno.test("sgemm with K = 0 scales C by beta", () => {
  const c = Float32Array.from([1, 2, 3, 4]);
  sgemm(false, false, 2, 2, 0, 1, new Float32Array(0), 1, new Float32Array(0), 2, 0.5, c, 2);
  if (c.join() !== "0.5,1,1.5,2") throw new Error(`got ${c.join()}`);
});

Deno.test({
  name: "BLAS is loaded (LVIT_REQUIRE_BLAS=1, as CI sets)",
  ignore: Deno.env.get("LVIT_REQUIRE_BLAS") !== "1",
  fn: () => {
    if (info.library === null) {
      throw new Error(
        "LVIT_REQUIRE_BLAS=1 but no BLAS library loaded (LVIT_BLAS=none, or see the 'lvit:' line on stderr)",
      );
    }
  },
});

// ---------------------------------------------------------------------------------------------
// Conv kernels by method.

/** [B, C, H, W, O, KH, KW, stride, padding, dilation] */
const CONVS: number[][] = [
  [2, 3, 9, 7, 5, 3, 3, 1, 1, 1],
  [2, 8, 10, 12, 9, 3, 3, 1, 1, 1],
  [2, 16, 12, 11, 16, 3, 3, 1, 1, 1],
  [1, 3, 9, 9, 6, 3, 3, 1, 2, 2], // dilation 2
  [2, 2, 6, 7, 3, 3, 1, 1, 1, 1], // 3x1: the data gradient's padding would be negative in x
  [1, 2, 5, 6, 3, 2, 3, 1, 1, 1], // 2x3: the data gradient pads 0 in y and 1 in x
  [1, 1, 3, 4, 2, 3, 3, 1, 2, 1], // padding 2 > the 3x3 kernel's reach
  [1, 4, 7, 5, 3, 5, 5, 1, 2, 1],
  [3, 4, 1, 1, 5, 3, 3, 1, 1, 1], // 1x1 images
  [2, 3, 5, 4, 4, 1, 1, 1, 0, 1], // pointwise
  [1, 3, 5, 4, 2, 1, 1, 1, 1, 1], // 1x1 kernel, padded
  [2, 3, 9, 8, 5, 3, 3, 2, 1, 1], // stride 2: im2col whatever is asked
  [9, 3, 7, 6, 4, 3, 3, 2, 1, 1], // many small maps, stride 2: batched by default
  [250, 512, 3, 3, 2, 3, 3, 1, 1, 1], // batched in chunks of 101, 101 and 48 images
];

function runKernel(k: CpuKernel, ins: Float32Array[], outSize: number): Float32Array {
  const fresh = () => (k.scratch ?? []).map((n) => new Float32Array(Math.max(1, n)).fill(NaN));
  const out = new Float32Array(outSize).fill(NaN);
  k.run(ins, out, fresh());
  // A second run on other scratch buffers must rebuild its cached views and agree.
  const again = new Float32Array(outSize).fill(NaN);
  k.run(ins, again, fresh());
  for (let i = 0; i < outSize; i++) {
    if (!Object.is(out[i], again[i])) throw new Error(`second run differs at ${i}`);
  }
  return out;
}

/** `got` within f32 rounding of `want`, for sums of `K` products of unit-normal values: the error
 * of an f32 sum grows with its length and its order, which the BLAS kernel set decides
 * (SkylakeX's is 2.6e-4 off at K = 4608, past a bound that ignored K). */
function compare(what: string, got: Float32Array, want: Float64Array, K: number) {
  if (got.length !== want.length) throw new Error(`${what}: ${got.length} != ${want.length}`);
  for (let i = 0; i < got.length; i++) {
    if (!(Math.abs(got[i] - want[i]) <= 5e-5 + 1e-5 * Math.abs(want[i]) + 1e-7 * K)) {
      throw new Error(`${what}: element ${i} is ${got[i]}, expected ${want[i]}`);
    }
  }
}

for (
  const force of [
    undefined,
    "im2col",
    "batched",
    "shifted",
    "shifted-rows",
  ] as (ConvMethod | undefined)[]
) {
  Deno.test(`conv2d cpu kernels, method ${force ?? "auto"}, against the float64 reference`, () => {
    for (const [n, c] of CONVS.entries()) {
      const [B, C, H, W, O, KH, KW, stride, padding, dilation] = c;
      const out = (k: number, i: number) =>
        Math.floor((i + 2 * padding - dilation * (k - 1) - 1) / stride) + 1;
      const g: ConvGeom = {
        B,
        C,
        H,
        W,
        O,
        KH,
        KW,
        OH: out(KH, H),
        OW: out(KW, W),
        stride,
        padding,
        dilation,
      };
      const attrs = { stride, padding, dilation };
      const xs = [B, C, H, W], ws = [O, C, KH, KW], ys = [B, O, g.OH, g.OW];
      const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
      const x = normals(size(xs), 10 + n), w = normals(size(ws), 20 + n);
      const bias = normals(O, 30 + n), dy = normals(size(ys), 40 + n);
      const f64 = (a: Float32Array) => Float64Array.from(a);
      const tag = `${force ?? "auto"} [${c}]`;

      const y = getOp("conv2d").ref([f64(x), f64(w), f64(bias)], [xs, ws, [O]], attrs, ys);
      compare(
        `fwd+bias ${tag}`,
        runKernel(conv2dCpu(g, true, force), [x, w, bias], size(ys)),
        y,
        C * KH * KW,
      );
      const y0 = getOp("conv2d").ref([f64(x), f64(w)], [xs, ws], attrs, ys);
      compare(
        `fwd ${tag}`,
        runKernel(conv2dCpu(g, false, force), [x, w], size(ys)),
        y0,
        C * KH * KW,
      );

      const dataAttrs = { ...attrs, inShape: xs };
      const dx = getOp("conv2d_bwd_data").ref([f64(dy), f64(w)], [ys, ws], dataAttrs, xs);
      compare(
        `data ${tag}`,
        runKernel(conv2dBwdDataCpu(g, force), [dy, w], size(xs)),
        dx,
        O * KH * KW,
      );

      const wAttrs = { ...attrs, wShape: ws };
      const dw = getOp("conv2d_bwd_weight").ref([f64(x), f64(dy)], [xs, ys], wAttrs, ws);
      compare(
        `weight ${tag}`,
        runKernel(conv2dBwdWeightCpu(g, force), [x, dy], size(ws)),
        dw,
        B * g.OH * g.OW,
      );
    }
  });
}
