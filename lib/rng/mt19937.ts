/**
 * The Mersenne Twister MT19937 (Matsumoto and Nishimura, 1998) with the two seedings and the
 * draws that Python's `random` and numpy's legacy global generator (`np.random.seed`,
 * `np.random.randint`) build on. It exists for one purpose: to replay the augmentation draws of
 * the reference's data loader (`lib/data/reference_draws.ts`). Everything else in this project
 * draws from Philox (`philox.ts`), which is counter-based and needs no state.
 */

const N = 624;
const M = 397;
const UPPER = 0x80000000;
const LOWER = 0x7fffffff;
const MATRIX_A = 0x9908b0df;

/** A MT19937 state: 624 words and the position of the next one. */
export class Mt19937 {
  private readonly mt = new Uint32Array(N);
  private i = N;

  private constructor() {}

  /**
   * `init_genrand(seed)`: numpy's legacy `RandomState(seed)` for an integer seed in [0, 2^32)
   * (numpy refuses others too).
   */
  static fromInt(seed: number): Mt19937 {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
      throw new RangeError(`numpy seed ${seed} is not in [0, 2^32)`);
    }
    const g = new Mt19937();
    g.initGenrand(seed);
    return g;
  }

  /**
   * `init_by_array(key)`: Python's `random.seed(n)` for an integer n, with `key` the 32-bit
   * words of |n|, least significant first.
   */
  static fromKey(key: readonly number[]): Mt19937 {
    const g = new Mt19937();
    g.initGenrand(19650218);
    const mt = g.mt;
    let i = 1, j = 0;
    for (let k = Math.max(N, key.length); k > 0; k--) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = (mt[i] ^ Math.imul(prev, 1664525)) + (key[j] >>> 0) + j;
      i++;
      j++;
      if (i >= N) {
        mt[0] = mt[N - 1];
        i = 1;
      }
      if (j >= key.length) j = 0;
    }
    for (let k = N - 1; k > 0; k--) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = (mt[i] ^ Math.imul(prev, 1566083941)) - i;
      i++;
      if (i >= N) {
        mt[0] = mt[N - 1];
        i = 1;
      }
    }
    mt[0] = UPPER; // the most significant bit is 1: a non-zero initial state
    return g;
  }

  /** Python's `random.seed(n)` for a non-negative integer n below 2^53. */
  static python(n: number): Mt19937 {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`python seed ${n}`);
    const key = [n % 0x100000000];
    if (n >= 0x100000000) key.push(Math.floor(n / 0x100000000));
    return Mt19937.fromKey(key);
  }

  private initGenrand(seed: number): void {
    const mt = this.mt;
    mt[0] = seed;
    for (let i = 1; i < N; i++) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = Math.imul(1812433253, prev) + i;
    }
    this.i = N;
  }

  private twist(): void {
    const mt = this.mt;
    for (let k = 0; k < N; k++) {
      const y = (mt[k] & UPPER) | (mt[(k + 1) % N] & LOWER);
      mt[k] = mt[(k + M) % N] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    this.i = 0;
  }

  /** `genrand_int32`: the next tempered 32-bit word. */
  nextU32(): number {
    if (this.i >= N) this.twist();
    let y = this.mt[this.i++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** Python's `random.random()`: 53 bits from two words, in [0, 1). */
  random(): number {
    const a = this.nextU32() >>> 5, b = this.nextU32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }

  /**
   * numpy's legacy `randint(low, high)` (one integer in [low, high), high - low <= 2^32): the
   * range's bit mask applied to 32-bit words, rejecting those above the range.
   */
  randint(low: number, high: number): number {
    const range = high - low - 1;
    if (!(range >= 0 && range <= 0xffffffff)) throw new RangeError(`randint(${low}, ${high})`);
    if (range === 0) return low;
    let mask = range;
    for (let s = 1; s < 32; s <<= 1) mask |= mask >>> s;
    mask >>>= 0;
    for (;;) {
      const v = (this.nextU32() & mask) >>> 0;
      if (v <= range) return low + v;
    }
  }
}
