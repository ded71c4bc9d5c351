/**
 * Graph -> ONNX: the evaluation graph of a model (lib/models, `training: false`) as an ONNX
 * model (opset 17, IR version 8) with the weights as initializers under their state_dict names,
 * the inputs `image` [N, C, H, W] and, where the model reads text, `text` [N, L, D], and the
 * output `probabilities` [N, K, H, W]; N is symbolic. Each graph node is lowered through the
 * table of lib/export/onnx_ops.ts.
 *
 * The graph has static shapes, so the exporter builds it twice, for two batch sizes: the axes
 * whose sizes differ are the batch-dependent ones (the inputs' N, a reshape's B * T rows...),
 * which become `N` in the declared shapes and 0 / -1 in reshape targets; any other attribute that
 * differs between the two builds stops the export.
 */
import { Graph, type Tensor } from "../graph/mod.ts";
import { schedule } from "../graph/plan.ts";
import type { ModelFn } from "../models/count.ts";
import { TEXT_INPUT } from "../models/lvit.ts";
import {
  type AttributeMsg,
  DataType,
  type DimMsg,
  encodeModel,
  type NodeMsg,
  type TensorMsg,
  type ValueInfoMsg,
} from "./onnx_proto.ts";
import { type Emitter, type Lowering, nodeError, ONNX_OPS, OnnxExportError } from "./onnx_ops.ts";
import denoJson from "../../deno.json" with { type: "json" };

/** The ONNX operator set the export targets (LayerNormalization needs 17). */
export const ONNX_OPSET = 17;
/** The IR version of opset 17. */
export const ONNX_IR_VERSION = 8;
/** The graph's input and output names, by role. */
export const ONNX_NAMES = { image: "image", text: "text", output: "probabilities" } as const;
/** The symbolic batch dimension. */
export const BATCH_DIM = "N";

/** The graph's own input names and their ONNX names. */
const INPUTS = new Map([["x", ONNX_NAMES.image], [TEXT_INPUT, ONNX_NAMES.text]]);
/** The two batch sizes the graph is built for (any two distinct sizes above 1 would do). */
const BATCHES = [2, 3] as const;

/** What `modelToOnnx` exports. */
export interface OnnxExportOptions {
  /** Image channels (3 for the colour planes the data reader makes). */
  channels: number;
  /** Image height and width: the model's `image_size`. */
  size: number;
  /**
   * Weights by state_dict name (a checkpoint's values): every parameter and buffer the
   * evaluation graph reads must be here.
   */
  weights: Map<string, Float32Array>;
  /** String metadata stored in the model's `metadata_props`. */
  metadata?: Record<string, string>;
  /** The graph's name (default `model`). */
  name?: string;
  /** A description stored as the model's `doc_string`. */
  doc?: string;
}

/** An exported model. */
export interface OnnxExport {
  /** The `.onnx` file's bytes. */
  bytes: Uint8Array;
  /** The graph's inputs in order: `image` and, for models that read text, `text`. */
  inputs: string[];
  /** ONNX nodes by op type. */
  onnxOps: Map<string, number>;
  /** Graph nodes exported, by graph op (fused statistics nodes are not counted). */
  graphOps: Map<string, number>;
  /** Number of ONNX nodes. */
  nodes: number;
  /** Number of weight initializers (constants of the lowering not counted). */
  weights: number;
}

/** Builds the evaluation graph for `batch` images. */
function build(model: ModelFn, batch: number, o: OnnxExportOptions) {
  const g = new Graph();
  const out = model({ g, training: false }, g.input("x", [batch, o.channels, o.size, o.size]));
  return { g, out };
}

/**
 * The ONNX inputs the evaluation graph of `model` reads: `image` and, for models that read text,
 * `text` (builds the graph; nothing runs).
 */
