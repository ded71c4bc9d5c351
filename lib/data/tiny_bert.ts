/**
 * A tiny BERT, built by the project itself, for testing the BERT text encoder (text_bert.ts)
 * without downloading anything: random but deterministic weights (Philox), a WordPiece vocabulary
 * of 144 entries, and the three files `@huggingface/transformers` loads from a local
 * folder: `config.json`, `tokenizer.json` (+ `tokenizer_config.json`, `vocab.txt`) and
 * `onnx/model.onnx`.
 *
 * No exporter (Python, torch) is available here, so the ONNX file is written directly: a minimal
 * protobuf writer for the handful of ONNX messages a model needs (ModelProto, GraphProto,
 * NodeProto, AttributeProto, TensorProto, ValueInfoProto) and a graph of standard opset-17 ops that
 * is the post-LN BERT encoder of HF `BertModel` (embeddings + LayerNorm, self-attention with the
 * additive -10000 mask, erf GELU feed-forward), output `last_hidden_state`.
 *
 * `tinyBertForward` is an independent float64 forward of the same network from the same weights,
 * so a test can check that what the library computes from our ONNX file is BERT and not just
 * "some numbers".
 */
import { erfRef } from "../graph/ops/misc.ts";
import { fillNormal, Stream } from "../rng/philox.ts";

// ---------------------------------------------------------------------------------------------
// Protobuf writer (proto3 wire format: varints, length-delimited fields, fixed32 floats)
// ---------------------------------------------------------------------------------------------

const utf8 = new TextEncoder();

/**
 * Builds one protobuf message. Nested messages are built in their own writer and embedded as
 * bytes, which needs their length up front; models here are small, so buffering is fine.
 */
class PbWriter {
  private parts: Uint8Array[] = [];
  private size = 0;

  private push(bytes: Uint8Array): void {
    this.parts.push(bytes);
    this.size += bytes.length;
  }

