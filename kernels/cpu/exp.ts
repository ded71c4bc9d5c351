/**
 * A float64 exp for the CPU kernels whose outputs are f32 (gelu, gelu_grad, softmax). V8's
 * Math.exp is a call into fdlibm per element (~12 ns here); these kernels need far less than its
 * last-bit accuracy, since their results are rounded to f32 (relative step 6e-8) and their
 * formulas carry fit errors of ~1e-7. This one is ~2x faster in the kernels' loops and inlines:
 *
 *   exp(x) = 2^k * exp(r), k = round(x / ln 2), r = x - k ln 2 in [-ln 2 / 2, ln 2 / 2],
 *
 * with exp(r) by its Taylor polynomial of degree 9 (truncation < 7e-12 relative there), k
 * rounded by the 1.5 * 2^52 trick (round to nearest even, no call), ln 2 split in two so that
 * r is exact to ~1e-17, and 2^k from a table. Pure arithmetic on doubles: the same bits on every
 * thread and every run.
 */

// 2^(i - 1075) for i in [0, 2100): 2^-1075 (which rounds to 0) through 2^1024 (Infinity).
export const POW2 = new Float64Array(2100);
for (let i = 0; i < POW2.length; i++) POW2[i] = Math.pow(2, i - 1075);

export const ROUND = 6755399441055744; // 1.5 * 2^52: x + ROUND - ROUND rounds x to an integer
export const LN2_HI = 0.6931471803691238; // ln 2 to 31 bits: k * LN2_HI is exact for |k| < 2^22
export const LN2_LO = 1.9082149292705877e-10; // ln 2 - LN2_HI
const C2 = 1 / 2, C3 = 1 / 6, C4 = 1 / 24, C5 = 1 / 120, C6 = 1 / 720;
const C7 = 1 / 5040, C8 = 1 / 40320, C9 = 1 / 362880;
/** The polynomial's coefficients C2..C9, for kernels/cpu/gelu_wasm.ts. */
export const EXP_COEFFS = [C2, C3, C4, C5, C6, C7, C8, C9];

/**
 * e^x to within 1.2e-11 relative for results in double's normal range; NaN for NaN, 0 for
 * x <= -745 and Infinity above 709.8, as Math.exp nearly. Results within a factor 2 of overflow
 * (x above ~709.1) may be Infinity, and subnormal results (x below -708.4) may lose bits: the
 * kernels round to f32, which overflows above 88.8 and flushes below -103.3.
 */
export function expF64(x: number): number {
  // Clamping keeps k in [-1075, 1024], inside the table (NaN passes through Math.min/max, and
  // (NaN + 1075) | 0 indexes 0, so p * 0 is NaN).
  const xc = Math.min(Math.max(x, -745), 710);
  const k = (xc * Math.LOG2E + ROUND) - ROUND;
  const r = (xc - k * LN2_HI) - k * LN2_LO;
  // Estrin's scheme: a dependency chain of 4 multiply-adds instead of Horner's 9, so that the
  // loop's iterations overlap (~1.5x faster in gelu's loop).
  const r2 = r * r, r4 = r2 * r2;
  const p = ((1 + r) + r2 * (C2 + r * C3)) +
    r4 * (((C4 + r * C5) + r2 * (C6 + r * C7)) + r4 * (C8 + r * C9));
  return p * POW2[(k + 1075) | 0];
}
