/**
 * Symbolic tensors, the graph that records them, and the op table. Building a model only records
 * nodes; nothing runs until the graph is planned and lowered (design.md 3). Every node's shape is
 * checked by its op's shape rule at the moment it is created, so a wrong model fails at the line
 * that built it.
 *
 * Each op is declared once (`defineOp`): its shape rule, its gradient rule (a composition of
 * other table ops) and its float64 reference. The graph knows nothing of kernels: each backend
 * lowers ops to its kernels through its own table, keyed by the `OpDef` that `defineOp` returns
 * (lib/backends/webgpu/lower.ts, lib/backends/cpu/lower.ts).
 */
import { type Shape, ShapeError } from "./shape.ts";
import type { InitSpec } from "./init.ts";

/** Where a tensor's value comes from. */
export type TensorKind = "input" | "param" | "state" | "node";

/** An op's static attributes (axes, strides, constants...), as given to `Graph.apply`. */
export type Attrs = Record<string, unknown>;

/** A symbolic f32 tensor with a static shape. */
export class Tensor {
  /** Records a tensor; models create them through `Graph` methods and ops, not directly. */
  constructor(
    readonly graph: Graph,
    readonly id: number,
    readonly kind: TensorKind,
    readonly op: string,
    readonly inputs: readonly Tensor[],
    readonly attrs: Attrs,
    readonly shape: Shape,
    /** Set for inputs, params and states: their persistent or host-visible name. */
    readonly name?: string,
    readonly init?: InitSpec,
  ) {}

  /** Number of dimensions. */
  get rank(): number {
    return this.shape.length;
  }
  /** Number of elements: the product of the shape. */
  get size(): number {
    let n = 1;
    for (const d of this.shape) n *= d;
    return n;
  }
  /** The layer that created this node (`down1.nConvs.0.conv`; `grad:<layer>` in backward). */
  scope = "";

  /** `name#id[HxW...]` (or `op#id[...]` for nodes), for error messages and logs. */
  toString(): string {
    return `${this.name ?? this.op}#${this.id}[${this.shape.join("x")}]`;
  }
}

/** Records tensors in creation order, which is always a valid topological order. */
export class Graph {
  /** Every tensor of the graph in creation order; `Tensor.id` indexes it. */
  readonly nodes: Tensor[] = [];
  /** Side-effect nodes (state assignments, optimiser updates) that must run even without users. */
  readonly effects: Tensor[] = [];
  private readonly named = new Map<string, Tensor>();
  /** Scope recorded on new nodes; layers set it so tools can report results by layer. */
  scope = "";

  /** Runs `f` with `scope` as the current layer name, restoring the previous one after. */
  withScope<T>(scope: string, f: () => T): T {
    const prev = this.scope;
    this.scope = scope;
    try {
      return f();
    } finally {
      this.scope = prev;
    }
  }

  /** A value written by the host before each run (images, masks, learning rate...). */
  input(name: string, shape: Shape): Tensor {
    return this.leaf("input", name, shape);
  }

  /** A trainable parameter, initialised once from `init` and kept on the device. */
  param(name: string, shape: Shape, init: InitSpec): Tensor {
    return this.leaf("param", name, shape, init);
  }

  /** Persistent non-trainable state (BN running statistics, optimiser moments). */
  state(name: string, shape: Shape, init: InitSpec): Tensor {
    return this.leaf("state", name, shape, init);
  }

  /** Looks up an input, param or state by name. */
  get(name: string): Tensor | undefined {
    return this.named.get(name);
  }

  /** The trainable parameters, in registration order. */
  params(): Tensor[] {
    return this.nodes.filter((t) => t.kind === "param");
  }
  /** Inputs, params and states (every tensor that is not an op node), in creation order. */
  leaves(): Tensor[] {
    return this.nodes.filter((t) => t.kind !== "node");
  }

  /** Creates a node of a table op; the op's shape rule validates the inputs now. */
  apply(op: string, inputs: readonly Tensor[], attrs: Attrs = {}): Tensor {
    const def = getOp(op);
    for (const t of inputs) {
      if (t.graph !== this) throw new Error(`${op}: input ${t} belongs to another graph`);
    }
    if (def.arity !== undefined && def.arity !== inputs.length) {
      throw new ShapeError(
        op,
        inputs.map((t) => t.shape),
        `expects ${def.arity} inputs, got ${inputs.length}`,
      );
    }
    const shape = def.shape(inputs.map((t) => t.shape), attrs);
    const t = new Tensor(this, this.nodes.length, "node", op, inputs, attrs, shape);
    t.scope = this.scope;
    this.nodes.push(t);
    if (def.inplace) this.effects.push(t);
    return t;
  }

  /** Registers a named input, param or state, rejecting duplicate names and bad sizes. */
  private leaf(kind: TensorKind, name: string, shape: Shape, init?: InitSpec): Tensor {
    if (this.named.has(name)) throw new Error(`duplicate tensor name '${name}'`);
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) {
        throw new ShapeError(kind, [shape], `'${name}' has a non-integer or negative size`);
      }
    }
    const t = new Tensor(this, this.nodes.length, kind, kind, [], {}, [...shape], name, init);
    this.nodes.push(t);
    this.named.set(name, t);
    return t;
  }
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
 * One entry of the op table: shape rule, gradient rule and float64 reference. Register one with
 * `defineOp`; `Graph.apply` creates nodes of it by name, and backends lower it by this object.
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