  private varint(value: number | bigint): void {
    // int64 fields encode negative values as their 64-bit two's complement (10 bytes).
    let v = BigInt.asUintN(64, BigInt(value));
    const out: number[] = [];
    while (v >= 0x80n) {
      out.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    out.push(Number(v));
    this.push(new Uint8Array(out));
  }

  private tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  /** An int32/int64/enum field (wire type 0). */
  int(field: number, value: number | bigint): this {
    this.tag(field, 0);
    this.varint(value);
    return this;
  }

  /** A float field (wire type 5, little-endian IEEE single). */
  float(field: number, value: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.push(b);
    return this;
  }

  /** A bytes field (wire type 2). */
  bytes(field: number, value: Uint8Array): this {
    this.tag(field, 2);
    this.varint(value.length);
    this.push(value);
    return this;
  }

  /** A string field (UTF-8, wire type 2). */
  string(field: number, value: string): this {
    return this.bytes(field, utf8.encode(value));
  }

  /** An embedded message field (wire type 2). */
  message(field: number, value: PbWriter): this {
    return this.bytes(field, value.finish());
  }

  /** The message's bytes. */
  finish(): Uint8Array {
    const out = new Uint8Array(this.size);
    let o = 0;
    for (const p of this.parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }
}

// ONNX enum values (onnx.proto).
const ELEM_FLOAT = 1;
const ELEM_INT64 = 7;
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_INTS = 7;

type Attr = number | number[] | { float: number };

/**
 * An AttributeProto holding an int, ints or a float. Field numbers here and below are onnx.proto's;
 * repeated scalars are written unpacked, which every protobuf parser must accept.
 */
function attributeProto(name: string, value: Attr): PbWriter {
  const a = new PbWriter().string(1, name);
  if (typeof value === "number") a.int(20, ATTR_INT).int(3, value);
  else if (Array.isArray(value)) {
    a.int(20, ATTR_INTS);
    for (const v of value) a.int(8, v);
  } else a.int(20, ATTR_FLOAT).float(2, value.float);
  return a;
}

function tensorProto(name: string, dims: readonly number[], data: Float32Array | BigInt64Array) {
  const t = new PbWriter();
  for (const d of dims) t.int(1, d);
  t.int(2, data instanceof Float32Array ? ELEM_FLOAT : ELEM_INT64);
  t.string(8, name);
  // raw_data is little-endian by the ONNX spec; every supported host is little-endian, and the
  // check keeps a big-endian one from writing a silently wrong model.
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    throw new Error("tiny_bert: writing ONNX raw_data needs a little-endian host");
  }
  t.bytes(9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return t;
}

/** ValueInfoProto of a tensor whose dims are fixed sizes or symbolic names. */
function valueInfo(name: string, elem: number, dims: readonly (number | string)[]): PbWriter {
  const shape = new PbWriter();
  for (const d of dims) {
    const dim = new PbWriter();
    if (typeof d === "number") dim.int(1, d);
    else dim.string(2, d);
    shape.message(1, dim);
  }
  const tensorType = new PbWriter().int(1, elem).message(2, shape);
  const type = new PbWriter().message(1, tensorType);
  return new PbWriter().string(1, name).message(2, type);
}

/** Accumulates nodes and initializers of one ONNX graph with generated value names. */
class GraphBuilder {
  private nodes: PbWriter[] = [];
  private inits: PbWriter[] = [];
  private count = 0;

  /** Adds a float initializer and returns its name. */
  weight(name: string, dims: readonly number[], data: Float32Array): string {
    this.inits.push(tensorProto(name, dims, data));
    return name;
  }

  /** Adds a float constant (scalar when dims is []) and returns its name. */
  constF(values: number[], dims: readonly number[] = []): string {
    return this.weight(`const_${this.count++}`, dims, new Float32Array(values));
  }

  /** Adds a 1-d int64 constant and returns its name. */
  constI(values: number[]): string {
    const name = `const_${this.count++}`;
    this.inits.push(tensorProto(name, [values.length], new BigInt64Array(values.map(BigInt))));
    return name;
  }

  /** Adds a node with one output and returns the output's name (or `output` when given). */
  op(type: string, inputs: string[], attrs: Record<string, Attr> = {}, output?: string): string {
    const out = output ?? `${type.toLowerCase()}_${this.count++}`;
    const n = new PbWriter();
    for (const i of inputs) n.string(1, i);
    n.string(2, out).string(3, `n${this.count++}_${type}`).string(4, type);
    for (const [k, v] of Object.entries(attrs)) n.message(5, attributeProto(k, v));
    this.nodes.push(n);
    return out;
  }

  /** The serialised ModelProto. */
  model(inputs: PbWriter[], outputs: PbWriter[], opset: number): Uint8Array {
    const g = new PbWriter();
    for (const n of this.nodes) g.message(1, n);
    g.string(2, "tiny_bert");
    for (const t of this.inits) g.message(5, t);
    for (const i of inputs) g.message(11, i);
    for (const o of outputs) g.message(12, o);
    const opsetId = new PbWriter().string(1, "").int(2, opset);
    return new PbWriter()
      .int(1, 8) // ir_version 8 goes with opset 17
      .string(2, "lvit-ts tiny_bert")
      .message(7, g)
      .message(8, opsetId)
      .finish();
  }
}

// ---------------------------------------------------------------------------------------------
// Tiny BERT: configuration, vocabulary, weights
// ---------------------------------------------------------------------------------------------

/** Options of the tiny BERT. */
export interface TinyBertOptions {
  /** Philox seed of the weights. */
  seed?: number;
  /** Hidden size (multiple of `heads`). */
  hidden?: number;
  /** Encoder layers. */
  layers?: number;
  /** Attention heads. */
  heads?: number;
  /** Vocabulary in id order; defaults to `TINY_BERT_VOCAB`. Must contain the 5 special tokens. */
  vocab?: readonly string[];
  /** Feed-forward width (default 4 x hidden). */
  intermediate?: number;
  /** Position embeddings (default 32; the encoder needs at least 25). */
  maxPosition?: number;
}

/** The five special tokens BERT vocabularies have; ids 0..4 of the default vocabulary. */
export const SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] as const;

const WORDS = [
  // The reference's examples (lvit-reference.md 4.4) and the read_text padding words.
  ...("the nuclei are distributed eof xxx pulmonary infection one area middle lower left right " +
    "lung upper bilateral all lobe lobes and of in is with two three four small large cell " +
    "cells tissue image mask dense region regions scattered over most").split(" "),
  // Word stems whose suffixes below make multi-piece words ("sparsely" = sparse ##ly).
  ..."sparse infect un dis lateral spread".split(" "),
];
const SUFFIXES = ["##ly", "##ed", "##ing", "##ilateral", "##ion", "##al", "##er", "##ness"];
const PUNCT = [".", ",", ";", ":", "(", ")", "-", "'", "/", "?", "!", "%"];
const LETTERS = Array.from("abcdefghijklmnopqrstuvwxyz0123456789");

/**
 * Default vocabulary (144 entries): special tokens, punctuation, single characters and
 * their ##-continuations (so any lowercase word tokenises without [UNK]), whole words and
 * suffix pieces.
 */
export const TINY_BERT_VOCAB: readonly string[] = [
  ...SPECIAL_TOKENS,
  ...PUNCT,
  ...LETTERS,
  ...LETTERS.map((c) => `##${c}`),
  ...WORDS,
  ...SUFFIXES,
];

/** Fully resolved configuration of a tiny BERT. */
export interface TinyBertConfig {
  /** Philox seed of the weights. */
  seed: number;
  /** Hidden size. */
  hidden: number;
  /** Encoder layers. */
  layers: number;
  /** Attention heads. */
  heads: number;
  /** Feed-forward width. */
  intermediate: number;
  /** Number of position embeddings. */
  maxPosition: number;
  /** Vocabulary in id order. */
  vocab: readonly string[];
  /** LayerNorm epsilon (BERT's 1e-12). */
  eps: number;
}

/** A weight tensor: row-major float32 values and their dims. */
export interface TinyTensor {
  /** The dimensions, outermost first. */
  dims: number[];
  /** The values, row-major. */
  data: Float32Array;
}

/** Config and named weights. Linear weights are stored [in, out], as MatMul wants them. */
export interface TinyBertWeights {
  /** The resolved configuration the weights were drawn for. */
  config: TinyBertConfig;
  /** Every weight tensor by name (`emb.word`, `emb.pos`, ...), in drawing order. */
  tensors: Map<string, TinyTensor>;
}

function resolveConfig(o: TinyBertOptions): TinyBertConfig {
  const hidden = o.hidden ?? 32;
  const heads = o.heads ?? 2;
  const c: TinyBertConfig = {
    seed: o.seed ?? 0,
    hidden,
    layers: o.layers ?? 2,
    heads,
    intermediate: o.intermediate ?? 4 * hidden,
    maxPosition: o.maxPosition ?? 32,
    vocab: o.vocab ?? TINY_BERT_VOCAB,
    eps: 1e-12,
  };
  for (const [k, v] of Object.entries(c)) {
    if (typeof v === "number" && k !== "seed" && k !== "eps" && (!Number.isInteger(v) || v < 1)) {
      throw new RangeError(`tiny_bert: ${k} must be a positive integer, got ${v}`);
    }
  }
  if (hidden % heads !== 0) {
    throw new RangeError(`tiny_bert: hidden ${hidden} is not a multiple of heads ${heads}`);
  }
  for (const s of SPECIAL_TOKENS) {
    if (!c.vocab.includes(s)) throw new RangeError(`tiny_bert: vocab lacks ${s}`);
  }
  const dup = c.vocab.find((t, i) => c.vocab.indexOf(t) !== i);
  if (dup !== undefined) throw new RangeError(`tiny_bert: vocab lists ${dup} twice`);
  return c;
}

/**
 * Deterministic weights of the tiny BERT: tensor k (in the fixed order below) is Philox normals
 * at step k of (seed, Stream.init). Scales are chosen so the network is far from trivial: unit
 * embeddings, 1/sqrt(fan_in) matrices (attention is not uniform, GELU is not linear), biases and
 * LayerNorm offsets of 0.1, LayerNorm gains 1 +- 0.1.
 */
export function tinyBertWeights(options: TinyBertOptions = {}): TinyBertWeights {
  const c = resolveConfig(options);
  const tensors = new Map<string, TinyTensor>();
  let step = 0;
  const add = (name: string, dims: number[], mean: number, std: number) => {
    const data = new Float32Array(dims.reduce((a, b) => a * b, 1));
    fillNormal(data, c.seed, Stream.init, step++, mean, std);
    tensors.set(name, { dims, data });
  };
  const H = c.hidden, I = c.intermediate;
  add("emb.word", [c.vocab.length, H], 0, 1);
  add("emb.pos", [c.maxPosition, H], 0, 1);
  add("emb.type", [2, H], 0, 1);
  add("emb.ln.g", [H], 1, 0.1);
  add("emb.ln.b", [H], 0, 0.1);
  for (let l = 0; l < c.layers; l++) {
    for (const p of ["q", "k", "v", "o"]) {
      add(`l${l}.${p}.w`, [H, H], 0, 1 / Math.sqrt(H));
      add(`l${l}.${p}.b`, [H], 0, 0.1);
    }
    add(`l${l}.ln1.g`, [H], 1, 0.1);
    add(`l${l}.ln1.b`, [H], 0, 0.1);
    add(`l${l}.ff1.w`, [H, I], 0, 1 / Math.sqrt(H));
    add(`l${l}.ff1.b`, [I], 0, 0.1);
    add(`l${l}.ff2.w`, [I, H], 0, 1 / Math.sqrt(I));
    add(`l${l}.ff2.b`, [H], 0, 0.1);
    add(`l${l}.ln2.g`, [H], 1, 0.1);
    add(`l${l}.ln2.b`, [H], 0, 0.1);
  }
  return { config: c, tensors };
}

/** The ONNX model of `tinyBertWeights` (opset 17), as bytes. */
export function tinyBertOnnx(w: TinyBertWeights): Uint8Array {
  const c = w.config;
  const H = c.hidden, nh = c.heads, dh = H / nh;
  const g = new GraphBuilder();
  const W = (name: string) => {
    const t = w.tensors.get(name)!;
    return g.weight(name, t.dims, t.data);
  };

  // Embeddings: word + token type + position (positions 0..L-1 sliced off the table).
  const word = g.op("Gather", [W("emb.word"), "input_ids"]);
  const type = g.op("Gather", [W("emb.type"), "token_type_ids"]);
  const len = g.op("Shape", ["input_ids"], { start: 1, end: 2 });
  const zero = g.constI([0]);
  const pos = g.op("Slice", [W("emb.pos"), zero, len, zero]);
  const emb = g.op("Add", [g.op("Add", [word, type]), pos]);
  const layerNorm = (x: string, p: string) =>
    g.op("LayerNormalization", [x, W(`${p}.g`), W(`${p}.b`)], { epsilon: { float: c.eps } });
  let x = layerNorm(emb, "emb.ln");

  // HF BERT's extended mask: (1 - mask) * -10000, shape [B, 1, 1, L], added to the scores.
  const maskF = g.op("Cast", ["attention_mask"], { to: ELEM_FLOAT });
  const mask4 = g.op("Unsqueeze", [maskF, g.constI([1, 2])]);
  const ext = g.op("Mul", [g.op("Sub", [g.constF([1]), mask4]), g.constF([-10000])]);

  const headsShape = g.constI([0, 0, nh, dh]);
  const mergedShape = g.constI([0, 0, H]);
  const scale = g.constF([Math.sqrt(dh)]);
  const linear = (v: string, p: string) =>
    g.op("Add", [g.op("MatMul", [v, W(`${p}.w`)]), W(`${p}.b`)]);
  const split = (v: string, perm: number[]) =>
    g.op("Transpose", [g.op("Reshape", [v, headsShape])], { perm });
  for (let l = 0; l < c.layers; l++) {
    const q = split(linear(x, `l${l}.q`), [0, 2, 1, 3]); // [B, nh, L, dh]
    const k = split(linear(x, `l${l}.k`), [0, 2, 3, 1]); // [B, nh, dh, L]
    const v = split(linear(x, `l${l}.v`), [0, 2, 1, 3]);
    const scores = g.op("Add", [g.op("Div", [g.op("MatMul", [q, k]), scale]), ext]);
    const probs = g.op("Softmax", [scores], { axis: -1 });
    const ctx = g.op("Transpose", [g.op("MatMul", [probs, v])], { perm: [0, 2, 1, 3] });
    const merged = g.op("Reshape", [ctx, mergedShape]);
    x = layerNorm(g.op("Add", [linear(merged, `l${l}.o`), x]), `l${l}.ln1`);
    // Exact (erf) GELU, as BERT's "gelu".
    const h = linear(x, `l${l}.ff1`);
    const erf = g.op("Erf", [g.op("Div", [h, g.constF([Math.SQRT2])])]);
    const gelu = g.op("Mul", [
      g.op("Mul", [h, g.constF([0.5])]),
      g.op("Add", [erf, g.constF([1])]),
    ]);
    x = layerNorm(g.op("Add", [linear(gelu, `l${l}.ff2`), x]), `l${l}.ln2`);
  }
  g.op("Identity", [x], {}, "last_hidden_state");

  const dyn = ["batch_size", "sequence_length"];
  return g.model(
    [
      valueInfo("input_ids", ELEM_INT64, dyn),
      valueInfo("attention_mask", ELEM_INT64, dyn),
      valueInfo("token_type_ids", ELEM_INT64, dyn),
    ],
    [valueInfo("last_hidden_state", ELEM_FLOAT, [...dyn, H])],
    17,
  );
}

/** HF-style `config.json` of the tiny BERT. */
export function tinyBertConfigJson(c: TinyBertConfig): Record<string, unknown> {
  return {
    architectures: ["BertModel"],
    model_type: "bert",
    vocab_size: c.vocab.length,
    hidden_size: c.hidden,
    num_hidden_layers: c.layers,
    num_attention_heads: c.heads,
    intermediate_size: c.intermediate,
    hidden_act: "gelu",
    max_position_embeddings: c.maxPosition,
    type_vocab_size: 2,
    layer_norm_eps: c.eps,
    pad_token_id: 0,
    hidden_dropout_prob: 0,
    attention_probs_dropout_prob: 0,
  };
}

/** HF `tokenizers` JSON of an uncased BERT WordPiece tokenizer with this vocabulary. */
export function tinyBertTokenizerJson(vocab: readonly string[]): Record<string, unknown> {
  const id = (t: string) => vocab.indexOf(t);
  const special = (t: string) => ({ SpecialToken: { id: t, type_id: 0 } });
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((t) => ({
      id: id(t),
      content: t,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: {
      type: "BertNormalizer",
      clean_text: true,
      handle_chinese_chars: true,
      strip_accents: null,
      lowercase: true,
    },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: {
      type: "TemplateProcessing",
      single: [special("[CLS]"), { Sequence: { id: "A", type_id: 0 } }, special("[SEP]")],
      pair: [
        special("[CLS]"),
        { Sequence: { id: "A", type_id: 0 } },
        special("[SEP]"),
        { Sequence: { id: "B", type_id: 1 } },
        { SpecialToken: { id: "[SEP]", type_id: 1 } },
      ],
      special_tokens: Object.fromEntries(
        ["[CLS]", "[SEP]"].map((t) => [t, { id: t, ids: [id(t)], tokens: [t] }]),
      ),
    },
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: {
      type: "WordPiece",
      unk_token: "[UNK]",
      continuing_subword_prefix: "##",
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries(vocab.map((t, i) => [t, i])),
    },
  };
}

/** HF `tokenizer_config.json` of an uncased BERT tokenizer. */
export function tinyBertTokenizerConfigJson(): Record<string, unknown> {
  return {
    tokenizer_class: "BertTokenizer",
    do_lower_case: true,
    do_basic_tokenize: true,
    tokenize_chinese_chars: true,
    strip_accents: null,
    model_max_length: 512,
    unk_token: "[UNK]",
    sep_token: "[SEP]",
    pad_token: "[PAD]",
    cls_token: "[CLS]",
    mask_token: "[MASK]",
  };
}

/** Which files `writeTinyBert` writes. */
export interface TinyBertFileOptions {
  /** Write `tokenizer.json` (default true). */
  tokenizerJson?: boolean;
  /** Write `vocab.txt` (default true). */
  vocabTxt?: boolean;
}

/**
 * Writes a tiny BERT model folder into `dir` (created if needed): `config.json`,
 * `tokenizer.json`, `tokenizer_config.json`, `vocab.txt`, `onnx/model.onnx`. Returns the weights,
 * so a test can run `tinyBertForward` on exactly the network that was written.
 */
export async function writeTinyBert(
  dir: string,
  options: TinyBertOptions & TinyBertFileOptions = {},
): Promise<TinyBertWeights> {
  const w = tinyBertWeights(options);
  const json = (v: unknown) => JSON.stringify(v, null, 2) + "\n";
  await Deno.mkdir(`${dir}/onnx`, { recursive: true });
  await Deno.writeTextFile(`${dir}/config.json`, json(tinyBertConfigJson(w.config)));
  if (options.tokenizerJson ?? true) {
    await Deno.writeTextFile(`${dir}/tokenizer.json`, json(tinyBertTokenizerJson(w.config.vocab)));
  }
  await Deno.writeTextFile(`${dir}/tokenizer_config.json`, json(tinyBertTokenizerConfigJson()));
  if (options.vocabTxt ?? true) {
    await Deno.writeTextFile(`${dir}/vocab.txt`, w.config.vocab.join("\n") + "\n");
  }
  await Deno.writeFile(`${dir}/onnx/model.onnx`, tinyBertOnnx(w));
  return w;
}

// ---------------------------------------------------------------------------------------------
// Float64 reference forward
// ---------------------------------------------------------------------------------------------

/** erf in float64 (JS has no Math.erf), error ~1e-16: the graph's reference erf. */
export const erf: (x: number) => number = erfRef;

function layerNormRows(
  x: Float64Array,
  rows: number,
  H: number,
  g: TinyTensor,
  b: TinyTensor,
  eps: number,
) {
  for (let r = 0; r < rows; r++) {
    const row = x.subarray(r * H, (r + 1) * H);
    let mean = 0;
    for (let i = 0; i < H; i++) mean += row[i];
    mean /= H;
    let v = 0;
    for (let i = 0; i < H; i++) v += (row[i] - mean) ** 2;
    const inv = 1 / Math.sqrt(v / H + eps);
    for (let i = 0; i < H; i++) row[i] = (row[i] - mean) * inv * g.data[i] + b.data[i];
  }
}

/** y[rows, out] = x[rows, in] @ w[in, out] + b, in float64. */
function linearRows(x: Float64Array, rows: number, w: TinyTensor, b: TinyTensor): Float64Array {
  const [nin, nout] = w.dims;
  const y = new Float64Array(rows * nout);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < nout; o++) {
      let s = b.data[o];
      for (let i = 0; i < nin; i++) s += x[r * nin + i] * w.data[i * nout + o];
      y[r * nout + o] = s;
    }
  }
  return y;
}

/**
 * Float64 forward of the tiny BERT for one sequence: token ids, token types 0 and an attention
 * mask (1 = attend, default all ones). Returns last_hidden_state as [L, hidden], row-major.
 */
export function tinyBertForward(
  w: TinyBertWeights,
  ids: readonly number[],
  attentionMask?: readonly number[],
): Float64Array {
  const c = w.config;
  const L = ids.length, H = c.hidden, nh = c.heads, dh = H / nh;
  const T = (name: string) => w.tensors.get(name)!;
  if (L > c.maxPosition) throw new RangeError(`tiny_bert: ${L} tokens > ${c.maxPosition}`);
  const mask = attentionMask ?? ids.map(() => 1);
  let x: Float64Array = new Float64Array(L * H);
  const word = T("emb.word"), pos = T("emb.pos"), type = T("emb.type");
  for (let t = 0; t < L; t++) {
    for (let i = 0; i < H; i++) {
      x[t * H + i] = word.data[ids[t] * H + i] + type.data[i] + pos.data[t * H + i];
    }
  }
  layerNormRows(x, L, H, T("emb.ln.g"), T("emb.ln.b"), c.eps);
  for (let l = 0; l < c.layers; l++) {
    const q = linearRows(x, L, T(`l${l}.q.w`), T(`l${l}.q.b`));
    const k = linearRows(x, L, T(`l${l}.k.w`), T(`l${l}.k.b`));
    const v = linearRows(x, L, T(`l${l}.v.w`), T(`l${l}.v.b`));
    const ctx = new Float64Array(L * H);
    const p = new Float64Array(L);
    for (let h = 0; h < nh; h++) {
      for (let i = 0; i < L; i++) {
        let max = -Infinity;
        for (let j = 0; j < L; j++) {
          let s = 0;
          for (let d = 0; d < dh; d++) s += q[i * H + h * dh + d] * k[j * H + h * dh + d];
          p[j] = s / Math.sqrt(dh) + (1 - mask[j]) * -10000;
          max = Math.max(max, p[j]);
        }
        let sum = 0;
        for (let j = 0; j < L; j++) sum += p[j] = Math.exp(p[j] - max);
        for (let d = 0; d < dh; d++) {
          let s = 0;
          for (let j = 0; j < L; j++) s += p[j] * v[j * H + h * dh + d];
          ctx[i * H + h * dh + d] = s / sum;
        }
      }
    }
    const a = linearRows(ctx, L, T(`l${l}.o.w`), T(`l${l}.o.b`));
    for (let i = 0; i < a.length; i++) a[i] += x[i];
    layerNormRows(a, L, H, T(`l${l}.ln1.g`), T(`l${l}.ln1.b`), c.eps);
    x = a;
    const hid = linearRows(x, L, T(`l${l}.ff1.w`), T(`l${l}.ff1.b`));
    for (let i = 0; i < hid.length; i++) hid[i] = 0.5 * hid[i] * (1 + erf(hid[i] / Math.SQRT2));
    const o = linearRows(hid, L, T(`l${l}.ff2.w`), T(`l${l}.ff2.b`));
    for (let i = 0; i < o.length; i++) o[i] += x[i];
    layerNormRows(o, L, H, T(`l${l}.ln2.g`), T(`l${l}.ln2.b`), c.eps);
    x = o;
  }
  return x;
}
