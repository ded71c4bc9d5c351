/**
 * Pure TypeScript SGEMM, the fallback when no BLAS library loads. Goto-style blocking: a KC x NC
 * block of op(B) and an MC x KC block of op(A) are packed into contiguous micro-panels (which
 * also removes the transpose and stride cases from the hot loop), then a 4x4 register-tile
 * kernel walks both panels sequentially. Accumulation is in float64 (JS numbers), rounded to
 * f32 once per block when added into C.
 */

const MR = 4;
const NR = 4;
/** Depth of a packed block: MR x KC and KC x NR micro-panels (4 KiB each) stay in L1. */
const KC = 256;
/** Rows of op(A) per packed block (64 KiB, L2). */
const MC = 64;
/** Columns of op(B) per packed block (512 KiB, L2/L3); a multiple of NR. */
const NC = 512;

// Packing buffers, allocated on first use and reused: a GEMM call allocates nothing.
let packA: Float32Array | null = null;
let packB: Float32Array | null = null;
const edge = new Float64Array(MR * NR);

/** Scales rows [0, M) x [0, N) of C by beta; beta = 0 overwrites (BLAS semantics). */
function scaleC(M: number, N: number, beta: number, C: Float32Array, ldc: number): void {
  if (beta === 1) return;
  for (let i = 0; i < M; i++) {
    const r = i * ldc;
    if (beta === 0) C.fill(0, r, r + N);
    else for (let j = r; j < r + N; j++) C[j] *= beta;
  }
}

/** Packs op(B)[pc:pc+kc, jc:jc+nc] into NR-wide panels, zero-padded to a multiple of NR. */
function packBlockB(
  transB: boolean,
  B: Float32Array,
  ldb: number,
  pc: number,
  kc: number,
  jc: number,
  nc: number,
  dst: Float32Array,
): void {
  for (let p = 0; p * NR < nc; p++) {
    const j0 = jc + p * NR;
    const nr = Math.min(NR, nc - p * NR);
    const base = p * kc * NR;
    if (!transB) {
      for (let k = 0; k < kc; k++) {
        const src = (pc + k) * ldb + j0;
        const d = base + k * NR;
        for (let jj = 0; jj < nr; jj++) dst[d + jj] = B[src + jj];
        for (let jj = nr; jj < NR; jj++) dst[d + jj] = 0;
      }
    } else {
      // op(B)(k, j) = B[j, k]: each column of the panel is a contiguous row of B.
      for (let jj = 0; jj < NR; jj++) {
        if (jj < nr) {
          const src = (j0 + jj) * ldb + pc;
          for (let k = 0; k < kc; k++) dst[base + k * NR + jj] = B[src + k];
        } else {
          for (let k = 0; k < kc; k++) dst[base + k * NR + jj] = 0;
        }
      }
    }
  }
}

/** Packs alpha * op(A)[ic:ic+mc, pc:pc+kc] into MR-tall panels, zero-padded to MR rows. */
function packBlockA(
  transA: boolean,
  alpha: number,
  A: Float32Array,
  lda: number,
  ic: number,
  mc: number,
  pc: number,
  kc: number,
  dst: Float32Array,
): void {
  for (let q = 0; q * MR < mc; q++) {
    const i0 = ic + q * MR;
    const mr = Math.min(MR, mc - q * MR);
    const base = q * kc * MR;
    if (transA) {
      // op(A)(i, k) = A[k, i]: a panel row of MR values is contiguous in A.
      for (let k = 0; k < kc; k++) {
        const src = (pc + k) * lda + i0;
        const d = base + k * MR;
        for (let ii = 0; ii < mr; ii++) dst[d + ii] = alpha * A[src + ii];
        for (let ii = mr; ii < MR; ii++) dst[d + ii] = 0;
      }
    } else {
      for (let ii = 0; ii < MR; ii++) {
        if (ii < mr) {
          const src = (i0 + ii) * lda + pc;
          for (let k = 0; k < kc; k++) dst[base + k * MR + ii] = alpha * A[src + k];
        } else {
          for (let k = 0; k < kc; k++) dst[base + k * MR + ii] = 0;
        }
      }
    }
  }
}

/**
 * C[ci.., cj..] += Ap (MR x kc panel) * Bp (kc x NR panel), keeping the 4x4 tile in locals so
 * each step of k costs 8 loads for 16 multiply-adds. Only mr x nr of the tile is stored.
 */
