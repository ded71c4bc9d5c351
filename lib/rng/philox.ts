/**
 * Philox4x32-10 counter-based RNG (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3").
 *
 * Every draw is a pure function of (seed, stream, step, index), so a value can be recomputed
 * anywhere, in any order, on the CPU or in a WGSL kernel (`kernels/webgpu/philox.ts` mirrors this file
 * bit for bit), and no generator state has to be saved in checkpoints or threaded through code.
 *
 * Keying convention used throughout the project:
 * - key = [seed low 32 bits, stream id]
 * - counter = [index low 32 bits, index high 32 bits, step, 0]
 *
 * `index` may be any non-negative integer up to 2^53 - 1; `seed`, `stream` and `step` are
 * reduced modulo 2^32.
 */

/** Named stream ids, so unrelated consumers of one seed never share a sequence. */
export const Stream = { init: 1, dropout: 2, augment: 3, shuffle: 4, data: 5 } as const;

// Random123 constants, kept split into 16-bit halves because the high word of a 32x32 product
// is assembled from partial products that each stay exact below 2^32 (a double holds 2^53, but
// the same scheme has to work with WGSL's u32-only arithmetic, so both sides do it this way).
const M0_HI = 0xd251, M0_LO = 0x1f53; // 0xD2511F53
const M1_HI = 0xcd9e, M1_LO = 0x8d57; // 0xCD9E8D57
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

const TWO_32 = 4294967296;
const TWO_M24 = 1 / 16777216;
const TWO_M25 = 1 / 33554432;
const TWO_PI = 2 * Math.PI;

/** High 32 bits of the 64-bit product of the constant (mh:ml) and x, both unsigned. */
function mulhi(mh: number, ml: number, x: number): number {
  const xh = x >>> 16, xl = x & 0xffff;
  const ll = ml * xl, lh = ml * xh, hl = mh * xl;
  const mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (mh * xh + (lh >>> 16) + (hl >>> 16) + (mid >>> 16)) >>> 0;
}

/**
 * Philox4x32-10 without allocating: writes the 4 output words of counter (c0..c3) under key
 * (k0, k1) into `out[0..3]`. Inputs are taken modulo 2^32.
 */
export function philoxInto(
  out: Uint32Array,
  c0: number,
  c1: number,
  c2: number,
  c3: number,
  k0: number,
  k1: number,
): void {
  c0 >>>= 0, c1 >>>= 0, c2 >>>= 0, c3 >>>= 0, k0 >>>= 0, k1 >>>= 0;
  for (let r = 0; r < 10; r++) {
    if (r > 0) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const hi0 = mulhi(M0_HI, M0_LO, c0), lo0 = Math.imul(0xd2511f53, c0) >>> 0;
    const hi1 = mulhi(M1_HI, M1_LO, c2), lo1 = Math.imul(0xcd9e8d57, c2) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
  }
  out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

/** Philox4x32-10 of a 4-word counter under a 2-word key; returns a fresh 4-word array. */
export function philox4x32(
  counter: readonly [number, number, number, number] | Uint32Array,
  key: readonly [number, number] | Uint32Array,
): Uint32Array {
  const out = new Uint32Array(4);
  philoxInto(out, counter[0], counter[1], counter[2], counter[3], key[0], key[1]);
  return out;
}

/**
 * Maps a random word to a float in [0, 1) using its top 24 bits. The result is a multiple of
 * 2^-24, exactly representable in f32, so the WGSL `philox_uniform` produces the same bits.
 */
export function wordToUniform(w: number): number {
  return (w >>> 8) * TWO_M24;
}

const scratch = new Uint32Array(4);

/**
 * One uniform in [0, 1) for (seed, stream, step, index): word 0 of the Philox block at that
 * index. Equals element `4 * (index - offset)` of `fillUniform(..., offset)`.
 */
export function uniformAt(seed: number, stream: number, step: number, index: number): number {
  philoxInto(scratch, index >>> 0, Math.floor(index / TWO_32), step, 0, seed, stream);
  return wordToUniform(scratch[0]);
}

/**
 * Fills `out` with uniforms in [0, 1). Element i is word `i % 4` of the Philox block at index
 * `floor(i / 4) + offset`, so one call yields four values and a slice of a long sequence can be
 * produced on its own by passing `offset` = (first element) / 4.
 */
export function fillUniform(
  out: Float32Array | Float64Array,
  seed: number,
  stream: number,
  step: number,
  offset = 0,
): void {
  const n = out.length;
  for (let b = 0, i = 0; i < n; b++, i += 4) {
    const index = b + offset;
    philoxInto(scratch, index >>> 0, Math.floor(index / TWO_32), step, 0, seed, stream);
    const m = Math.min(4, n - i);
    for (let j = 0; j < m; j++) out[i + j] = (scratch[j] >>> 8) * TWO_M24;
  }
}

/**
 * Fills `out` with `lo + (hi - lo) * u` for the uniforms of `fillUniform` (same layout). The
 * interval is [lo, hi) before rounding; storing into a Float32Array may round up to `hi`.
 */
export function fillUniformRange(
  out: Float32Array | Float64Array,
  lo: number,
  hi: number,
  seed: number,
  stream: number,
  step: number,
  offset = 0,
): void {
  fillUniform(out, seed, stream, step, offset);
  const span = hi - lo;
  for (let i = 0; i < out.length; i++) out[i] = lo + span * out[i];
}

/**
 * Fills `out` with normal draws by Box-Muller. Elements (2p, 2p+1) come from the uniform pair
 * (u1, u2) at the same positions of `fillUniform(..., offset)`:
 * r = sqrt(-2 ln(u1 + 2^-25)), out[2p] = mean + std r cos(2 pi u2), out[2p+1] = ... sin(...).
 * The 2^-25 shift keeps the log finite at u1 = 0. An odd trailing element takes the cos half.
 */
export function fillNormal(
  out: Float32Array | Float64Array,
  seed: number,
  stream: number,
  step: number,
  mean = 0,
  std = 1,
  offset = 0,
): void {
  const n = out.length;
  for (let b = 0, i = 0; i < n; b++, i += 4) {
    const index = b + offset;
    philoxInto(scratch, index >>> 0, Math.floor(index / TWO_32), step, 0, seed, stream);
    for (let j = 0; j < 4 && i + j < n; j += 2) {
      const u1 = (scratch[j] >>> 8) * TWO_M24 + TWO_M25;
      const u2 = (scratch[j + 1] >>> 8) * TWO_M24;
      const r = std * Math.sqrt(-2 * Math.log(u1));
      const t = TWO_PI * u2;
      out[i + j] = mean + r * Math.cos(t);
      if (i + j + 1 < n) out[i + j + 1] = mean + r * Math.sin(t);
    }
  }
}
