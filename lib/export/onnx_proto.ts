/**
 * The ONNX file format: the part of onnx.proto (ONNX IR) the exporter writes and `predict
 * --engine ort` reads, as a protobufjs JSON descriptor with onnx.proto's own message names and
 * field numbers, and typed encode/decode of a `ModelProto`. Fields left out (training info,
 * sparse tensors, functions, quantization annotations) are skipped by the decoder.
 */
import { importProtobuf, type ProtobufType } from "../deps.ts";

/** ONNX `TensorProto.DataType` values used here. */
export const DataType = { FLOAT: 1, INT64: 7 } as const;

/** ONNX `AttributeProto.AttributeType` values used here. */
export const AttrType = { FLOAT: 1, INT: 2, STRING: 3, FLOATS: 6, INTS: 7 } as const;

/** A tensor value: an initializer (raw little-endian bytes, as ONNX Runtime prefers). */
export interface TensorMsg {
  /** The value name nodes refer to it by. */
  name: string;
  /** Its shape. */
  dims: number[];
  /** Its element type (`DataType`). */
  data_type: number;
  /** Its elements, little-endian. */
  raw_data: Uint8Array;
}

/** A node attribute (exactly one of the value fields is set, as `type` says). */
export interface AttributeMsg {
  /** The attribute's name in the op's schema. */
  name: string;
  /** Which value field is set (`AttrType`). */
  type: number;
  /** A float value. */
  f?: number;
  /** An integer value. */
  i?: number;
  /** A string value (UTF-8). */
  s?: Uint8Array;
  /** A list of floats. */
  floats?: number[];
  /** A list of integers. */
  ints?: number[];
}

/** One node of the graph. */
export interface NodeMsg {
  /** A unique name (layer / graph op / id here). */
  name: string;
  /** The ONNX operator. */
  op_type: string;
  /** The operator set's domain; absent or "" for the standard ops. */
  domain?: string;
  /** Input value names ("" for an omitted optional input). */
  input: string[];
  /** Output value names. */
  output: string[];
  /** Its attributes. */
  attribute?: AttributeMsg[];
}

/** One dimension: a size or a symbolic name (the batch `N`). */
export type DimMsg = { dim_value: number } | { dim_param: string };

/** A graph input or output: its name, element type and shape. */
export interface ValueInfoMsg {
  /** The value's name. */
  name: string;
  /** Its element type (`DataType`) and shape. */
  type: { tensor_type: { elem_type: number; shape: { dim: DimMsg[] } } };
  /** A description. */
  doc_string?: string;
}

/** The graph: nodes in topological order, weights as initializers, inputs and outputs. */
export interface GraphMsg {
  /** The graph's name. */
  name: string;
  /** Its nodes in topological order. */
  node: NodeMsg[];
  /** Weights and constants. */
  initializer: TensorMsg[];
  /** Inputs fed at run time. */
  input: ValueInfoMsg[];
  /** Outputs. */
  output: ValueInfoMsg[];
  /** A description. */
  doc_string?: string;
}

/** A whole model file. */
export interface ModelMsg {
  /** The IR version the file follows. */
  ir_version: number;
  /** The operator sets its nodes bind to. */
  opset_import: { domain?: string; version: number }[];
  /** The tool that wrote it. */
  producer_name: string;
  /** That tool's version. */
  producer_version: string;
  /** A description. */
  doc_string?: string;
  /** The graph. */
  graph: GraphMsg;
  /** String metadata. */
  metadata_props: { key: string; value: string }[];
}

type Field = { type: string; id: number; rule?: "repeated" };
const f = (type: string, id: number): Field => ({ type, id });
const rep = (type: string, id: number): Field => ({ type, id, rule: "repeated" });

