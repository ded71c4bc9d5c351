/** What the CPU backend's lowering (lib/backends/cpu/lower.ts) makes of one node. */

/** Part `part` of `parts` of a CPU kernel's work (`CpuKernel.runPart` and `prepare`). */
export type CpuPartFn = (
  ins: Float32Array[],
  out: Float32Array,
  scratch: Float32Array[],
  part: number,
  parts: number,
) => void;

/**
 * A CPU implementation of one node, specialised to its static shapes when the program is
 * loaded. `run` must not allocate: inputs, output and scratch are planned buffers.
 */
export interface CpuKernel {
  /** Sizes (f32 elements) of temporaries, planned like the WGSL scratch. */
  scratch?: number[];
  /** Computes `out` from `ins`; effect ops update their in-place inputs instead. */
  run(ins: Float32Array[], out: Float32Array, scratch: Float32Array[]): void;
  /**
   * Part `part` of `parts` of `run`, for kernels whose work divides into independent slices of
   * the output (rows, channels, flat ranges): each part writes only its slice, with the same
   * arithmetic in the same order as `run`, so the parts may run on different threads and the
   * result is bitwise `run`'s. Parts must not use `scratch`.
   */
  runPart?: CpuPartFn;
  /**
   * `run` as two stages, for kernels that copy their inputs into scratch first (conv panels):
   * `prepare` part `part` of `parts` writes its own slice of scratch (and of `out`), so the parts
   * may run on different threads at once; `finish`, on one thread, does the rest (GEMMs, which
   * the executor splits itself). `prepare` over all parts then `finish` is bitwise `run`.
   */
  prepare?: CpuPartFn;
  /** The single-threaded second stage of a `prepare`d kernel (see `prepare`). */
  finish?(ins: Float32Array[], out: Float32Array, scratch: Float32Array[]): void;
}
