/**
 * Runs compiled Programs on the CPU: the same graph, op table and memory plan as the WebGPU
 * backend, with each node's CPU kernel (BLAS GEMM for conv-shaped work, typed-array loops for
 * the rest). Buffers are Float32Arrays created once at load; a run allocates nothing.
 */
import type { Program } from "../../graph/compile.ts";
import type { CpuKernel } from "../../graph/op.ts";

interface ReadyStep {
  label: string;
  kernel: CpuKernel;
  ins: Float32Array[];
  out: Float32Array;
  scratch: Float32Array[];
}

/** Host-side state shared by programs: named leaves (params, states, inputs). */
export class CpuRuntime {
  private readonly leaves = new Map<string, Float32Array>();

  hasLeaf(name: string): boolean {
    return this.leaves.has(name);
  }

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
    const l = this.leaves.get(name);
    if (!l) throw new Error(`no tensor named '${name}'`);
    return Promise.resolve(l.slice());
  }

  /** Copies of several leaves' values, in the order asked. */
  readMany(names: readonly string[]): Promise<Float32Array[]> {
    return Promise.all(names.map((n) => this.read(n)));
  }

  load(program: Program): Promise<CpuExecutable> {
    if (program.target !== "cpu") {
      throw new Error("CpuRuntime.load: program was compiled for webgpu");
    }
    const bufs = program.buffers.map((b) => {
      if (b.kind === "temp") return new Float32Array(b.floats);
      let l = this.leaves.get(b.name!);
      if (!l) {
        l = new Float32Array(b.floats);
        this.leaves.set(b.name!, l);
      } else if (l.length !== b.floats) {
        throw new Error(`'${b.name}' has ${l.length} values here but a program wants ${b.floats}`);
      }
      return l;
    });
    const view = (r: { buffer: number; size: number }) =>
      r.buffer < 0 ? new Float32Array(0) : bufs[r.buffer].subarray(0, r.size);
    const steps: ReadyStep[] = program.cpuSteps.map((s) => ({
      label: s.label,
      kernel: s.kernel,
      ins: s.ins.map(view),
      out: view(s.out),
      scratch: s.scratch.map(view),
    }));
    return Promise.resolve(new CpuExecutable(this, program, bufs, steps));
  }

  destroy(): void {
    this.leaves.clear();
  }
}

export class CpuExecutable {
  constructor(
    readonly runtime: CpuRuntime,
    readonly program: Program,
    private readonly buffers: Float32Array[],
    private readonly steps: ReadyStep[],
  ) {}

  /** Writes the inputs and runs every node in order (synchronously). */
  run(inputs: Record<string, Float32Array> = {}): void {
    for (const [k, v] of Object.entries(inputs)) this.runtime.write(k, v);
    for (const s of this.steps) s.kernel.run(s.ins, s.out, s.scratch);
  }

  read(name: string): Promise<Float32Array> {
    const o = this.program.outputs.get(name);
    if (!o) return this.runtime.read(name);
    return Promise.resolve(this.buffers[o.buffer].slice(0, o.tensor.size));
  }

  /** Per-node timings (ms) of one run, for profiling. */
  profile(): { label: string; ms: number }[] {
    return this.steps.map((s) => {
      const t0 = performance.now();
      s.kernel.run(s.ins, s.out, s.scratch);
      return { label: s.label, ms: performance.now() - t0 };
    });
  }

  destroy(): void {}
}
