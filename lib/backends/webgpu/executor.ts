/**
 * Runs compiled Programs on a GPUDevice. Everything that can be created ahead of time is:
 * buffers (from the memory plan), pipelines (cached by WGSL text) and bind groups. A run is then
 * "write inputs, encode the recorded dispatches into one compute pass, one submit", with no
 * wait; reads are explicit and are the only sync points (design.md 3, 6).
 */
import type { Program } from "../compile.ts";
import type { GpuContext } from "./device.ts";

const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

interface Leaf {
  buffer: GPUBuffer;
  floats: number;
  shape: readonly number[];
}

/** Device-side state shared by programs: named leaves (params, states, inputs) and pipelines. */
export class WebGPURuntime {
  /** The device every buffer and pipeline of this runtime lives on (`ctx.device`). */
  readonly device: GPUDevice;
  private readonly leaves = new Map<string, Leaf>();
  private readonly pipelines = new Map<string, Promise<GPUComputePipeline>>();
  private readonly layouts = new Map<string, GPUBindGroupLayout>();

  /** A runtime on the device of `ctx` (from `acquireDevice`); it holds no leaves yet. */
  constructor(readonly ctx: GpuContext) {
    this.device = ctx.device;
  }

  /** Buffers of all leaves, keyed by name; created when first referenced by a program. */
  leafNames(): string[] {
    return [...this.leaves.keys()];
  }

  /** Whether a loaded program has created a device buffer for this leaf. */
  hasLeaf(name: string): boolean {
    return this.leaves.has(name);
  }

  /** Uploads a leaf's value (the whole tensor). */
  write(name: string, data: Float32Array): void {
    const l = this.leaves.get(name);
    if (!l) throw new Error(`no device tensor named '${name}'`);
    if (data.length !== l.floats) {
      throw new Error(`'${name}' holds ${l.floats} values, got ${data.length}`);
    }
    this.device.queue.writeBuffer(
      l.buffer,
      0,
      data.buffer as ArrayBuffer,
      data.byteOffset,
      data.byteLength,
    );
  }

  /** Reads a leaf back (a sync point). */
  read(name: string): Promise<Float32Array> {
    const l = this.leaves.get(name);
    if (!l) throw new Error(`no device tensor named '${name}'`);
    return this.readBuffer(l.buffer, l.floats);
  }

  /** Leaves live on the device: a readback, as `readMany`. */
  viewMany(names: readonly string[]): Promise<Float32Array[]> {
    return this.readMany(names);
  }

