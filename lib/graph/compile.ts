/**
 * Graph -> Program: dead-code elimination, liveness-based buffer planning and kernel generation.
 * The plan is complete before any device exists, so peak memory is known up front and every
 * device limit is checked here, at compile time, with a message naming the offending node.
 */
import type { Attrs, Tensor } from "./graph.ts";
import type { Shape } from "./shape.ts";
import { type Binding, type CpuKernel, getOp, type WgslKernel } from "./op.ts";
import { numel } from "./shape.ts";

/** One planned f32 buffer of a program: a named leaf or a temporary shared over time. */
export interface BufferPlan {
  /** Size in f32 elements (at least 1: WebGPU rejects empty bindings). */
  floats: number;
  /** Leaves are persistent/host-visible by name; temps are reused by disjoint lifetimes. */
  kind: "leaf" | "temp";
  /** The leaf's tensor name (leaves only). */
  name?: string;
}

/** One WebGPU dispatch of a program: its kernel and the buffers bound to it. */
export interface Step {
  /** `op#id`, for profiles and error messages. */
  label: string;
  /** The WGSL module and workgroup count of this dispatch. */
  kernel: WgslKernel;
  /** Buffer index per binding, and whether the binding is written. */
  buffers: { buffer: number; write: boolean }[];
}

/** One node on the CPU backend: its kernel and the buffers it reads and writes. */
export interface CpuStep {
  /** `op#id`, for profiles and error messages. */
  label: string;
  /** The kernel specialised to this node's shapes. */
  kernel: CpuKernel;
  /** What the kernel was made from, so another thread can make the same one. */
  node: { op: string; inShapes: Shape[]; attrs: Attrs; outShape: Shape };
  /** Buffer and element count per input (in-place targets included). */
  ins: { buffer: number; size: number }[];
  /** Output buffer and element count; size 0 for effects. */
  out: { buffer: number; size: number };
  /** Buffer and element count of each temporary the kernel asked for. */
  scratch: { buffer: number; size: number }[];
}

/** The backend a program is compiled for. */
export type Target = "webgpu" | "cpu";

/**
 * A compiled graph: the buffer plan and the steps of one target, ready for a runtime's `load`.
 * Peak memory is fixed here (`leafBytes` + `tempBytes`).
 */
export interface Program {
  /** The backend the steps were generated for. */
  target: Target;
  /** WebGPU dispatches, in order (empty for the cpu target). */
  steps: Step[];
  /** CPU node steps, in order (empty for the webgpu target). */
  cpuSteps: CpuStep[];
  /** Every buffer of the plan; steps refer to them by index. */
  buffers: BufferPlan[];
  /** Inputs, params and states used by the program, by name. */
  leaves: Map<string, { buffer: number; tensor: Tensor }>;
  /** The requested outputs, by the names given to `compile`. */
  outputs: Map<string, { buffer: number; tensor: Tensor }>;
  /** Bytes of all temporaries at once: the planned peak above the leaves. */
  tempBytes: number;
  /** Bytes of all leaves (inputs, params, states) the program uses. */
  leafBytes: number;
  /** Live nodes in execution order (effects last), for the reference interpreter. */
  order: Tensor[];
}

/** The WebGPU limits a program is checked against at compile time. */
export interface DeviceLimits {
  /** Largest storage buffer one binding may cover, in bytes. */
  maxStorageBufferBindingSize: number;
  /** Most storage buffers one kernel may bind. */
  maxStorageBuffersPerShaderStage: number;
  /** Most workgroups along one dispatch dimension. */
  maxComputeWorkgroupsPerDimension: number;
}

/** Spec minimums, used when compiling without a device (inspect, tests). */
export const SPEC_LIMITS: DeviceLimits = {
  maxStorageBufferBindingSize: 134217728,
  maxStorageBuffersPerShaderStage: 8,
  maxComputeWorkgroupsPerDimension: 65535,
};

/** Live nodes in execution order: creation order, with effect nodes moved to the end. */
export function schedule(outputs: readonly Tensor[], effects: readonly Tensor[]): Tensor[] {
  const live = new Set<Tensor>();
  const stack = [...outputs, ...effects];
  while (stack.length) {
    const t = stack.pop()!;
    if (live.has(t)) continue;
    live.add(t);
    stack.push(...t.inputs);
  }
  const sorted = [...live].sort((a, b) => a.id - b.id);
  const isEffect = (t: Tensor) => t.kind === "node" && !!getOp(t.op).inplace;
  return [...sorted.filter((t) => !isEffect(t)), ...sorted.filter(isEffect)];
}

/**
 * Compiles for one backend. The plan of every graph tensor is the same for both targets; only
 * the per-node scratch (WGSL split-K partials vs CPU im2col panels) differs.
 */