/** onnx.proto (IR version 8 onwards) as a protobufjs JSON descriptor, package `onnx`. */
const SCHEMA = {
  nested: {
    onnx: {
      nested: {
        ModelProto: {
          fields: {
            ir_version: f("int64", 1),
            opset_import: rep("OperatorSetIdProto", 8),
            producer_name: f("string", 2),
            producer_version: f("string", 3),
            domain: f("string", 4),
            model_version: f("int64", 5),
            doc_string: f("string", 6),
            graph: f("GraphProto", 7),
            metadata_props: rep("StringStringEntryProto", 14),
          },
        },
        OperatorSetIdProto: { fields: { domain: f("string", 1), version: f("int64", 2) } },
        StringStringEntryProto: { fields: { key: f("string", 1), value: f("string", 2) } },
        GraphProto: {
          fields: {
            node: rep("NodeProto", 1),
            name: f("string", 2),
            initializer: rep("TensorProto", 5),
            doc_string: f("string", 10),
            input: rep("ValueInfoProto", 11),
            output: rep("ValueInfoProto", 12),
            value_info: rep("ValueInfoProto", 13),
          },
        },
        NodeProto: {
          fields: {
            input: rep("string", 1),
            output: rep("string", 2),
            name: f("string", 3),
            op_type: f("string", 4),
            domain: f("string", 7),
            attribute: rep("AttributeProto", 5),
            doc_string: f("string", 6),
          },
        },
        AttributeProto: {
          fields: {
            name: f("string", 1),
            doc_string: f("string", 13),
            type: f("int32", 20),
            f: f("float", 2),
            i: f("int64", 3),
            s: f("bytes", 4),
            t: f("TensorProto", 5),
            floats: rep("float", 7),
            ints: rep("int64", 8),
            strings: rep("bytes", 9),
          },
        },
        TensorProto: {
          fields: {
            dims: rep("int64", 1),
            data_type: f("int32", 2),
            float_data: rep("float", 4),
            int32_data: rep("int32", 5),
            int64_data: rep("int64", 7),
            name: f("string", 8),
            raw_data: f("bytes", 9),
            doc_string: f("string", 12),
            external_data: rep("StringStringEntryProto", 13),
            data_location: f("int32", 14),
          },
        },
        ValueInfoProto: {
          fields: { name: f("string", 1), type: f("TypeProto", 2), doc_string: f("string", 3) },
        },
        TypeProto: {
          oneofs: { value: { oneof: ["tensor_type"] } },
          fields: { tensor_type: f("TypeProto.Tensor", 1), denotation: f("string", 6) },
          nested: {
            Tensor: { fields: { elem_type: f("int32", 1), shape: f("TensorShapeProto", 2) } },
          },
        },
        TensorShapeProto: {
          fields: { dim: rep("TensorShapeProto.Dimension", 1) },
          nested: {
            Dimension: {
              oneofs: { value: { oneof: ["dim_value", "dim_param"] } },
              fields: {
                dim_value: f("int64", 1),
                dim_param: f("string", 2),
                denotation: f("string", 3),
              },
            },
          },
        },
      },
    },
  },
};

// protobufjs is loaded when this module is (top-level await), not with lib/deps.ts: the
// commands that never touch ONNX (run, eval, the demo) do not download it.
const protobuf = await importProtobuf();
let modelType: ProtobufType | null = null;

/** The `onnx.ModelProto` message type, built once from the descriptor. */
function model(): ProtobufType {
  return modelType ??= protobuf.Root.fromJSON(SCHEMA).lookupType("onnx.ModelProto");
}

/** Serialises a model to the bytes of an `.onnx` file. */
export function encodeModel(m: ModelMsg): Uint8Array {
  const t = model();
  const err = t.verify(m);
  if (err) throw new Error(`onnx: invalid model message: ${err}`);
  return t.encode(t.fromObject(m)).finish();
}

/**
 * Parses the bytes of an `.onnx` file (int64 fields as numbers, bytes as Uint8Array views of
 * `bytes`). Throws protobufjs's error on malformed input.
 */
export function decodeModel(bytes: Uint8Array): ModelMsg {
  const t = model();
  return t.toObject(t.decode(bytes), { longs: Number, defaults: false, arrays: true }) as ModelMsg;
}
