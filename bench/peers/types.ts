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

/** The message of a thrown value. */
export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Median of a non-empty list. */
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Times `runs` calls of an in-process peer's `step`, each on its own (the step must return only
 * once its work is done, e.g. after reading the loss back), as a successful {@link PeerResult}.
 */
export async function timeSteps(step: () => Promise<unknown>, runs: number): Promise<PeerResult> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await step();
    times.push(performance.now() - t0);
  }
  return {
    ok: true,
    median_ms: median(times),
    min_ms: Math.min(...times),
    max_ms: Math.max(...times),
    runs,
    times_ms: times,
  };
}
