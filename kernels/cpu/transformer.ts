/**
 * CPU kernels of the transformer ops. Matmuls are sgemm calls (blas.ts), one per batch unless
 * the batch folds into the rows of one call; the rest are plain loops over rows with float64
 * accumulators in a fixed order. Every `run` is allocation-free: subarray views of the planned
 * buffers are made on the first run and reused (the executor passes the same buffers every
 * run), and accumulators that outlive a loop are allocated when the kernel is built.
 */
import type { CpuKernel } from "./types.ts";
import type { MatmulGeom } from "../../lib/graph/ops/transformer.ts";
import { sgemm } from "../../lib/backends/cpu/blas.ts";
import { ranged } from "./parts.ts";
import { expF64 } from "./exp.ts";
import { SOFTMAX_CHUNK, type SoftmaxRows, softmaxRowsWasm } from "./softmax_wasm.ts";

/** Views of `count` consecutive blocks of `size` floats (stride 0: the whole buffer each time). */
class BatchViews {
  private base: Float32Array | null = null;
  private views: Float32Array[] = [];

  constructor(
    private readonly count: number,
    private readonly stride: number,
    private readonly size: number,
  ) {}

  of(a: Float32Array): Float32Array[] {
    if (a !== this.base) {
      this.base = a;
      this.views = [];
      for (let b = 0; b < this.count; b++) {
        this.views.push(this.stride ? a.subarray(b * this.stride, b * this.stride + this.size) : a);
      }
    }
    return this.views;
  }
}

/** Batched or plain matmul through sgemm. */
export function matmulCpu(g: MatmulGeom): CpuKernel {
  const { B, M, N, K, transA, transB } = g;
  const lda = transA ? M : K;
  const ldb = transB ? K : N;
  // A [B, M, K] times a shared B is one [B*M, K] x [K, N] product: the rows of all batches are
  // contiguous in A and in the output.
  if (B === 1 || (!g.batchB && !transA)) {
    return {
      run: ([a, b], out) => sgemm(transA, transB, B * M, N, K, 1, a, lda, b, ldb, 0, out, N),
    };
  }
  const va = new BatchViews(B, g.batchA ? M * K : 0, M * K);
  const vb = new BatchViews(B, g.batchB ? K * N : 0, K * N);
  const vo = new BatchViews(B, M * N, M * N);
  return {
    run: ([a, b], out) => {
      const as = va.of(a), bs = vb.of(b), os = vo.of(out);
      for (let i = 0; i < B; i++) {
        sgemm(transA, transB, M, N, K, 1, as[i], lda, bs[i], ldb, 0, os[i], N);
      }
    },
  };
}

/**
 * out[i] = x[offset(i)] for a permutation given as the output's (collapsed) axis sizes and the
 * input strides of those axes. The innermost axis is a tight loop; an odometer over the outer
 * axes moves the source offset incrementally.
 */
export function permuteCpu(sizes: number[], srcStrides: number[]): CpuKernel {
  const r = sizes.length;
  if (r === 0) return { run: ([x], out) => void (out[0] = x[0]) };
  const n = sizes.reduce((a, b) => a * b, 1);
  const inner = sizes[r - 1];
  const ist = srcStrides[r - 1];
  const cnt = new Int32Array(r);
  const step = (src: number): number => {
    for (let d = r - 2; d >= 0; d--) {
      cnt[d]++;
      src += srcStrides[d];
      if (cnt[d] < sizes[d]) return src;
      src -= cnt[d] * srcStrides[d];
      cnt[d] = 0;
    }
    return src;
  };
  // Two monomorphic copies: a contiguous inner run or a strided one.
  if (ist === 1) {
    return {
      run: ([x], out) => {
        cnt.fill(0);
        let src = 0;
        for (let o = 0; o < n; o += inner) {
          for (let j = 0; j < inner; j++) out[o + j] = x[src + j];
          src = step(src);
        }
      },
    };
  }
  return {
    run: ([x], out) => {
      cnt.fill(0);
      let src = 0;
      for (let o = 0; o < n; o += inner) {
        for (let j = 0, s = src; j < inner; j++, s += ist) out[o + j] = x[s];
        src = step(src);
      }
    },
  };
}

/**
 * Softmax of rows [r0, r1) of L values (max-subtracted, exp.ts's exp), sums in float64: the
 * formula softmax_wasm.ts runs, kept as its reference and for rows longer than its chunk.
 */
export const softmaxRowsJs: SoftmaxRows = (x, out, r0, r1, L) => {
  for (let r = r0; r < r1; r++) {
    const base = r * L, end = base + L;
    let mx = x[base];
    for (let j = base + 1; j < end; j++) mx = Math.max(mx, x[j]);
    let s = 0;
    for (let j = base; j < end; j++) {
      const e = expF64(x[j] - mx);
      out[j] = e;
      s += e;
    }
    const inv = 1 / s;
    for (let j = base; j < end; j++) out[j] *= inv;
  }
};

/** Softmax over rows of L values: softmax_wasm.ts (softmaxRowsJs's bits) up to its chunk size. */
export function softmaxCpu(R: number, L: number): CpuKernel {
  const rows = L <= SOFTMAX_CHUNK ? softmaxRowsWasm : softmaxRowsJs;
  return ranged(R, ([x], out, r0, r1) => rows(x, out, r0, r1, L));
}

/** dx = y * (dy - sum(dy * y)) per row of L values. */
export function softmaxGradCpu(R: number, L: number): CpuKernel {
  return ranged(R, ([y, dy], out, r0, r1) => {
    for (let r = r0; r < r1; r++) {
      const base = r * L, end = base + L;
      let s = 0;
      for (let j = base; j < end; j++) s += dy[j] * y[j];
      for (let j = base; j < end; j++) out[j] = y[j] * (dy[j] - s);
    }
  });
}
