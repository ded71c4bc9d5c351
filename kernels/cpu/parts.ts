/**
 * Splitting a kernel's work for `CpuKernel.runPart` (lib/backends/cpu/threads.ts): a kernel that
 * loops over independent units (flat elements, channels, rows) computes a contiguous range of
 * them, the whole range for `run` and one part of it for `runPart`.
 */
import type { CpuKernel } from "./types.ts";

/** [lo, hi): part `part` of `parts` of [0, n), contiguous and in order. */
export function partOf(n: number, part: number, parts: number): [number, number] {
  return [Math.floor(n * part / parts), Math.floor(n * (part + 1) / parts)];
}

/** The kernel of `go`, which computes units [lo, hi) of n into `out`. */
export function ranged(
  n: number,
  go: (ins: Float32Array[], out: Float32Array, lo: number, hi: number) => void,
): CpuKernel {
  return {
    run: (ins, out) => go(ins, out, 0, n),
    runPart: (ins, out, _scratch, part, parts) => go(ins, out, ...partOf(n, part, parts)),
  };
}