function microKernel(
  kc: number,
  Ap: Float32Array,
  a: number,
  Bp: Float32Array,
  b: number,
  C: Float32Array,
  c: number,
  ldc: number,
  mr: number,
  nr: number,
): void {
  let c00 = 0, c01 = 0, c02 = 0, c03 = 0;
  let c10 = 0, c11 = 0, c12 = 0, c13 = 0;
  let c20 = 0, c21 = 0, c22 = 0, c23 = 0;
  let c30 = 0, c31 = 0, c32 = 0, c33 = 0;
  const end = a + kc * MR;
  for (; a < end; a += MR, b += NR) {
    const a0 = Ap[a], a1 = Ap[a + 1], a2 = Ap[a + 2], a3 = Ap[a + 3];
    const b0 = Bp[b], b1 = Bp[b + 1], b2 = Bp[b + 2], b3 = Bp[b + 3];
    c00 += a0 * b0;
    c01 += a0 * b1;
    c02 += a0 * b2;
    c03 += a0 * b3;
    c10 += a1 * b0;
    c11 += a1 * b1;
    c12 += a1 * b2;
    c13 += a1 * b3;
    c20 += a2 * b0;
    c21 += a2 * b1;
    c22 += a2 * b2;
    c23 += a2 * b3;
    c30 += a3 * b0;
    c31 += a3 * b1;
    c32 += a3 * b2;
    c33 += a3 * b3;
  }
  if (mr === MR && nr === NR) {
    C[c] += c00;
    C[c + 1] += c01;
    C[c + 2] += c02;
    C[c + 3] += c03;
    c += ldc;
    C[c] += c10;
    C[c + 1] += c11;
    C[c + 2] += c12;
    C[c + 3] += c13;
    c += ldc;
    C[c] += c20;
    C[c + 1] += c21;
    C[c + 2] += c22;
    C[c + 3] += c23;
    c += ldc;
    C[c] += c30;
    C[c + 1] += c31;
    C[c + 2] += c32;
    C[c + 3] += c33;
    return;
  }
  // Edge tile: the padded rows/columns computed zeros that must not be written.
  edge[0] = c00, edge[1] = c01, edge[2] = c02, edge[3] = c03;
  edge[4] = c10, edge[5] = c11, edge[6] = c12, edge[7] = c13;
  edge[8] = c20, edge[9] = c21, edge[10] = c22, edge[11] = c23;
  edge[12] = c30, edge[13] = c31, edge[14] = c32, edge[15] = c33;
  for (let i = 0; i < mr; i++) {
    for (let j = 0; j < nr; j++) C[c + i * ldc + j] += edge[i * NR + j];
  }
}

/**
 * C = alpha * op(A) * op(B) + beta * C in pure TypeScript; same contract as `sgemm` in blas.ts
 * (row-major, A stored K x M when transA, B stored N x K when transB). Operands are not
 * bounds-checked here beyond what typed arrays do; out-of-range reads yield NaN.
 */
export function sgemmTs(
  transA: boolean,
  transB: boolean,
  M: number,
  N: number,
  K: number,
  alpha: number,
  A: Float32Array,
  lda: number,
  B: Float32Array,
  ldb: number,
  beta: number,
  C: Float32Array,
  ldc: number,
): void {
  if (M <= 0 || N <= 0) return;
  scaleC(M, N, beta, C, ldc);
  if (K <= 0 || alpha === 0) return;
  packA ??= new Float32Array(MC * KC);
  packB ??= new Float32Array(KC * NC);
  const pa = packA, pb = packB;
  for (let jc = 0; jc < N; jc += NC) {
    const nc = Math.min(NC, N - jc);
    for (let pc = 0; pc < K; pc += KC) {
      const kc = Math.min(KC, K - pc);
      packBlockB(transB, B, ldb, pc, kc, jc, nc, pb);
      for (let ic = 0; ic < M; ic += MC) {
        const mc = Math.min(MC, M - ic);
        packBlockA(transA, alpha, A, lda, ic, mc, pc, kc, pa);
        for (let jr = 0; jr < nc; jr += NR) {
          const nr = Math.min(NR, nc - jr);
          const bOff = (jr / NR) * kc * NR;
          for (let ir = 0; ir < mc; ir += MR) {
            const mr = Math.min(MR, mc - ir);
            const cOff = (ic + ir) * ldc + jc + jr;
            microKernel(kc, pa, (ir / MR) * kc * MR, pb, bOff, C, cOff, ldc, mr, nr);
          }
        }
      }
    }
  }
}
