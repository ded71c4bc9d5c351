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

/** Options of an in-process U-Net peer (TF.js, jax-js): the same step as our unet-small row. */
export interface UnetPeerOptions {
  /** The library's backend (device) to train on. */
  backend: "webgpu" | "wasm";
  /** Spatial size S of the square S x S input; must be divisible by 8. */
  size: number;
  /** Batch size B. */
  batch: number;
  /** Untimed steps run first (shaders are compiled, and jitted steps traced, during these). */
  warmup: number;
  /** Timed steps; each one is timed on its own. */
  runs: number;
}

/**
 * A U-Net peer's command line (`--backend webgpu|wasm --size S --batch B --warmup W --runs R`);
 * an unknown backend prints why and exits 2.
 */
export function unetPeerArgs(args: string[]): UnetPeerOptions {
  const flag = (name: string, fallback: string): string => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
  };
  const backend = flag("backend", "webgpu");
  if (backend !== "webgpu" && backend !== "wasm") {
    console.error(`unknown --backend ${backend} (expected webgpu or wasm)`);
    Deno.exit(2);
  }
  return {
    backend,
    size: Number(flag("size", "64")),
    batch: Number(flag("batch", "2")),
    warmup: Number(flag("warmup", "2")),
    runs: Number(flag("runs", "5")),
  };
}

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
