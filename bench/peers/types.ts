/**
 * Shared result type for the peer benchmarks (TF.js, PyTorch).
 *
 * @module
 */

/** Outcome of a peer benchmark: per-step timings in milliseconds, or why it could not run. */
export type PeerResult =
  | {
    ok: true;
    median_ms: number;
    min_ms: number;
    max_ms: number;
    runs: number;
    /** Each timed step, in order, where the peer reports them. */
    times_ms?: number[];
  }
  | { ok: false; reason: string };