export function compile(
  outputs: Record<string, Tensor>,
  effects: readonly Tensor[] = [],
  limits: DeviceLimits = SPEC_LIMITS,
  target: Target = "webgpu",
): Program {
  const order = schedule(Object.values(outputs), effects);
  const buffers: BufferPlan[] = [];
  const bufOf = new Map<Tensor, number>();
  const leaves = new Map<string, { buffer: number; tensor: Tensor }>();

  // Liveness on storage roots: a reshape shares its input's buffer.
  const root = (
    t: Tensor,
  ): Tensor => (t.kind === "node" && getOp(t.op).alias ? root(t.inputs[0]) : t);
  const lastUse = new Map<Tensor, number>();
  order.forEach((t, i) => t.inputs.forEach((x) => lastUse.set(root(x), i)));
  for (const t of Object.values(outputs)) lastUse.set(root(t), Infinity);

  for (const t of order) {
    if (t.kind !== "node") {
      buffers.push({ floats: Math.max(1, t.size), kind: "leaf", name: t.name });
      bufOf.set(t, buffers.length - 1);
      leaves.set(t.name!, { buffer: buffers.length - 1, tensor: t });
    }
  }

  // Best-fit reuse of temporaries whose last reader has run; a free buffer too small for the
  // request grows rather than a new one being made, which keeps the buffer count low.
  const free: number[] = [];
  const take = (floats: number): number => {
    let best = -1;
    for (const b of free) {
      if (buffers[b].floats >= floats && (best < 0 || buffers[b].floats < buffers[best].floats)) {
        best = b;
      }
    }
    if (best < 0 && free.length) {
      best = free.reduce((a, b) => (buffers[b].floats > buffers[a].floats ? b : a));
      buffers[best].floats = floats;
    }
    if (best >= 0) {
      free.splice(free.indexOf(best), 1);
      return best;
    }
    buffers.push({ floats, kind: "temp" });
    return buffers.length - 1;
  };

  const steps: Step[] = [];
  const cpuSteps: CpuStep[] = [];
  order.forEach((t, i) => {
    if (t.kind !== "node") return;
    const def = getOp(t.op);
    if (def.alias) {
      bufOf.set(t, bufOf.get(root(t))!);
      return;
    }
    const label = `${t.op}#${t.id}`;
    const inShapes = t.inputs.map((x) => x.shape);
    if (!def.inplace) bufOf.set(t, take(Math.max(1, numel(t.shape))));
    if (target === "cpu") {
      if (!def.cpu) throw new Error(`op '${t.op}' has no cpu kernel`);
      const kernel = def.cpu(inShapes, t.attrs, t.shape);
      const sizes = kernel.scratch ?? [];
      const scratch = sizes.map((n) => take(Math.max(1, n)));
      cpuSteps.push({
        label,
        kernel,
        node: { op: t.op, inShapes, attrs: t.attrs, outShape: t.shape },
        ins: t.inputs.map((x) => ({ buffer: bufOf.get(x)!, size: x.size })),
        out: def.inplace ? { buffer: -1, size: 0 } : { buffer: bufOf.get(t)!, size: t.size },
        scratch: scratch.map((b, k) => ({ buffer: b, size: sizes[k] })),
      });
      for (const s of scratch) free.push(s);
    }
    const plan = target === "webgpu" ? def.wgsl(inShapes, t.attrs, t.shape) : { kernels: [] };
    const scratch = (plan.scratch ?? []).map((n) => take(Math.max(1, n)));
    for (const k of plan.kernels) {
      const bs = k.bindings.map((b: Binding) => {
        if ("in" in b) return { buffer: bufOf.get(t.inputs[b.in])!, write: false };
        if ("inplace" in b) {
          const target = t.inputs[b.inplace];
          if (target.kind !== "param" && target.kind !== "state") {
            throw new Error(`${label}: in-place target ${target} is not a param or state`);
          }
          return { buffer: bufOf.get(target)!, write: true };
        }
        if ("out" in b) return { buffer: bufOf.get(t)!, write: true };
        if ("scratch" in b) return { buffer: scratch[b.scratch], write: true };
        return { buffer: scratch[b.scratchIn], write: false };
      });
      checkBindings(label, bs, limits);
      steps.push({ label, kernel: k, buffers: bs });
    }
    for (const s of scratch) free.push(s);
    for (const x of new Set(t.inputs.map(root))) {
      if (x.kind === "node" && lastUse.get(x) === i) free.push(bufOf.get(x)!);
    }
  });

  for (const [i, b] of buffers.entries()) {
    if (b.floats * 4 > limits.maxStorageBufferBindingSize) {
      throw new Error(
        `buffer ${b.name ?? i} needs ${b.floats * 4} bytes, over the device's ` +
          `maxStorageBufferBindingSize ${limits.maxStorageBufferBindingSize}; ` +
          `reduce batch size or image size`,
      );
    }
  }
  const outs = new Map<string, { buffer: number; tensor: Tensor }>();
  for (const [name, t] of Object.entries(outputs)) {
    outs.set(name, { buffer: bufOf.get(t)!, tensor: t });
  }
  const bytes = (k: BufferPlan["kind"]) =>
    buffers.filter((b) => b.kind === k).reduce((s, b) => s + 4 * b.floats, 0);
  return {
    target,
    steps,
    cpuSteps,
    buffers,
    leaves,
    outputs: outs,
    tempBytes: bytes("temp"),
    leafBytes: bytes("leaf"),
    order,
  };
}

function checkBindings(label: string, bs: { buffer: number; write: boolean }[], l: DeviceLimits) {
  if (bs.length > l.maxStorageBuffersPerShaderStage) {
    throw new Error(
      `${label} binds ${bs.length} storage buffers; the device allows ${l.maxStorageBuffersPerShaderStage}`,
    );
  }
  // WebGPU forbids a buffer being both written and bound again within one dispatch.
  for (const a of bs) {
    if (a.write && bs.filter((b) => b.buffer === a.buffer).length > 1) {
      throw new Error(`${label} would bind buffer ${a.buffer} as writable and again`);
    }
  }
}
