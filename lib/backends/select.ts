/**
 * Backend choice: `webgpu`, `cpu`, or `auto`, which takes webgpu on a hardware adapter and the
 * CPU backend on a software adapter or none (Mesa's rasterizer is ~10x slower than BLAS on the
 * same cores, design.md 6). The choice and the reason are printed and recorded.
 */
import type { Program, Target } from "../graph/compile.ts";
import { SPEC_LIMITS } from "../graph/compile.ts";
import { acquireDevice, type GpuContext, NoAdapterError } from "./webgpu/device.ts";
import { WebGPURuntime } from "./webgpu/executor.ts";
import { CpuRuntime } from "./cpu/executor.ts";
import { blasInfo } from "./cpu/blas.ts";
import { threadCount } from "./cpu/threads.ts";

export type BackendRequest = "auto" | Target;
export const BACKENDS: readonly BackendRequest[] = ["auto", "webgpu", "cpu"];

/** A loaded program, on either backend. */
export interface Exe {
  readonly program: Program;
  run(inputs?: Record<string, Float32Array>): void;
  read(name: string): Promise<Float32Array>;
  destroy(): void;
}

/** Named leaves and program loading, on either backend. */
export interface Runtime {
  load(p: Program): Promise<Exe>;
  write(name: string, data: Float32Array): void;
  read(name: string): Promise<Float32Array>;
  /** Several leaves at once: one sync for all of them, values in the order asked. */
  readMany(names: readonly string[]): Promise<Float32Array[]>;
  hasLeaf(name: string): boolean;
  /** Resolves when submitted work is done (timing). */
  sync(): Promise<void>;
  destroy(): void;
}

export interface Backend {
  name: Target;
  /** Why this backend was chosen (for logs and env.json). */
  why: string;
  /** Adapter description (webgpu) or the BLAS library (cpu). */
  device: string;
  gpu?: GpuContext;
  limits: typeof SPEC_LIMITS;
  runtime(): Runtime;
}

function cpuBackend(why: string): Backend {
  const info = blasInfo();
  const lib = info.library;
  return {
    name: "cpu",
    why,
    device: `cpu, ${threadCount()} threads, ` +
      (lib
        ? `BLAS ${lib}${info.kernels ? ` (${info.kernels} kernels)` : ""}`
        : "TypeScript GEMM (no BLAS found)"),
    limits: { ...SPEC_LIMITS, maxStorageBufferBindingSize: 2 ** 31 - 4 },
    runtime: () => {
      const rt = new CpuRuntime();
      return Object.assign(rt, { sync: () => Promise.resolve() });
    },
  };
}

function gpuBackend(gpu: GpuContext, why: string): Backend {
  return {
    name: "webgpu",
    why,
    device: gpu.adapter,
    gpu,
    limits: gpu.limits,
    runtime: () => {
      const rt = new WebGPURuntime(gpu);
      return Object.assign(rt, { sync: () => gpu.device.queue.onSubmittedWorkDone() });
    },
  };
}

/** Resolves a backend request; prints the choice and why unless `quiet`. */
export async function selectBackend(req: BackendRequest, quiet = false): Promise<Backend> {
  let b: Backend;
  if (req === "cpu") b = cpuBackend("requested");
  else if (req === "webgpu") b = gpuBackend(await acquireDevice({ quiet }), "requested");
  else {
    try {
      const gpu = await acquireDevice({ quiet: true });
      b = gpu.software
        ? cpuBackend(`auto: '${gpu.adapter}' is a software adapter, the CPU backend is faster`)
        : gpuBackend(gpu, `auto: hardware adapter '${gpu.adapter}'`);
    } catch (e) {
      if (!(e instanceof NoAdapterError)) throw e;
      b = cpuBackend("auto: no WebGPU adapter");
    }
  }
  if (!quiet) console.error(`backend: ${b.name} (${b.why}; ${b.device})`);
  return b;
}
