/**
 * Shared test machinery: device acquisition that honours LVIT_REQUIRE_WEBGPU, seeded data, and
 * `checkOp`, which runs one graph forward and backward on the float64 reference and on WebGPU.
 */
import { acquireDevice, type GpuContext } from "../lib/backends/webgpu/device.ts";
import { WebGPURuntime } from "../lib/backends/webgpu/executor.ts";
import { runRef } from "../lib/backends/ref/interpreter.ts";
import { gradients, Graph, mul, sum, type Tensor } from "../lib/graph/mod.ts";
import { compile } from "../lib/backends/compile.ts";
import type { Program, Target } from "../lib/backends/compile.ts";
import type { KernelClass } from "../kernels/webgpu/types.ts";
import { CpuRuntime } from "../lib/backends/cpu/executor.ts";
import { fillNormal } from "../lib/rng/philox.ts";

/** The device, or null (test ignored) when there is none and WebGPU is not required. */
export async function maybeGpu(): Promise<GpuContext | null> {
  try {
    return await acquireDevice({ quiet: true });
  } catch (e) {
    if (Deno.env.get("LVIT_REQUIRE_WEBGPU") === "1") throw e;
    console.error(`WebGPU tests skipped: ${(e as Error).message}`);
    return null;
  }
}

export const gpu = await maybeGpu();
export const noGpu = gpu === null;

export function randn(n: number, seed: number, scale = 1): Float64Array {
  const a = new Float64Array(n);
  fillNormal(a, seed, 99, 0, 0, scale);
  return a;
}

export function assertClose(
  what: string,
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  atol: number,
  rtol: number,
) {
  if (got.length !== want.length) {
    throw new Error(`${what}: length ${got.length} != ${want.length}`);
  }
  let worst = -1;
  let worstErr = 0;
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i] - want[i]) - (atol + rtol * Math.abs(want[i]));
    if (!(err <= 0) && (worst < 0 || !(err <= worstErr))) {
      worst = i;
      worstErr = err;
    }
  }
  if (worst >= 0) {
    throw new Error(
      `${what}: element ${worst} is ${got[worst]}, expected ${want[worst]} ` +
        `(atol ${atol}, rtol ${rtol})`,
    );
  }
}

export interface OpCase {
  name: string;
  /** Input leaves: name -> [shape, values?]. Values default to seeded normals. */
  inputs: Record<string, { shape: number[]; values?: Float64Array; noGrad?: boolean }>;
  build: (x: Record<string, Tensor>) => Tensor;
  atol?: number;
  rtol?: number;
  /** Skip the backward comparison (ops without gradients). */
  forwardOnly?: boolean;
}

export interface CaseGraph {
  g: Graph;
  y: Tensor;
  loss: Tensor;
  grads: Record<string, Tensor>;
  leaves: Map<string, Float64Array>;
}

/**
 * Builds y = build(inputs) and, unless forwardOnly, loss = sum(y * r) with a fixed random r, and
 * the gradients of the loss with respect to every differentiable input.
 */
export function buildCase(c: OpCase, seed = 1): CaseGraph {
  const g = new Graph();
  const leaves = new Map<string, Float64Array>();
  const xs: Record<string, Tensor> = {};
  let k = 0;
  for (const [name, spec] of Object.entries(c.inputs)) {
    xs[name] = g.input(name, spec.shape);
    leaves.set(name, spec.values ?? randn(xs[name].size, seed * 100 + k++));
  }
  const y = c.build(xs);
  const r = g.input("__r", y.shape);
  leaves.set("__r", randn(y.size, seed * 100 + 77));
  const loss = sum(mul(y, r), y.shape.map((_, i) => i));
  const names = Object.keys(c.inputs).filter((n) => !c.inputs[n].noGrad);
  const grads: Record<string, Tensor> = {};
  if (!c.forwardOnly) {
    gradients(loss, names.map((n) => xs[n])).forEach((t, i) => (grads[`d_${names[i]}`] = t));
  }
  return { g, y, loss, grads, leaves };
}

