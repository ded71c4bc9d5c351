/**
 * WGSL twin of `lib/rng/philox.ts` (counter-based RNG shared by TS and WGSL, design.md section 4).
 *
 * Kernels that draw random numbers (dropout masks, init, augmentation) prepend this snippet and
 * build counters/keys with the same convention as the TS side: key = (seed, stream),
 * counter = (index lo, index hi, step, 0). Because Philox is a pure function of those inputs,
 * a GPU draw can be checked against, or replayed by, the CPU reference bit for bit.
 *
 * Defines:
 * - `fn philox4x32(c: vec4<u32>, k: vec2<u32>) -> vec4<u32>`: Philox4x32-10.
 * - `fn philox_uniform(w: u32) -> f32`: top 24 bits of a word as a float in [0, 1); the value
 *   is a multiple of 2^-24, so it is exact in f32 and equals the TS `wordToUniform`.
 */
export const PHILOX_WGSL: string = /* wgsl */ `
// High 32 bits of a * b. WGSL has no 64-bit integers, so the product is assembled from 16-bit
// halves; every partial sum stays below 2^32, and u32 multiplication gives the low word.
fn philox_mulhi(a: u32, b: u32) -> u32 {
  let ah = a >> 16u;
  let al = a & 0xffffu;
  let bh = b >> 16u;
  let bl = b & 0xffffu;
  let ll = al * bl;
  let lh = al * bh;
  let hl = ah * bl;
  let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
  return ah * bh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
}

fn philox4x32(c: vec4<u32>, k: vec2<u32>) -> vec4<u32> {
  var x = c;
  var key = k;
  for (var r = 0u; r < 10u; r = r + 1u) {
    if (r > 0u) {
      key = key + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
    }
    let hi0 = philox_mulhi(0xD2511F53u, x.x);
    let lo0 = 0xD2511F53u * x.x;
    let hi1 = philox_mulhi(0xCD9E8D57u, x.z);
    let lo1 = 0xCD9E8D57u * x.z;
    x = vec4<u32>(hi1 ^ x.y ^ key.x, lo1, hi0 ^ x.w ^ key.y, lo0);
  }
  return x;
}

fn philox_uniform(w: u32) -> f32 {
  return f32(w >> 8u) * (1.0 / 16777216.0);
}
`;
