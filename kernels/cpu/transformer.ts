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
import { partOf, ranged } from "./parts.ts";
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
 * input strides of those axes. The two innermost axes are tight loops (a block); an odometer over
 * the outer axes moves the source offset incrementally. Two levels, not one: GT U-Net's window
 * permutes have innermost axes of 4 or 16, where an odometer step per innermost run cost ~3-5 ns
 * per element. Parts (threads) take ranges of blocks.
 */
export function permuteCpu(sizes: number[], srcStrides: number[]): CpuKernel {
  // A leading axis of 1 makes every permutation at least two axes deep.
  const sz = sizes.length >= 2 ? sizes : [1, ...sizes];
  const st = srcStrides.length >= 2 ? srcStrides : [0, ...srcStrides];
  const r = sz.length;
  if (sizes.length === 0) return { run: ([x], out) => void (out[0] = x[0]) };
  const n = sz.reduce((a, b) => a * b, 1);
  const n1 = sz[r - 1], s1 = st[r - 1], n2 = sz[r - 2], s2 = st[r - 2];
  const block = n1 * n2;
  const blocks = n / block;
  /** The source offset of block `k`: its coordinates on axes 0 .. r-3 times their strides. */
  const startOf = (k: number, cnt: Int32Array): number => {
    let src = 0;
    for (let d = r - 3; d >= 0; d--) {
      cnt[d] = k % sz[d];
      k = Math.floor(k / sz[d]);
      src += cnt[d] * st[d];
    }
    return src;
  };
  // Blocks [k0, k1) with the odometer over axes 0 .. r-3 (each thread its own counters).
  const copy = (x: Float32Array, out: Float32Array, k0: number, k1: number, cnt: Int32Array) => {
    let src = startOf(k0, cnt);
    for (let o = k0 * block; o < k1 * block; o += block) {
      if (s1 === 1) {
        for (let i = 0, a = src, d = o; i < n2; i++, a += s2, d += n1) {
          for (let j = 0; j < n1; j++) out[d + j] = x[a + j];
        }
      } else {
        for (let i = 0, a = src, d = o; i < n2; i++, a += s2, d += n1) {
          for (let j = 0, b = a; j < n1; j++, b += s1) out[d + j] = x[b];
        }
      }
      for (let d = r - 3; d >= 0; d--) {
        cnt[d]++;
        src += st[d];
        if (cnt[d] < sz[d]) break;
        src -= cnt[d] * st[d];
        cnt[d] = 0;
      }
    }
  };
  const counters = new Int32Array(r);
  // Copies, so parts on different threads give run's bits whatever the split.
  return {
    run: ([x], out) => copy(x, out, 0, blocks, counters),
    runPart: ([x], out, _s, part, parts) => copy(x, out, ...partOf(blocks, part, parts), counters),
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
