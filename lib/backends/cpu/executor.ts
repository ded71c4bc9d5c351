/**
 * Runs compiled Programs on the CPU: the same graph, op table and memory plan as the WebGPU
 * backend, with each node's CPU kernel (BLAS GEMM for conv-shaped work, typed-array loops for
 * the rest). Buffers are Float32Arrays created once at load; a run allocates nothing. With
 * helper threads (threads.ts) the buffers live in SharedArrayBuffers and kernels that divide
 * their output (`runPart`) run on every thread at once, with the same results.
 */
import type { Program } from "../compile.ts";
import type { CpuKernel } from "../../../kernels/cpu/types.ts";
import { CpuThreads, threadCount } from "./threads.ts";
import { type GemmSplitter, setBlasThreads, setGemmSplitter, sgemmArgs } from "./blas.ts";

interface ReadyStep {
  label: string;
  kernel: CpuKernel;
  ins: Float32Array[];
  out: Float32Array;
  scratch: Float32Array[];
  /** Run in parts on the helper threads too. */
  split: boolean;
  /** Run as `prepare` in parts on every thread, then `finish` here. */
  staged: boolean;
}

/** Nodes that touch fewer values run on one thread: a split costs ~25 us of hand-over. */
const MIN_SPLIT = 16384;

let programIds = 0;

/** Host-side state shared by programs: named leaves (params, states, inputs). */
export class CpuRuntime {
  private readonly leaves = new Map<string, Float32Array>();
  /** Helper threads; null: everything runs on the calling thread. */
  readonly threads: CpuThreads | null;

  /** `threads`: threads in all (default: LVIT_CPU_THREADS, else one per core). */
  constructor(options: { threads?: number } = {}) {
    const count = options.threads ?? threadCount();
    this.threads = CpuThreads.start(count);
    // One thread asked for: BLAS too, so that the bits equal those of any thread count.
    if (count <= 1) {
      try {
        setBlasThreads(1);
      } catch {
        // Without --allow-ffi the TypeScript GEMM runs, on this thread.
      }
    }
  }

  /** A zeroed buffer, shared with the helper threads when there are any. */
  private alloc(floats: number): Float32Array {
    return this.threads
      ? new Float32Array(new SharedArrayBuffer(4 * floats))
      : new Float32Array(floats);
  }

  /** Whether a loaded program has allocated a leaf of this name. */
  hasLeaf(name: string): boolean {
    return this.leaves.has(name);
  }

  /** Overwrites a leaf's value; the length must match the leaf's size. */
  write(name: string, data: Float32Array): void {
    const l = this.leaves.get(name);
    if (!l) throw new Error(`no tensor named '${name}'`);
    if (data.length !== l.length) {
      throw new Error(`'${name}' holds ${l.length} values, got ${data.length}`);
    }
    l.set(data);
  }

  /** A copy of a leaf's value. */
  read(name: string): Promise<Float32Array> {
    return Promise.resolve(this.leaf(name).slice());
  }

  private leaf(name: string): Float32Array {
    const l = this.leaves.get(name);
    if (!l) throw new Error(`no tensor named '${name}'`);
    return l;
  }

  /** Copies of several leaves' values, in the order asked. */
  readMany(names: readonly string[]): Promise<Float32Array[]> {
    return Promise.all(names.map((n) => this.read(n)));
  }

  /**
   * The leaves themselves, no copies: a checkpoint streams them to disk between steps (a copy of
   * LViT-LW's 687 MB training state cost seconds of page faults per epoch).
   */
  viewMany(names: readonly string[]): Promise<Float32Array[]> {
    return Promise.resolve(names.map((n) => this.leaf(n)));
  }

