/**
 * The op table. Each op is declared once: its shape rule, its gradient rule (a composition of
 * other table ops), its float64 reference and its WGSL kernels. Everything else (autodiff, the
 * reference interpreter, the compiler, the tests) is derived from these entries.
 */
import type { Shape } from "./shape.ts";
import type { Attrs, Tensor } from "./graph.ts";

/** What one `@binding(i)` of a generated kernel refers to. */
export type Binding =
  | { in: number } // the node's i-th input, read-only
  | { out: true } // the node's output, read-write
  | { scratch: number } // a temporary of this node, read-write
  | { scratchIn: number } // the same temporary read-only by a later dispatch
  | { inplace: number }; // the i-th input, overwritten (effect ops)

/** One compute dispatch of an op. */
export interface WgslKernel {
  /** Complete WGSL module with entry point `main`. */
  code: string;
  /** What each `@binding(i)` of the module refers to, in binding order. */
  bindings: Binding[];
  /**
   * Number of workgroups. The compiler folds it into a 2D grid that respects
   * maxComputeWorkgroupsPerDimension; shaders read their linear id through `num_workgroups`.
   */
  workgroups: number;
}

/** The WGSL side of one node: its dispatches, in order, and the temporaries they share. */
export interface KernelPlan {
  /** The compute dispatches of the node, run in this order. */
  kernels: WgslKernel[];
  /** Sizes (in f32 elements) of temporaries the kernels share; they live only for this node. */
  scratch?: number[];
}

/** Part `part` of `parts` of a CPU kernel's work (`CpuKernel.runPart` and `prepare`). */
export type CpuPartFn = (
  ins: Float32Array[],
  out: Float32Array,
  scratch: Float32Array[],
  part: number,
  parts: number,
) => void;

/**
 * A CPU implementation of one node, specialised to its static shapes when the program is
 * loaded. `run` must not allocate: inputs, output and scratch are planned buffers.
 */
export interface CpuKernel {
  /** Sizes (f32 elements) of temporaries, planned like the WGSL scratch. */
  scratch?: number[];
  /** Computes `out` from `ins`; effect ops update their in-place inputs instead. */
  run(ins: Float32Array[], out: Float32Array, scratch: Float32Array[]): void;
  /**
   * Part `part` of `parts` of `run`, for kernels whose work divides into independent slices of
   * the output (rows, channels, flat ranges): each part writes only its slice, with the same
   * arithmetic in the same order as `run`, so the parts may run on different threads and the
   * result is bitwise `run`'s. Parts must not use `scratch`.
   */
  runPart?: CpuPartFn;
  /**
   * `run` as two stages, for kernels that copy their inputs into scratch first (conv panels):
   * `prepare` part `part` of `parts` writes its own slice of scratch (and of `out`), so the parts
   * may run on different threads at once; `finish`, on one thread, does the rest (GEMMs, which
   * the executor splits itself). `prepare` over all parts then `finish` is bitwise `run`.
   */
  prepare?: CpuPartFn;
  /** The single-threaded second stage of a `prepare`d kernel (see `prepare`). */
  finish?(ins: Float32Array[], out: Float32Array, scratch: Float32Array[]): void;
}

/** What an op's gradient rule is given about the node being differentiated. */
export interface GradArgs<A> {
  /** The node's inputs. */
  x: readonly Tensor[];
  /** The node's output. */
  y: Tensor;
  /** The gradient of the loss with respect to the output. */
  dy: Tensor;
  /** The node's attributes. */
  attrs: A;
}

/**
 * One entry of the op table: shape rule, gradient rule, float64 reference and kernels. Register
 * one with `defineOp`; `Graph.apply` creates nodes of it by name.
 */
export interface OpDef<A extends Attrs = Attrs> {
  /** The op's unique name, as passed to `Graph.apply`. */
  name: string;
  /** Number of inputs, or undefined for variadic ops. */
  arity?: number;
  /** Output shape, or a ShapeError naming the op and the input shapes. */
  shape(ins: Shape[], attrs: A): Shape;
  /** Gradients of the inputs given the output gradient; null where an input gets none. */
  grad?(g: GradArgs<A>): (Tensor | null)[];
  /** Float64 reference. Effect ops mutate their in-place inputs and return an empty array. */
  ref(ins: Float64Array[], inShapes: Shape[], attrs: A, outShape: Shape): Float64Array;
  /** WGSL kernels, specialised to the static shapes. */
  wgsl(ins: Shape[], attrs: A, outShape: Shape): KernelPlan;
  /** CPU kernel, specialised to the static shapes (lib/backends/cpu). */
  cpu?(ins: Shape[], attrs: A, outShape: Shape): CpuKernel;
  /** The output is a view of input 0 with another shape (no kernel, no copy). */
  alias?: boolean;
  /** Indices of inputs this op overwrites; such an op is an effect with an empty output. */
  inplace?: number[];
  /** Multiply-accumulates per call, for `inspect` and benchmarks (0 when not counted). */
  macs?(ins: Shape[], attrs: A, outShape: Shape): number;
}

const table = new Map<string, OpDef>();

/** Registers an op; a second definition under one name is a programming error. */
export function defineOp<A extends Attrs>(def: OpDef<A>): OpDef<A> {
  if (table.has(def.name)) throw new Error(`op '${def.name}' defined twice`);
  table.set(def.name, def as unknown as OpDef);
  return def;
}

/** The op registered under `name`; throws for an unknown op. */
export function getOp(name: string): OpDef {
  const d = table.get(name);
  if (!d) throw new Error(`unknown op '${name}'`);
  return d;
}

/** Every registered op, in registration order. */
export function allOps(): OpDef[] {
  return [...table.values()];
}
