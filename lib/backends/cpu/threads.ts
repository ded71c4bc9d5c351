/**
 * More than one core for the CPU backend's own loops. BLAS already runs its GEMMs on every core,
 * but the rest of a step (batch norm, activations, dropout, elementwise chains, copies) is
 * TypeScript and ran on one core while the others idled: a third of the reference LViT-T step
 * on 2 cores. Kernels that can split their output into independent parts (`CpuKernel.runPart`)
 * now run part 0 on the calling thread and the other parts on helper threads at the same time.
 *
 * - Helpers are `node:worker_threads` workers (they can be `unref`ed, so a forgotten runtime
 *   never keeps a process alive). Each one rebuilds the program's kernels from the same
 *   (op, shapes, attributes) with the same op table and works on the same buffers, which are
 *   SharedArrayBuffers.
 * - A dispatch is a few integers in a shared control block and an `Atomics.notify`; the caller
 *   waits with `Atomics.wait` (~25 us a round trip here), so a step stays synchronous.
 * - Results do not depend on the thread count: every output element is computed by the same
 *   code in the same order whichever thread computes it (tests/cpu_threads_test.ts).
 *
 * `LVIT_CPU_THREADS=N` turns this on with N threads in all (at most one per core; default 1,
 * none added). Where workers cannot start (a module imported over https, no permission),
 * everything runs on the calling thread, with the same results.
 */
import { Worker } from "node:worker_threads";
import type { CpuStep } from "../../graph/compile.ts";

/** Control block layout (Int32 slots). */
const SEQ = 0, DONE = 1, PROGRAM = 2, STEP = 3, PART = 4, PARTS = 5, FAILED = 6, MAIL = 7;
const SLOTS = 8;
/** Bytes of the shared error message of a failed part. */
const ERROR_BYTES = 2048;

/** What a helper needs to rebuild one program's kernels over the shared buffers. */
export interface ProgramShare {
  id: number;
  steps: Pick<CpuStep, "node" | "ins" | "out" | "scratch">[];
  buffers: SharedArrayBuffer[];
}

interface Helper {
  worker: Worker;
  ctrl: Int32Array;
  error: Uint8Array;
  seq: number;
  /** Programs the helper has acknowledged. */
  ready: Set<number>;
  waiting: Map<number, () => void>;
}

function envThreads(): number | undefined {
  try {
    const v = Deno.env.get("LVIT_CPU_THREADS");
    return v === undefined ? undefined : Number(v);
  } catch {
    return undefined;
  }
}

/**
 * Threads to use: LVIT_CPU_THREADS (at most one per core), else 1. Opt-in for now: on the 2-core
 * development machine the reference LViT-T step gained only 2.5% (see README), because most of
 * the step is GEMMs that BLAS already spreads over the cores.
 */
export function threadCount(): number {
  const env = envThreads();
  if (env === undefined || !Number.isInteger(env) || env < 1) return 1;
  return Math.min(env, Math.max(1, navigator.hardwareConcurrency || 1));
}

/** The helper threads of one CPU runtime. */
export class CpuThreads {
  /** Steps run in parts so far (for tests and profiles). */
  splits = 0;

  private constructor(private readonly helpers: Helper[]) {}

  /** Threads taking part in a split: this one and the helpers. */
  get parts(): number {
    return this.helpers.length + 1;
  }

  /** Starts `count - 1` helpers, or returns null where none can start (or count <= 1). */
  static start(count = threadCount()): CpuThreads | null {
    if (count <= 1) return null;
    const url = new URL("./worker.ts", import.meta.url);
    if (url.protocol !== "file:") return null;
    const helpers: Helper[] = [];
    try {
      for (let i = 0; i < count - 1; i++) {
        const ctrl = new Int32Array(new SharedArrayBuffer(SLOTS * 4));
        const error = new Uint8Array(new SharedArrayBuffer(ERROR_BYTES));
        const worker = new Worker(url, { workerData: { ctrl, error } });
        worker.unref();
        const h: Helper = { worker, ctrl, error, seq: 0, ready: new Set(), waiting: new Map() };
        worker.on("message", (m: { registered?: number }) => {
          if (m.registered === undefined) return;
          h.ready.add(m.registered);
          h.waiting.get(m.registered)?.();
          h.waiting.delete(m.registered);
        });
        worker.on("error", () => h.ready.clear());
        helpers.push(h);
      }
    } catch {
      for (const h of helpers) h.worker.terminate();
      return null;
    }
    return new CpuThreads(helpers);
  }

  /** Hands a loaded program to every helper; resolves when all have built its kernels. */
  async share(p: ProgramShare): Promise<void> {
    // An unref'ed worker's messages do not keep the event loop alive: ref it while any share
    // (programs load concurrently) waits for its answer.
    await Promise.all(this.helpers.map((h) =>
      new Promise<void>((resolve) => {
        if (h.waiting.size === 0) h.worker.ref();
        h.waiting.set(p.id, () => {
          if (h.waiting.size === 1) h.worker.unref();
          resolve();
        });
        h.worker.postMessage({ program: p });
        Atomics.store(h.ctrl, MAIL, 1);
        Atomics.notify(h.ctrl, SEQ);
      })
    ));
  }

  /** Whether every helper holds program `id`. */
  ready(id: number): boolean {
    return this.helpers.every((h) => h.ready.has(id));
  }

  /**
   * Runs step `step` of program `id` split `parts` ways: parts 1.. on the helpers, part 0 as
   * `here`, then waits for the helpers. Throws if a helper's part failed.
   */
  split(id: number, step: number, here: () => void): void {
    const parts = this.parts;
    this.splits++;
    this.helpers.forEach((h, i) => {
      const c = h.ctrl;
      c[PROGRAM] = id;
      c[STEP] = step;
      c[PART] = i + 1;
      c[PARTS] = parts;
      Atomics.store(c, SEQ, ++h.seq);
      Atomics.notify(c, SEQ);
    });
    let failure: unknown = null;
    try {
      here();
    } catch (e) {
      failure = e;
    }
    for (const h of this.helpers) {
      for (;;) {
        const done = Atomics.load(h.ctrl, DONE);
        if (done === h.seq) break;
        Atomics.wait(h.ctrl, DONE, done, 1000);
      }
      if (Atomics.load(h.ctrl, FAILED)) {
        Atomics.store(h.ctrl, FAILED, 0);
        const text = new TextDecoder().decode(h.error.slice()).replace(/\0.*$/s, "");
        failure ??= new Error(`CPU helper thread: ${text}`);
      }
    }
    if (failure) throw failure;
  }

  /** Stops the helpers. */
  destroy(): void {
    for (const h of this.helpers) h.worker.terminate();
    this.helpers.length = 0;
  }
}

/** Control-block slots, shared with worker.ts. */
export const CTRL = { SEQ, DONE, PROGRAM, STEP, PART, PARTS, FAILED, MAIL, ERROR_BYTES } as const;