  /**
   * Prepares a cpu-target program: allocates its temporaries, allocates or reuses its named
   * leaves (sizes must agree), and shares the buffers with the helper threads.
   */
  async load(program: Program): Promise<CpuExecutable> {
    if (program.target !== "cpu") {
      throw new Error("CpuRuntime.load: program was compiled for webgpu");
    }
    const bufs = program.buffers.map((b) => {
      if (b.kind === "temp") return this.alloc(b.floats);
      let l = this.leaves.get(b.name!);
      if (!l) {
        l = this.alloc(b.floats);
        this.leaves.set(b.name!, l);
      } else if (l.length !== b.floats) {
        throw new Error(`'${b.name}' has ${l.length} values here but a program wants ${b.floats}`);
      }
      return l;
    });
    const view = (r: { buffer: number; size: number }) =>
      r.buffer < 0 ? new Float32Array(0) : bufs[r.buffer].subarray(0, r.size);
    const threads = this.threads;
    const shared = threads !== null && bufs.every((b) => b.buffer instanceof SharedArrayBuffer);
    const steps: ReadyStep[] = program.steps.map((s) => {
      const large = Math.max(s.out.size, ...s.ins.map((x) => x.size)) >= MIN_SPLIT;
      return {
        label: s.label,
        kernel: s.kernel,
        ins: s.ins.map(view),
        out: view(s.out),
        scratch: s.scratch.map(view),
        split: shared && large && !!s.kernel.runPart,
        staged: shared && large && !!s.kernel.prepare && !!s.kernel.finish,
      };
    });
    const id = ++programIds;
    if (shared) {
      await threads!.share({
        id,
        steps: program.steps.map(({ node, ins, out, scratch }) => ({ node, ins, out, scratch })),
        buffers: bufs.map((b) => b.buffer as SharedArrayBuffer),
      });
    }
    return new CpuExecutable(this, program, bufs, steps, id);
  }

  /** Drops every leaf and stops the helper threads. */
  destroy(): void {
    this.leaves.clear();
    this.threads?.destroy();
  }
}

/** A program loaded by `CpuRuntime.load`: its buffers and ready-to-run steps. */
export class CpuExecutable {
  /** Made by `CpuRuntime.load`; not meant to be called directly. */
  constructor(
    readonly runtime: CpuRuntime,
    readonly program: Program,
    private readonly buffers: Float32Array[],
    private readonly steps: ReadyStep[],
    private readonly id: number,
  ) {
    const threads = runtime.threads;
    if (threads?.splitsGemms) {
      const index = new Map<ArrayBufferLike, number>(buffers.map((b, i) => [b.buffer, i]));
      const locate = (a: Float32Array) => index.get(a.buffer) ?? -1;
      this.splitter = (g) => threads.ready(id) && threads.gemm(id, g, locate, sgemmArgs);
    }
  }

  /** Splits this program's GEMMs across the helper threads (null: none). */
  private readonly splitter: GemmSplitter | null = null;

  /** Runs `go` with this program's GEMM splitter installed. */
  private withSplitter<T>(go: () => T): T {
    if (!this.splitter) return go();
    const prev = setGemmSplitter(this.splitter);
    try {
      return go();
    } finally {
      setGemmSplitter(prev);
    }
  }

  /** Writes the inputs and runs every node in order (synchronously). */
  run(inputs: Record<string, Float32Array> = {}): void {
    for (const [k, v] of Object.entries(inputs)) this.runtime.write(k, v);
    this.withSplitter(() => {
      for (let i = 0; i < this.steps.length; i++) this.runStep(i);
    });
  }

  /** Runs step `i`: in parts across the helper threads when it qualifies, else here. */
  private runStep(i: number): void {
    const s = this.steps[i];
    const threads = this.runtime.threads;
    if (s.staged && threads?.ready(this.id)) {
      const k = s.kernel;
      threads.split(this.id, i, () => k.prepare!(s.ins, s.out, s.scratch, 0, threads.parts), true);
      k.finish!(s.ins, s.out, s.scratch);
    } else if (s.split && threads?.ready(this.id)) {
      const parts = threads.parts;
      threads.split(this.id, i, () => s.kernel.runPart!(s.ins, s.out, s.scratch, 0, parts));
    } else {
      s.kernel.run(s.ins, s.out, s.scratch);
    }
  }

  /** A copy of a program output, or of a leaf when `name` is not an output. */
  read(name: string): Promise<Float32Array> {
    const o = this.program.outputs.get(name);
    if (!o) return this.runtime.read(name);
    return Promise.resolve(this.buffers[o.buffer].slice(0, o.tensor.size));
  }

  /** Per-node timings (ms) of one run, for profiling. */
  profile(): { label: string; ms: number }[] {
    return this.withSplitter(() =>
      this.steps.map((s, i) => {
        const t0 = performance.now();
        this.runStep(i);
        return { label: s.label, ms: performance.now() - t0 };
      })
    );
  }

  /** Nothing to free: the buffers belong to the runtime and the garbage collector. */
  destroy(): void {}
}
