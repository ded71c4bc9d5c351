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
 *   waits with `Atomics.wait` (~25 us a round trip here), so a step stays synchronous. Both
 *   sides spin briefly first (SPINS), which makes a round trip between close dispatches cheaper.
 * - Results do not depend on the thread count: every output element is computed by the same
 *   code in the same order whichever thread computes it (tests/cpu_threads_test.ts).
 *
 * - GEMMs are split too (gemm_split.ts): each thread computes a block of the product with the
 *   BLAS library held to one thread per call, so that the library's own idle threads never
 *   compete with the helpers for the cores (they spin ~0.1 s after each call).
 *
 * `LVIT_CPU_THREADS=N` sets the number of threads in all (default: one per core; 1: no helpers,
 * and BLAS on one thread as well, the same bits). Where workers cannot start (a module imported
 * over https, no permission), the kernels run on the calling thread and BLAS keeps its own
 * threads; its thread count can then change the last bits of some GEMMs.
 */
import { Worker } from "node:worker_threads";
import type { CpuStep } from "./lower.ts";
import { setBlasThreads } from "./blas.ts";
import { type GemmArgs, gemmParts, gemmSlice } from "./gemm_split.ts";

/** Control block layout (Int32 slots). */
const SEQ = 0, DONE = 1, PROGRAM = 2, STEP = 3, PART = 4, PARTS = 5, FAILED = 6, MAIL = 7;
/**
 * What a dispatch asks: a part of step STEP (TASK_STEP) or of its `prepare` stage
 * (TASK_PREPARE), or a block of the GEMM described from slot GEMM on (TASK_GEMM).
 */
const TASK = 8, TASK_STEP = 0, TASK_GEMM = 1, TASK_PREPARE = 2;
/**
 * A GEMM: transA, transB, M, N, K, lda, ldb, ldc, then (buffer, offset, length) of A, B and C
 * in the program's buffers, then alpha and beta as float32 bits.
 */
const GEMM = 9, GEMM_SLOTS = 19;
const SLOTS = GEMM + GEMM_SLOTS;
/**
 * Loads of the control block a waiting thread makes (tens of microseconds) before it sleeps: the
 * parts of one step end close together and dispatches follow each other closely, and a sleeping
 * thread takes about as long again to wake.
 */
export const SPINS = 1 << 14;
/** Bytes of the shared error message of a failed part. */
const ERROR_BYTES = 2048;

/** What a helper needs to rebuild one program's kernels over the shared buffers. */
export interface ProgramShare {
  /** The program's number in this runtime (dispatches name it). */
  id: number;
  /** Each step's node (op, shapes, attributes) and where its operands lie in `buffers`. */
  steps: Pick<CpuStep, "node" | "ins" | "out" | "scratch">[];
  /** The program's planned buffers, shared with the helpers. */
  buffers: SharedArrayBuffer[];
}

interface Helper {
  worker: Worker;
  ctrl: Int32Array;
  /** The control block's float slots (a GEMM's alpha and beta). */
  ctrlF: Float32Array;
  error: Uint8Array;
  seq: number;
  /** Programs the helper has acknowledged. */
  ready: Set<number>;
  waiting: Map<number, () => void>;
}

/** The helpers' module. */
const WORKER_URL = new URL("./worker.ts", import.meta.url);

function envThreads(): number | undefined {
  try {
    const v = Deno.env.get("LVIT_CPU_THREADS");
    return v === undefined ? undefined : Number(v);
  } catch {
    return undefined;
  }
}

/**
 * Threads to use: LVIT_CPU_THREADS (at most one per core), else one per core; one where no helper
 * can start (this module loaded from an http(s) URL: helpers are `node:worker_threads` Workers,
 * which take file: URLs only). Every kernel's parts compute the same sums in the same order
 * whichever thread runs them, and so do GEMM blocks (gemm_split.ts) with OpenBLAS's AVX-512
 * kernels and the TypeScript GEMM; its Haswell kernels round a split GEMM differently from a
 * whole one (tests/cpu_threads_test.ts), so there the count is part of what a result depends on.
 */
export function threadCount(): number {
  if (WORKER_URL.protocol !== "file:") return 1;
  const cores = Math.max(1, navigator.hardwareConcurrency || 1);
  const env = envThreads();
  if (env === undefined || !Number.isInteger(env) || env < 1) return cores;
  return Math.min(env, cores);
}

/** The helper threads of one CPU runtime. */
export class CpuThreads {
  /** Helper threads started and not yet stopped, in this process (tests check that runs stop theirs). */
  static live = 0;

  /** Steps run in parts so far (for tests and profiles). */
  splits = 0;

  /** GEMMs split so far (for tests and profiles). */
  gemmSplits = 0;

  private constructor(
    private readonly helpers: Helper[],
    /** Whether GEMMs are split: the BLAS library runs one thread per call. */
    readonly splitsGemms: boolean,
  ) {}

