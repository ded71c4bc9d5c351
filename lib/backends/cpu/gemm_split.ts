/**
 * One GEMM on several threads (threads.ts): each thread computes a block of C's rows (when
 * M >= N) or of its columns, over the whole depth K with a single-threaded BLAS. The depth is
 * never split, block edges fall on multiples of 64, which every BLAS kernel's register tile
 * divides, and no block is small enough for a BLAS's small-matrix path, so each element of C is
 * the same sum in the same order as in the unsplit call: results do not depend on the number of
 * threads (tests/cpu_threads_test.ts checks it on the BLAS in use).
 */

/** The arguments of one row-major sgemm call (blas.ts). */
export interface GemmArgs {
  /** A is stored K x M (transposed). */
  transA: boolean;
  /** B is stored N x K (transposed). */
  transB: boolean;
  /** Rows of C. */
  M: number;
  /** Columns of C. */
  N: number;
  /** The depth: columns of op(A), rows of op(B). */
  K: number;
  /** Scale of the product. */
  alpha: number;
  /** The left operand, row-major with leading dimension `lda`. */
  A: Float32Array;
  /** Elements between consecutive rows of A as stored. */
  lda: number;
  /** The right operand, row-major with leading dimension `ldb`. */
  B: Float32Array;
  /** Elements between consecutive rows of B as stored. */
  ldb: number;
  /** Scale of C's previous contents (0: they are not read). */
  beta: number;
  /** The result, row-major with leading dimension `ldc`. */
  C: Float32Array;
  /** Elements between consecutive rows of C. */
  ldc: number;
}

/** Block edges fall on multiples of this. */
const ALIGN = 64;
/**
 * Every block has more than this many multiply-adds (M N K). OpenBLAS 0.3.21's SkylakeX kernels
 * take a GEMM of at most 100^3 to a small-matrix kernel that sums in another order than the
 * blocked one, so a call just above that size split into blocks at or under it changed the last
 * bits (M 128, N 4, K 2304 in LViT-T's backward: 1.9e-6). Smaller blocks (tens of
 * microseconds of work) gain little from another thread anyway.
 */
const MIN_BLOCK_MNK = 100 ** 3;

/**
 * Into how many blocks (1: none) a GEMM is split on `threads` threads: as many as there are
 * threads while each block (gemmSlice) keeps at least ALIGN rows or columns and more than
 * MIN_BLOCK_MNK multiply-adds.
 */
export function gemmParts(M: number, N: number, K: number, threads: number): number {
  const side = M >= N ? M : N, other = M >= N ? N : M;
  for (let parts = Math.min(threads, Math.floor(side / ALIGN)); parts > 1; parts--) {
    let smallest = side;
    for (let p = 0; p < parts; p++) {
      smallest = Math.min(smallest, edge(side, p + 1, parts) - edge(side, p, parts));
    }
    if (smallest * other * K > MIN_BLOCK_MNK) return parts;
  }
  return 1;
}

/** Start of block `part` of `parts` along a side of `n`, on a multiple of ALIGN. */
function edge(n: number, part: number, parts: number): number {
  return part >= parts ? n : Math.min(n, Math.round((n * part) / parts / ALIGN) * ALIGN);
}

/** The call that computes block `part` of `parts` of C (operands offset, M or N narrowed). */
export function gemmSlice(g: GemmArgs, part: number, parts: number): GemmArgs {
  if (g.M >= g.N) {
    const r0 = edge(g.M, part, parts), r1 = edge(g.M, part + 1, parts);
    return {
      ...g,
      M: r1 - r0,
      A: g.A.subarray(g.transA ? r0 : r0 * g.lda),
      C: g.C.subarray(r0 * g.ldc),
    };
  }
  const c0 = edge(g.N, part, parts), c1 = edge(g.N, part + 1, parts);
  return {
    ...g,
    N: c1 - c0,
    B: g.B.subarray(g.transB ? c0 * g.ldb : c0),
    C: g.C.subarray(c0),
  };
}
