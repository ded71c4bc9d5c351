/**
 * Backend choice: `webgpu`, `cpu`, or `auto`, which takes webgpu on a hardware adapter and the
 * CPU backend on a software adapter or none (Mesa's rasterizer is ~10x slower than BLAS on the
 * same cores, design.md 6). The choice and the reason are printed and recorded.
 */
import { type DeviceLimits, SPEC_LIMITS } from "../graph/plan.ts";
import type { Program, Target } from "./compile.ts";
import { acquireDevice, type GpuContext, NoAdapterError } from "./webgpu/device.ts";
import { WebGPURuntime } from "./webgpu/executor.ts";
import { CpuRuntime } from "./cpu/executor.ts";
import { blasInfo } from "./cpu/blas.ts";
import { threadCount } from "./cpu/threads.ts";

export type { BufferPlan, DeviceLimits, Plan, PlannedNode } from "../graph/plan.ts";
export type { Program, Target } from "./compile.ts";
export type { Step, WebGpuProgram } from "./webgpu/lower.ts";
export type { CpuProgram, CpuStep } from "./cpu/lower.ts";
export type { Binding, KernelClass, WgslKernel } from "../../kernels/webgpu/types.ts";
import type { KernelClass } from "../../kernels/webgpu/types.ts";
export type { CpuKernel } from "../../kernels/cpu/types.ts";
export type { Attrs, Graph, InitSpec, Shape, Tensor, TensorKind } from "../graph/mod.ts";
export type { GpuContext } from "./webgpu/device.ts";

/** A backend by name, or `auto`: webgpu on a hardware adapter, else the CPU backend. */
export type BackendRequest = "auto" | Target;
/** Every accepted `BackendRequest`, for CLI help and validation. */
export const BACKENDS: readonly BackendRequest[] = ["auto", "webgpu", "cpu"];

/** A loaded program, on either backend. */
export interface Exe {
  /** The compiled program this was loaded from. */
  readonly program: Program;
  /** Writes the given inputs, then runs every step (on webgpu: submits without waiting). */
  run(inputs?: Record<string, Float32Array>): void;
  /** A copy of a program output, or of a leaf when `name` is not an output. */
  read(name: string): Promise<Float32Array>;
  /** Frees the program's temporaries; the runtime keeps the leaves. */
  destroy(): void;
}

/** Named leaves and program loading, on either backend. */
export interface Runtime {
  /** Allocates a program's buffers (creating the leaves it uses first) and prepares its steps. */
  load(p: Program): Promise<Exe>;
  /** Overwrites a leaf's whole value; the length must match. */
  write(name: string, data: Float32Array): void;
  /** A copy of a leaf's value (on webgpu, a sync point). */
  read(name: string): Promise<Float32Array>;
  /** Several leaves at once: one sync for all of them, values in the order asked. */
  readMany(names: readonly string[]): Promise<Float32Array[]>;
  /**
   * Several leaves' current values without a copy where the backend keeps them in host memory
   * (cpu: the leaves themselves, valid only until the next run or write); webgpu reads them
   * back as `readMany`. For a checkpoint written before training goes on.
   */
  viewMany(names: readonly string[]): Promise<Float32Array[]>;
  /** Whether a loaded program has created a leaf of this name. */
  hasLeaf(name: string): boolean;
  /** Resolves when submitted work is done (timing). */
  sync(): Promise<void>;
  /** Frees every leaf (and stops CPU helper threads). */
  destroy(): void;
}

/** A chosen backend: what it is, why it was chosen, and a factory for runtimes on it. */
export interface Backend {
  /** Which backend programs must be compiled for. */
  name: Target;
  /** Why this backend was chosen (for logs and env.json). */
  why: string;
  /** Adapter description (webgpu) or the BLAS library (cpu). */
  device: string;
  /** The WebGPU device (webgpu only). */
  gpu?: GpuContext;
  /** Limits to pass to `compile` (the CPU backend allows 2 GiB buffers). */
  limits: DeviceLimits;
  /** A new runtime, with its own leaves, on this backend. */
  runtime(): Runtime;
}

function cpuBackend(why: string): Backend {
  const info = blasInfo();
  const lib = info.library;
  return {
    name: "cpu",
    why,
    device: `cpu, ${threadCount()} thread${threadCount() === 1 ? "" : "s"}, ` +
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
  const own: KernelClass = gpu.software ? "software" : "hardware";
  return {
    name: "webgpu",
    why,
    // The kernel class is part of what results depend on: named where it is not the adapter's.
    device: gpu.kernels === own ? gpu.adapter : `${gpu.adapter}, ${gpu.kernels} kernels`,
    gpu,
    limits: gpu.limits,
    runtime: () => {
      const rt = new WebGPURuntime(gpu);
      return Object.assign(rt, { sync: () => gpu.device.queue.onSubmittedWorkDone() });
    },
  };
}

/**
 * `b` with programs compiled for another kernel class (webgpu; the CPU backend is returned as
 * is): what LVIT_WEBGPU_KERNELS does for a whole process, for one backend value.
 */
export function withKernelClass(b: Backend, kernels: KernelClass): Backend {
  if (b.name !== "webgpu" || !b.gpu) return b;
  return gpuBackend({ ...b.gpu, kernels, limits: { ...b.gpu.limits, kernels } }, b.why);
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
