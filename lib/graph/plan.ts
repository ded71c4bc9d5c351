/**
 * Graph -> Plan, the backend-neutral half of compiling (design.md 3): dead-code elimination,
 * liveness-based buffer planning and the buffer-size limit. The plan is complete before any
 * device exists, so peak memory is known up front. Each backend then lowers the planned nodes to
 * its kernels (`lower` in lib/backends/webgpu/lower.ts and lib/backends/cpu/lower.ts), checking
 * its own per-kernel limits with a message naming the offending node.
 */
import { getOp, type Tensor } from "./graph.ts";
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

/**
 * One live node of a plan, in execution order (alias nodes have none: they share their input's
 * buffer). Backends lower each to their kernels over these buffers.
 */
export interface PlannedNode {
  /** The graph node. */
  tensor: Tensor;
  /** `op#id`, for profiles and error messages. */
  label: string;
  /** Buffer of each input (in-place targets included), in input order. */
  ins: number[];
  /** Output buffer; -1 for effects, which have no output. */
  out: number;
  /** Buffers of the temporaries the backend asked for (`ScratchRequest`). */
  scratch: number[];
}

/**
 * The backend-neutral part of compiling a graph: dead-code elimination, liveness and the buffer
 * plan. Peak memory is fixed here (`leafBytes` + `tempBytes`). A backend's `lower` turns the
 * planned nodes into its steps (lib/backends/webgpu/lower.ts, lib/backends/cpu/lower.ts).
 */
export interface Plan {
  /** Every buffer of the plan; nodes refer to them by index. */
  buffers: BufferPlan[];
  /** Inputs, params and states used by the program, by name. */
  leaves: Map<string, { buffer: number; tensor: Tensor }>;
  /** The requested outputs, by the names given to `plan`. */
  outputs: Map<string, { buffer: number; tensor: Tensor }>;
  /** Bytes of all temporaries at once: the planned peak above the leaves. */
  tempBytes: number;
  /** Bytes of all leaves (inputs, params, states) the program uses. */
  leafBytes: number;
  /** Live nodes in execution order (effects last), for the reference interpreter. */
  order: Tensor[];
  /** The live non-alias nodes with their buffers, in execution order. */
  nodes: PlannedNode[];
}

/**
 * Sizes (f32 elements) of the temporaries a backend's kernels need for one node. It is the only
 * backend input to the plan: temporaries are planned with the graph's values, so they reuse
 * buffers of dead values like any other (WGSL split-K partials, CPU im2col panels).
 */
export type ScratchRequest = (node: Tensor) => number[];

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
 * Plans a graph for the given outputs and effects: dead-code elimination, liveness-based buffer
 * reuse (best fit among buffers whose last reader has run) and the device's buffer-size limit.
 * `scratch` is asked for each live node's temporaries once, in execution order.
 */
export function plan(
  outputs: Record<string, Tensor>,
  effects: readonly Tensor[] = [],
  limits: DeviceLimits = SPEC_LIMITS,
  scratch: ScratchRequest = () => [],
): Plan {
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

  const nodes: PlannedNode[] = [];
  order.forEach((t, i) => {
    if (t.kind !== "node") return;
    const def = getOp(t.op);
    if (def.alias) {
      bufOf.set(t, bufOf.get(root(t))!);
      return;
    }
    const label = `${t.op}#${t.id}`;
    if (!def.inplace) bufOf.set(t, take(Math.max(1, numel(t.shape))));
    for (const k of def.inplace ?? []) {
      const target = t.inputs[k];
      if (target.kind !== "param" && target.kind !== "state") {
        throw new Error(`${label}: in-place target ${target} is not a param or state`);
      }
    }
    const temps = scratch(t).map((n) => take(Math.max(1, n)));
    nodes.push({
      tensor: t,
      label,
      ins: t.inputs.map((x) => bufOf.get(x)!),
      out: def.inplace ? -1 : bufOf.get(t)!,
      scratch: temps,
    });
    for (const s of temps) free.push(s);
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
    buffers,
    leaves,
    outputs: outs,
    tempBytes: bytes("temp"),
    leafBytes: bytes("leaf"),
    order,
    nodes,
  };
}