  /** Threads taking part in a split: this one and the helpers. */
  get parts(): number {
    return this.helpers.length + 1;
  }

  /** Starts `count - 1` helpers, or returns null where none can start (or count <= 1). */
  static start(count: number = threadCount()): CpuThreads | null {
    if (count <= 1) return null;
    const url = WORKER_URL;
    if (url.protocol !== "file:") return null;
    const helpers: Helper[] = [];
    try {
      for (let i = 0; i < count - 1; i++) {
        const ctrl = new Int32Array(new SharedArrayBuffer(SLOTS * 4));
        const error = new Uint8Array(new SharedArrayBuffer(ERROR_BYTES));
        const worker = new Worker(url, { workerData: { ctrl, error } });
        worker.unref();
        const h: Helper = {
          worker,
          ctrl,
          ctrlF: gemmScalars(ctrl),
          error,
          seq: 0,
          ready: new Set(),
          waiting: new Map(),
        };
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
    // GEMMs are split by these threads only where the library's own threads can be turned off;
    // otherwise both would compete for the cores.
    let gemms = false;
    try {
      gemms = setBlasThreads(1);
    } catch {
      // Without --allow-ffi the TypeScript GEMM runs; it cannot be reached here either.
    }
    CpuThreads.live += helpers.length;
    return new CpuThreads(helpers, gemms);
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
   * `here`, then waits for the helpers. Throws if a helper's part failed. `prepare`: the parts
   * are of the step's `prepare` stage.
   */
  split(id: number, step: number, here: () => void, prepare = false): void {
    const parts = this.parts;
    this.splits++;
    this.helpers.forEach((h, i) => {
      const c = h.ctrl;
      c[TASK] = prepare ? TASK_PREPARE : TASK_STEP;
      c[PROGRAM] = id;
      c[STEP] = step;
      this.dispatch(h, i + 1, parts);
    });
    this.finish(this.helpers, here);
  }

  /**
   * Computes `g` split in blocks of C across this thread and the helpers, when it is large
   * enough and every operand lies in program `id`'s buffers (`locate` gives the buffer index
   * of a view, -1 for none); false when the caller is to run it alone.
   */
  gemm(
    id: number,
    g: GemmArgs,
    locate: (a: Float32Array) => number,
    here: (g: GemmArgs) => void,
  ): boolean {
    if (!this.splitsGemms) return false;
    const parts = gemmParts(g.M, g.N, g.K, this.parts);
    if (parts <= 1) return false;
    const a = locate(g.A), b = locate(g.B), c = locate(g.C);
    if (a < 0 || b < 0 || c < 0) return false;
    this.gemmSplits++;
    const used = this.helpers.slice(0, parts - 1);
    used.forEach((h, i) => {
      const s = h.ctrl, f = h.ctrlF;
      s[TASK] = TASK_GEMM;
      s[PROGRAM] = id;
      s.set([+g.transA, +g.transB, g.M, g.N, g.K, g.lda, g.ldb, g.ldc], GEMM);
      s.set([a, g.A.byteOffset >> 2, g.A.length, b, g.B.byteOffset >> 2, g.B.length], GEMM + 8);
      s.set([c, g.C.byteOffset >> 2, g.C.length], GEMM + 14);
      f[0] = g.alpha;
      f[1] = g.beta;
      this.dispatch(h, i + 1, parts);
    });
    this.finish(used, () => here(gemmSlice(g, 0, parts)));
    return true;
  }

  /** Hands part `part` of `parts` of the task set up in `h`'s control block to `h`. */
  private dispatch(h: Helper, part: number, parts: number): void {
    const c = h.ctrl;
    c[PART] = part;
    c[PARTS] = parts;
    Atomics.store(c, SEQ, ++h.seq);
    Atomics.notify(c, SEQ);
  }

  /** Runs `here`, then waits for `helpers`; throws the first failure. */
  private finish(helpers: Helper[], here: () => void): void {
    let failure: unknown = null;
    try {
      here();
    } catch (e) {
      failure = e;
    }
    for (const h of helpers) {
      for (let spins = 0;; spins++) {
        const done = Atomics.load(h.ctrl, DONE);
        if (done === h.seq) break;
        if (spins >= SPINS) Atomics.wait(h.ctrl, DONE, done, 1000);
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
    CpuThreads.live -= this.helpers.length;
    this.helpers.length = 0;
  }
}

/** The float32 view of a control block's GEMM alpha and beta slots (shared with worker.ts). */
export function gemmScalars(ctrl: Int32Array): Float32Array {
  return new Float32Array(ctrl.buffer, ctrl.byteOffset + (GEMM + 17) * 4, 2);
}

/** Control-block slots, shared with worker.ts. */
export const CTRL = {
  SEQ,
  DONE,
  PROGRAM,
  STEP,
  PART,
  PARTS,
  FAILED,
  MAIL,
  TASK,
  TASK_GEMM,
  TASK_PREPARE,
  GEMM,
  ERROR_BYTES,
} as const;
