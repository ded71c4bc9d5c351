/**
 * `compile` = plan + lower for one backend: the backend-neutral plan of lib/graph/plan.ts (dead
 * code, liveness, buffers) lowered by the chosen backend's table to its steps
 * (lib/backends/webgpu/lower.ts, lib/backends/cpu/lower.ts). Callers that hold a `Backend` pass
 * its `name` and `limits`.
 */
import type { Tensor } from "../graph/graph.ts";
import { SPEC_LIMITS } from "../graph/plan.ts";
import { lower as lowerWebGpu, type WebGpuLimits, type WebGpuProgram } from "./webgpu/lower.ts";
import { type CpuProgram, lower as lowerCpu } from "./cpu/lower.ts";

/** The backend a program is lowered for. */
export type Target = "webgpu" | "cpu";

/** A planned and lowered graph, ready for the `load` of its target's runtime. */
export type Program = WebGpuProgram | CpuProgram;

/**
 * Plans `outputs` and `effects` and lowers the plan for `target` (see the module doc). WebGPU
 * programs get the kernels of `limits.kernels`' class (a device's limits carry its class).
 */
export function compile(
  outputs: Record<string, Tensor>,
  effects: readonly Tensor[] = [],
  limits: WebGpuLimits = SPEC_LIMITS,
  target: Target = "webgpu",
): Program {
  return target === "cpu"
    ? lowerCpu(outputs, effects, limits)
    : lowerWebGpu(outputs, effects, limits);
}