export function onnxInputs(model: ModelFn, channels: number, size: number): string[] {
  const g = new Graph();
  const out = model({ g, training: false }, g.input("x", [1, channels, size, size]));
  return schedule([out], []).filter((t) => t.kind === "input").map((t) =>
    INPUTS.get(t.name!) ?? t.name!
  );
}

const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);

/** Whether this machine stores numbers little-endian, as ONNX's raw_data does. */
const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/** The bytes of a float32 or int64 array, little-endian (ONNX's raw_data). */
function rawF32(v: Float32Array): Uint8Array {
  // A view, not a copy: the encoder copies it into the file's buffer.
  if (LITTLE_ENDIAN) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  const out = new Uint8Array(v.length * 4);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < v.length; i++) dv.setFloat32(i * 4, v[i], true);
  return out;
}
function rawI64(v: readonly number[]): Uint8Array {
  const out = new Uint8Array(v.length * 8);
  const dv = new DataView(out.buffer);
  v.forEach((x, i) => dv.setBigInt64(i * 8, BigInt(x), true));
  return out;
}

/**
 * Exports the evaluation graph of `model` with `o.weights` as an ONNX model. Throws an
 * {@link OnnxExportError} (bad input, exit 2) naming the op for a node without an ONNX mapping
 * or whose shapes cannot stay batch-independent, and for a weight the graph reads but
 * `o.weights` lacks.
 * @example
 * ```ts
 * import { buildModel, modelToOnnx } from "./mod.ts";
 * const weights = new Map<string, Float32Array>(); // e.g. a checkpoint's values
 * const { bytes } = modelToOnnx(buildModel("unet-small"), { channels: 3, size: 64, weights });
 * ```
 */