/**
 * The device's limits with a kernel class forced (LVIT_WEBGPU_KERNELS for one compile), or the
 * device's own when `kernels` is undefined.
 */
export function gpuLimits(kernels?: KernelClass) {
  if (!gpu) return undefined;
  return kernels ? { ...gpu.limits, kernels } : gpu.limits;
}

/**
 * Runs `outputs` on one backend with the given leaf values (rounded to f32); effects update
 * `leaves` in place, as the reference interpreter does. `kernels` forces a WebGPU kernel class;
 * `onProgram` sees the compiled program.
 */
export async function runOn(
  target: Target,
  outputs: Record<string, Tensor>,
  leaves: Map<string, Float64Array>,
  effects: Tensor[] = [],
  kernels?: KernelClass,
  onProgram?: (p: Program) => void,
): Promise<Record<string, Float32Array>> {
  if (target === "webgpu" && !gpu) throw new Error("no GPU");
  const prog = compile(outputs, effects, gpuLimits(kernels), target);
  onProgram?.(prog);
  // A fresh runtime per call: leaves are shared by name within a runtime.
  const rt = target === "webgpu" ? new WebGPURuntime(gpu!) : new CpuRuntime();
  const exe = await rt.load(prog);
  for (const name of prog.leaves.keys()) rt.write(name, Float32Array.from(leaves.get(name)!));
  exe.run();
  const res: Record<string, Float32Array> = {};
  for (const k of Object.keys(outputs)) res[k] = await exe.read(k);
  if (effects.length) {
    for (const name of prog.leaves.keys()) {
      leaves.set(name, Float64Array.from(await rt.read(name)));
    }
  }
  exe.destroy();
  rt.destroy();
  return res;
}

export const runGpu = (o: Record<string, Tensor>, l: Map<string, Float64Array>, e: Tensor[] = []) =>
  runOn("webgpu", o, l, e);
export const runCpu = (o: Record<string, Tensor>, l: Map<string, Float64Array>, e: Tensor[] = []) =>
  runOn("cpu", o, l, e);

/**
 * Forward and backward of one case on a backend against float64, within the case's tolerance;
 * on WebGPU with the device's kernel class or the one `kernels` forces.
 */
export async function checkOp(c: OpCase, target: Target = "webgpu", kernels?: KernelClass) {
  const cg = buildCase(c);
  const outs = { y: cg.y, ...cg.grads };
  const f32Leaves = new Map(
    [...cg.leaves].map(([k, v]) => [k, Float64Array.from(Float32Array.from(v))]),
  );
  const want = runRef(outs, f32Leaves);
  let prog: Program | undefined;
  const got = await runOn(target, outs, f32Leaves, [], kernels, (p) => (prog = p));
  if (kernels && prog?.target === "webgpu" && prog.kernels !== kernels) {
    throw new Error(`${c.name}: compiled with ${prog.kernels} kernels, not ${kernels}`);
  }
  const where = kernels ? `${target} ${kernels}` : target;
  for (const k of Object.keys(outs)) {
    assertClose(`${c.name} ${k} [${where}]`, got[k], want[k], c.atol ?? 1e-5, c.rtol ?? 1e-4);
  }
}

/** Central finite differences of the case's loss in float64 against its autodiff gradients. */
export function fdCheck(c: OpCase, eps = 1e-6, tol = 1e-6) {
  const cg = buildCase(c);
  const grads = runRef(cg.grads, cg.leaves);
  for (const [name, spec] of Object.entries(c.inputs)) {
    if (spec.noGrad) continue;
    const x = cg.leaves.get(name)!;
    const g = grads[`d_${name}`];
    const fd = new Float64Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const x0 = x[i];
      x[i] = x0 + eps;
      const lp = runRef({ l: cg.loss }, cg.leaves).l[0];
      x[i] = x0 - eps;
      const lm = runRef({ l: cg.loss }, cg.leaves).l[0];
      x[i] = x0;
      fd[i] = (lp - lm) / (2 * eps);
    }
    assertClose(`${c.name} finite-difference d_${name}`, g, fd, tol, 1e-5);
  }
}
