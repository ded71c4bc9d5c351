/**
 * Shared result type for the peer benchmarks (TF.js, PyTorch).
 *
 * @module
 */

/** Outcome of a peer benchmark: per-step timings in milliseconds, or why it could not run. */
export type PeerResult =
  | { ok: true; median_ms: number; min_ms: number; max_ms: number; runs: number }
  | { ok: false; reason: string };