export function modelToOnnx(model: ModelFn, o: OnnxExportOptions): OnnxExport {
  const a = build(model, BATCHES[0], o), b = build(model, BATCHES[1], o);
  if (
    a.g.nodes.length !== b.g.nodes.length ||
    a.g.nodes.some((t, i) => t.op !== b.g.nodes[i].op || t.name !== b.g.nodes[i].name)
  ) {
    throw new Error("onnx export: the model builds different graphs for different batch sizes");
  }
  const twin = (t: Tensor) => b.g.nodes[t.id];
  const batchAxes = (t: Tensor) => t.shape.map((d, i) => d !== twin(t).shape[i]);
  const order = schedule([a.out], []);

  // Pass 1, outputs to inputs: lower every node something reads (fused-away ones never are).
  const lowered = new Map<Tensor, Lowering>();
  const needed = new Set<Tensor>([a.out]);
  for (let i = order.length - 1; i >= 0; i--) {
    const t = order[i];
    if (!needed.has(t) || t.kind !== "node") continue;
    const m = ONNX_OPS[t.op];
    if (!m) {
      throw nodeError(
        t,
        `has no ONNX mapping; the export maps ${Object.keys(ONNX_OPS).sort().join(", ")}`,
      );
    }
    if (!m.batchAttrs && JSON.stringify(t.attrs) !== JSON.stringify(twin(t).attrs)) {
      throw nodeError(t, "has attributes that depend on the batch size");
    }
    const l = m.lower(t);
    lowered.set(t, l);
    for (const r of l.reads) needed.add(r);
  }

  // Pass 2, in graph order: leaves become inputs and initializers, nodes ONNX nodes.
  const names = new Map<Tensor, string>();
  const nodes: NodeMsg[] = [];
  const initializer: TensorMsg[] = [];
  const input: ValueInfoMsg[] = [];
  const consts = new Map<string, string>();
  const onnxOps = new Map<string, number>(), graphOps = new Map<string, number>();
  const valueInfo = (name: string, t: Tensor): ValueInfoMsg => {
    const batch = batchAxes(t);
    const dim: DimMsg[] = t.shape.map((d, i) =>
      batch[i] ? { dim_param: BATCH_DIM } : { dim_value: d }
    );
    return { name, type: { tensor_type: { elem_type: DataType.FLOAT, shape: { dim } } } };
  };
  const constant = (key: string, make: (name: string) => TensorMsg) => {
    let name = consts.get(key);
    if (name === undefined) {
      name = `const.${consts.size}`;
      consts.set(key, name);
      initializer.push(make(name));
    }
    return name;
  };
  let weights = 0;
  for (const t of order) {
    if (!needed.has(t)) continue;
    if (t.kind === "input") {
      const name = INPUTS.get(t.name!);
      if (!name) {
        throw new OnnxExportError(
          `onnx export: the evaluation graph reads the input '${t.name}', which an ONNX model ` +
            `of this export has no counterpart for (known: ${[...INPUTS.keys()].join(", ")})`,
        );
      }
      const info = valueInfo(name, t);
      if (!batchAxes(t)[0] || batchAxes(t).slice(1).some((x) => x)) {
        throw new Error(`onnx export: input ${t} does not have the batch as its first axis`);
      }
      input.push(info);
      names.set(t, name);
      continue;
    }
    if (t.kind === "param" || t.kind === "state") {
      const v = o.weights.get(t.name!);
      if (!v || v.length !== t.size) {
        throw new OnnxExportError(
          `onnx export: weight ${t.name} [${t.shape.join(", ")}] is ${
            v ? `of size ${v.length}` : "missing"
          } in the weights given`,
        );
      }
      initializer.push({
        name: t.name!,
        dims: [...t.shape],
        data_type: DataType.FLOAT,
        raw_data: rawF32(v),
      });
      weights++;
      names.set(t, t.name!);
      continue;
    }
    const out = t === a.out ? ONNX_NAMES.output : `${t.op}_${t.id}`;
    const base = `${t.scope || "model"}/${t.op}_${t.id}`;
    let k = 0;
    const e: Emitter = {
      out,
      v: (x) => {
        const n = names.get(x);
        if (n === undefined) throw new Error(`onnx export: ${x} read before it was written`);
        return n;
      },
      node: (op: string, inputs: string[], attrs: AttributeMsg[] = [], to?: string) => {
        const output = to ?? `${out}.${k}`;
        nodes.push({
          name: k === 0 ? base : `${base}.${k}`,
          op_type: op,
          input: inputs,
          output: [output],
          ...(attrs.length ? { attribute: attrs } : {}),
        });
        k++;
        bump(onnxOps, op);
        return output;
      },
      int64: (v) =>
        constant(`i64:${v.join(",")}`, (name) => ({
          name,
          dims: [v.length],
          data_type: DataType.INT64,
          raw_data: rawI64(v),
        })),
      float32: (v, dims = []) =>
        constant(`f32:${dims.join("x")}:${v.join(",")}`, (name) => ({
          name,
          dims,
          data_type: DataType.FLOAT,
          raw_data: rawF32(Float32Array.from(v)),
        })),
      twin,
    };
    lowered.get(t)!.emit(e);
    if (nodes.length === 0 || nodes[nodes.length - 1].output[0] !== out) {
      throw new Error(`onnx export: the lowering of ${t.op} did not write ${out}`);
    }
    names.set(t, out);
    bump(graphOps, t.op);
  }
  const bytes = encodeModel({
    ir_version: ONNX_IR_VERSION,
    opset_import: [{ domain: "", version: ONNX_OPSET }],
    producer_name: denoJson.name,
    producer_version: denoJson.version,
    ...(o.doc ? { doc_string: o.doc } : {}),
    graph: {
      name: o.name ?? "model",
      node: nodes,
      initializer,
      input,
      output: [valueInfo(ONNX_NAMES.output, a.out)],
    },
    metadata_props: Object.entries(o.metadata ?? {}).map(([key, value]) => ({ key, value })),
  });
  return {
    bytes,
    inputs: input.map((i) => i.name),
    onnxOps,
    graphOps,
    nodes: nodes.length,
    weights,
  };
}
