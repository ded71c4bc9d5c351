/**
 * Symbolic tensors and the graph that records them. Building a model only records nodes; nothing
 * runs until the graph is compiled (design.md 3). Every node's shape is checked by its op's shape
 * rule at the moment it is created, so a wrong model fails at the line that built it.
 */
import { type Shape, ShapeError } from "./shape.ts";
import { getOp } from "./op.ts";
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