  /**
   * Reads many leaves back with one submit and one wait: every leaf is copied into staging
   * buffers of at most `chunkBytes` each (a larger leaf gets its own), which are then mapped
   * together. Reading leaf by leaf costs one sync each (a checkpoint of the demo model, ~1,050
   * leaves, took ~4 s that way on an H200).
   */
  async readMany(names: readonly string[], chunkBytes = 64 << 20): Promise<Float32Array[]> {
    const leaves = names.map((n) => {
      const l = this.leaves.get(n);
      if (!l) throw new Error(`no device tensor named '${n}'`);
      return l;
    });
    // Greedy grouping in request order: [first index, end index, bytes] per staging buffer.
    const groups: [number, number, number][] = [];
    leaves.forEach((l, i) => {
      const g = groups[groups.length - 1];
      const bytes = l.floats * 4;
      if (g && g[2] + bytes <= chunkBytes) (g[1] = i + 1, g[2] += bytes);
      else groups.push([i, i + 1, bytes]);
    });
    const enc = this.device.createCommandEncoder();
    const staging = groups.map(([a, b, bytes]) => {
      const buf = this.device.createBuffer({
        size: Math.max(4, bytes),
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
      let off = 0;
      for (let i = a; i < b; i++) {
        const n = leaves[i].floats * 4;
        if (n > 0) enc.copyBufferToBuffer(leaves[i].buffer, 0, buf, off, n);
        off += n;
      }
      return buf;
    });
    this.device.queue.submit([enc.finish()]);
    await Promise.all(staging.map((b) => b.mapAsync(GPUMapMode.READ)));
    const out: Float32Array[] = new Array(leaves.length);
    groups.forEach(([a, b], k) => {
      const all = new Float32Array(staging[k].getMappedRange());
      let off = 0;
      for (let i = a; i < b; i++) {
        out[i] = all.slice(off, off + leaves[i].floats);
        off += leaves[i].floats;
      }
      staging[k].unmap();
      staging[k].destroy();
    });
    return out;
  }

  /** Copies the first `floats` values of a device buffer to the host (waits for the GPU). */
  async readBuffer(buffer: GPUBuffer, floats: number): Promise<Float32Array> {
    const staging = this.device.createBuffer({
      size: floats * 4,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(buffer, 0, staging, 0, floats * 4);
    this.device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const out = new Float32Array(staging.getMappedRange().slice(0));
    staging.unmap();
    staging.destroy();
    return out;
  }

  /** Creates buffers, pipelines and bind groups for a program. */
  async load(program: Program): Promise<Executable> {
    if (program.target !== "webgpu") {
      throw new Error("WebGPURuntime.load: program was compiled for cpu");
    }
    const buffers: GPUBuffer[] = program.buffers.map((b) => {
      if (b.kind === "temp") {
        return this.device.createBuffer({ size: b.floats * 4, usage: STORAGE });
      }
      return this.leaf(b.name!, b.floats, program.leaves.get(b.name!)!.tensor.shape).buffer;
    });
    const pipes = await Promise.all(
      program.steps.map((s) => this.pipeline(s.kernel.code, s.buffers, s.label)),
    );
    const max = this.ctx.limits.maxComputeWorkgroupsPerDimension;
    const steps = program.steps.map((s, i) => {
      const bindGroup = this.device.createBindGroup({
        label: s.label,
        layout: this.layout(s.buffers),
        entries: s.buffers.map((b, j) => ({ binding: j, resource: { buffer: buffers[b.buffer] } })),
      });
      const n = s.kernel.workgroups;
      const x = Math.min(n, max);
      const y = Math.ceil(n / x);
      if (y > max) {
        throw new Error(`${s.label}: ${n} workgroups exceed the device's dispatch limit`);
      }
      return { pipeline: pipes[i], bindGroup, grid: [x, y] as const, label: s.label };
    });
    return new Executable(this, program, buffers, steps);
  }

  /** The device buffer of a named leaf, created on first use; sizes must agree after that. */
  private leaf(name: string, floats: number, shape: readonly number[]): Leaf {
    let l = this.leaves.get(name);
    if (!l) {
      l = {
        buffer: this.device.createBuffer({ label: name, size: floats * 4, usage: STORAGE }),
        floats,
        shape,
      };
      this.leaves.set(name, l);
    } else if (l.floats !== floats) {
      throw new Error(`'${name}' is [${l.shape}] on the device but a program wants [${shape}]`);
    }
    return l;
  }

  /** The bind group layout for this read/write pattern of storage bindings (cached). */
  private layout(bs: { write: boolean }[]): GPUBindGroupLayout {
    const key = bs.map((b) => (b.write ? "w" : "r")).join("");
    let l = this.layouts.get(key);
    if (!l) {
      l = this.device.createBindGroupLayout({
        entries: bs.map((b, i) => ({
          binding: i,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: b.write ? "storage" : "read-only-storage" },
        })),
      });
      this.layouts.set(key, l);
    }
    return l;
  }

  /** The compute pipeline of a WGSL module and binding pattern, cached by both. */
  private pipeline(
    code: string,
    bs: { write: boolean }[],
    label: string,
  ): Promise<GPUComputePipeline> {
    const key = `${bs.map((b) => (b.write ? "w" : "r")).join("")}\n${code}`;
    let p = this.pipelines.get(key);
    if (!p) {
      p = this.createPipeline(code, bs, label);
      this.pipelines.set(key, p);
    }
    return p;
  }

  /** Compiles a WGSL module into a pipeline; a WGSL error throws with a numbered listing. */
  private async createPipeline(
    code: string,
    bs: { write: boolean }[],
    label: string,
  ): Promise<GPUComputePipeline> {
    this.device.pushErrorScope("validation");
    const module = this.device.createShaderModule({ label, code });
    const err = await this.device.popErrorScope();
    if (err) {
      // A generator bug: show the kernel with line numbers so it can be fixed at once.
      const listing = code.split("\n").map((l, i) => `${String(i + 1).padStart(4)} ${l}`);
      throw new Error(`WGSL of ${label} does not compile: ${err.message}\n${listing.join("\n")}`);
    }
    return this.device.createComputePipelineAsync({
      label,
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [this.layout(bs)] }),
      compute: { module, entryPoint: "main" },
    });
  }

  /** Frees every leaf buffer (pipelines are left to the garbage collector). */
  destroy(): void {
    for (const l of this.leaves.values()) l.buffer.destroy();
    this.leaves.clear();
  }
}

interface ReadyStep {
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  grid: readonly [number, number];
  label: string;
}

/** A loaded program: `run()` records all dispatches into one pass and submits once. */
export class Executable {
  /** Made by `WebGPURuntime.load`; not meant to be called directly. */
  constructor(
    readonly runtime: WebGPURuntime,
    readonly program: Program,
    private readonly buffers: GPUBuffer[],
    private readonly steps: ReadyStep[],
  ) {}

  /** Writes the given inputs, then submits the whole program. Does not wait. */
  run(inputs: Record<string, Float32Array> = {}): void {
    for (const [k, v] of Object.entries(inputs)) this.runtime.write(k, v);
    const enc = this.runtime.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (const s of this.steps) {
      pass.setPipeline(s.pipeline);
      pass.setBindGroup(0, s.bindGroup);
      pass.dispatchWorkgroups(s.grid[0], s.grid[1]);
    }
    pass.end();
    this.runtime.device.queue.submit([enc.finish()]);
  }

  /** Reads a named output (or any leaf) back; this waits for the submitted work. */
  read(name: string): Promise<Float32Array> {
    const o = this.program.outputs.get(name);
    if (!o) return this.runtime.read(name);
    return this.runtime.readBuffer(this.buffers[o.buffer], o.tensor.size);
  }

  /** Per-step timings (ms), one submit and wait per dispatch: for profiling only. */
  async profile(): Promise<{ label: string; ms: number }[]> {
    const res: { label: string; ms: number }[] = [];
    const dev = this.runtime.device;
    for (const s of this.steps) {
      const t0 = performance.now();
      const enc = dev.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(s.pipeline);
      pass.setBindGroup(0, s.bindGroup);
      pass.dispatchWorkgroups(s.grid[0], s.grid[1]);
      pass.end();
      dev.queue.submit([enc.finish()]);
      await dev.queue.onSubmittedWorkDone();
      res.push({ label: s.label, ms: performance.now() - t0 });
    }
    return res;
  }

  /** Frees the program's temporary buffers; leaves stay with the runtime. */
  destroy(): void {
    this.program.buffers.forEach((b, i) => b.kind === "temp" && this.buffers[i].destroy());
  }
}
