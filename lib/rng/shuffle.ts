/** Seeded shuffling from the counter-based RNG: epoch e's order depends only on (seed, e). */
import { Stream, uniformAt } from "./philox.ts";

/** A Fisher-Yates permutation of 0..n-1 keyed by (seed, epoch). */
export function permutation(n: number, seed: number, epoch: number): number[] {
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(uniformAt(seed, Stream.shuffle, epoch, i) * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}
