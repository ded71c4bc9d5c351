/**
 * The `bert` text encoder: the reference's BERT token features (lvit-reference.md 4.4) from a
 * local model folder, run by `@huggingface/transformers` (ONNX Runtime).
 *
 * Pipeline, as the reference's `bert-embedding` package does it:
 * 1. `read_text` padding and first line (`prepareText`, shared with the builtin encoder);
 * 2. uncased basic tokenisation (`basicTokenize`) and greedy longest-match WordPiece;
 * 3. at most 23 wordpieces (max_seq_length 25 minus [CLS] and [SEP]), cut before BERT runs;
 * 4. `[CLS] pieces [SEP]`, token types 0, attention mask of ones, last-layer hidden states;
 * 5. drop [CLS]/[SEP], merge each word's pieces (a piece starting with "##" continues the word
 *    before it) by averaging their vectors;
 * 6. keep the first N words, zero rows after the last one.
 *
 * Tokenisation is done here rather than by the library's tokenizer because step 5 needs to know
 * which pieces form a word, and because a model folder may have only `vocab.txt`. The tests check
 * that the two tokenisers agree on tokenizer.json.
 *
 * The model is loaded only from the named folder: remote downloads and the library's file cache
 * are switched off, so nothing is fetched and nothing is written.
 */
import { createHash } from "node:crypto";
import { resolve } from "node:path";
import { importTransformers } from "../deps.ts";
import { DataError, describeError } from "./errors.ts";
import { basicTokenize, prepareText } from "./text_builtin.ts";

/** The reference's `max_seq_length`: [CLS] + at most 23 wordpieces + [SEP]. */
export const BERT_MAX_SEQ_LENGTH = 25;

/** Version of this pipeline, part of every encoder id. Bump it when the features change. */
export const BERT_PIPELINE_VERSION = "bert-wordavg-v1";

/** gluonnlp's limit (the reference's tokenizer): longer words become [UNK]. */
const MAX_CHARS_PER_WORD = 200;

/** What a model folder must hold, for error messages. */
export const BERT_EXPECTED_FILES = "expected a BERT model folder holding config.json " +
  '(model_type "bert", hidden_size), tokenizer.json (WordPiece) or vocab.txt ' +
  "(tokenizer_config.json optional), and onnx/model.onnx (an fp32 ONNX export of BertModel with " +
  "inputs input_ids, attention_mask, token_type_ids and output last_hidden_state)";

/** A WordPiece vocabulary. */
export interface BertVocab {
  /** Token of each id. */
  tokens: string[];
  /** Id of each token. */
  ids: Map<string, number>;
  /** The file it was read from. */
  file: string;
}

/** Ids of the special tokens the pipeline uses. */
interface SpecialIds {
  cls: number;
  sep: number;
  unk: number;
}

/**
 * Greedy longest-match-first WordPiece of one basic token (the algorithm of BERT and gluonnlp):
 * the longest vocabulary prefix, then the longest "##"-prefixed continuation, and so on; a word
 * with an unmatched rest, or longer than 200 characters, is one [UNK].
 */
export function wordPiece(word: string, vocab: ReadonlyMap<string, number>): string[] {
  const chars = Array.from(word); // code points, as Python's str indexing
  if (chars.length > MAX_CHARS_PER_WORD) return ["[UNK]"];
  const pieces: string[] = [];
  let start = 0;
  while (start < chars.length) {
    let end = chars.length;
    let found: string | null = null;
    while (start < end) {
      const sub = (start > 0 ? "##" : "") + chars.slice(start, end).join("");
      if (vocab.has(sub)) {
        found = sub;
        break;
      }
      end--;
    }
    if (found === null) return ["[UNK]"];
    pieces.push(found);
    start = end;
  }
  return pieces;
}

/**
 * The wordpieces BERT sees for a description: `prepareText`, `basicTokenize`, `wordPiece` per
 * token, cut to the first 23 (max_seq_length 25 less [CLS] and [SEP]).
 */
export function bertWordPieces(text: string, vocab: ReadonlyMap<string, number>): string[] {
  const pieces: string[] = [];
  for (const token of basicTokenize(prepareText(text))) {
    for (const p of wordPiece(token, vocab)) {
      if (pieces.length === BERT_MAX_SEQ_LENGTH - 2) return pieces;
      pieces.push(p);
    }
  }
  return pieces;
}

/**
 * Merges wordpiece vectors into word vectors by averaging, as `bert-embedding`'s "avg" oov mode:
 * a piece starting with "##" joins the word before it, any other piece starts a new word.
 * `hidden` holds one `dim`-row per piece (no [CLS]/[SEP]). Returns `maxWords` x `dim`, the first
 * words in order, zero rows after the last word. Sums run in float64.
 */
export function mergeWordPieces(
  pieces: readonly string[],
  hidden: Float32Array,
  dim: number,
  maxWords: number,
): Float32Array {
  if (hidden.length < pieces.length * dim) {
    throw new RangeError(
      `mergeWordPieces: ${pieces.length} pieces need ${pieces.length * dim} values`,
    );
  }
  const out = new Float32Array(maxWords * dim);
  const acc = new Float64Array(dim);
  let word = -1, count = 0;
  const flush = () => {
    if (word >= 0 && word < maxWords) {
      for (let d = 0; d < dim; d++) out[word * dim + d] = acc[d] / count;
    }
  };
  for (let i = 0; i < pieces.length; i++) {
    if (!pieces[i].startsWith("##") || word < 0) {
      flush();
      word++;
      if (word >= maxWords) return out;
      acc.fill(0);
      count = 0;
    }
    for (let d = 0; d < dim; d++) acc[d] += hidden[i * dim + d];
    count++;
  }
  flush();
  return out;
}

async function readText(dir: string, name: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(`${dir}/${name}`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw new DataError(
      dir,
      `${name}: cannot be read (${describeError(e)}); ${BERT_EXPECTED_FILES}`,
    );
  }
}

function parseJson(dir: string, name: string, text: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new DataError(
      dir,
      `${name}: not valid JSON (${describeError(e)}); ${BERT_EXPECTED_FILES}`,
    );
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new DataError(dir, `${name}: not a JSON object; ${BERT_EXPECTED_FILES}`);
  }
  return v as Record<string, unknown>;
}

/** The fields of config.json the encoder relies on. */
export interface BertModelConfig {
  hiddenSize: number;
  maxPosition: number | null;
}

/** Reads and checks config.json of a model folder. */
export async function readBertConfig(dir: string): Promise<BertModelConfig> {
  const text = await readText(dir, "config.json");
  if (text === null) throw new DataError(dir, `config.json is missing; ${BERT_EXPECTED_FILES}`);
  const c = parseJson(dir, "config.json", text);
  if (c.model_type !== "bert") {
    throw new DataError(
      dir,
      `config.json: model_type is ${JSON.stringify(c.model_type)}, this encoder runs "bert" ` +
        `models only; ${BERT_EXPECTED_FILES}`,
    );
  }
  const h = c.hidden_size;
  if (typeof h !== "number" || !Number.isInteger(h) || h < 1) {
    throw new DataError(
      dir,
      `config.json: hidden_size ${
        JSON.stringify(h)
      } is not a positive integer; ${BERT_EXPECTED_FILES}`,
    );
  }
  const p = c.max_position_embeddings;
  return { hiddenSize: h, maxPosition: typeof p === "number" ? p : null };
}

/**
 * Reads the WordPiece vocabulary: `model.vocab` of tokenizer.json when present, else vocab.txt
 * (one token per line, line number = id). Rejects cased tokenizers, because the pipeline
 * lowercases as the reference's uncased BERT does and a cased vocabulary would give [UNK]s.
 */
export async function readBertVocab(dir: string): Promise<BertVocab> {
  const tcText = await readText(dir, "tokenizer_config.json");
  if (tcText !== null) {
    const tc = parseJson(dir, "tokenizer_config.json", tcText);
    if (tc.do_lower_case === false) {
      throw new DataError(
        dir,
        "tokenizer_config.json: do_lower_case is false; this encoder reproduces the reference's " +
          "uncased BERT and needs an uncased model",
      );
    }
  }
  const tjText = await readText(dir, "tokenizer.json");
  let tokens: string[] | null = null;
  let file = "";
  if (tjText !== null) {
    const tj = parseJson(dir, "tokenizer.json", tjText);
    const model = tj.model as Record<string, unknown> | undefined;
    const normalizer = tj.normalizer as Record<string, unknown> | null | undefined;
    if (normalizer?.type === "BertNormalizer" && normalizer.lowercase === false) {
      throw new DataError(
        dir,
        "tokenizer.json: the normalizer does not lowercase; this encoder reproduces the " +
          "reference's uncased BERT and needs an uncased model",
      );
    }
    if (
      model?.type !== "WordPiece" || typeof model.vocab !== "object" || model.vocab === null ||
      Array.isArray(model.vocab)
    ) {
      throw new DataError(
        dir,
        `tokenizer.json: model is not a WordPiece model with a vocab object; ${BERT_EXPECTED_FILES}`,
      );
    }
    tokens = [];
    for (const [t, id] of Object.entries(model.vocab as Record<string, unknown>)) {
      if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || tokens[id] !== undefined) {
        throw new DataError(
          dir,
          `tokenizer.json: bad or repeated vocab id for ${JSON.stringify(t)}`,
        );
      }
      tokens[id] = t;
    }
    file = `${dir}/tokenizer.json`;
  } else {
    const txt = await readText(dir, "vocab.txt");
    if (txt === null) {
      throw new DataError(
        dir,
        `neither tokenizer.json nor vocab.txt is present; ${BERT_EXPECTED_FILES}`,
      );
    }
    tokens = txt.split(/\r?\n/);
    if (tokens.at(-1) === "") tokens.pop();
    file = `${dir}/vocab.txt`;
  }
  const ids = new Map<string, number>();
  tokens.forEach((t, i) => {
    if (t !== undefined && !ids.has(t)) ids.set(t, i);
  });
  for (const s of ["[CLS]", "[SEP]", "[UNK]"]) {
    if (!ids.has(s)) throw new DataError(dir, `${file}: the vocabulary lacks ${s}`);
  }
  return { tokens, ids, file };
}

/** Streams a file through SHA-256 (a BERT-base model.onnx is 440 MB). */
async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  using f = await Deno.open(path, { read: true });
  for await (const chunk of f.readable) h.update(chunk);
  return h.digest("hex");
}

/**
 * Identity of a model folder: SHA-256 over the per-file SHA-256 of everything that determines the
 * features (config, vocabulary, tokenizer config, the ONNX graph and any external weight files).
 */
async function modelHash(dir: string, vocabFile: string): Promise<string> {
  const files = [`${dir}/config.json`, vocabFile, `${dir}/onnx/model.onnx`];
  try {
    await Deno.stat(`${dir}/tokenizer_config.json`);
    files.push(`${dir}/tokenizer_config.json`);
  } catch { /* optional */ }
  try {
    for await (const e of Deno.readDir(`${dir}/onnx`)) {
      if (e.isFile && e.name.startsWith("model.onnx_data")) files.push(`${dir}/onnx/${e.name}`);
    }
  } catch { /* reported by the model check */ }
  const parts: string[] = [];
  for (const f of files.sort()) parts.push(`${f.slice(dir.length + 1)}:${await sha256File(f)}`);
  return createHash("sha256").update(parts.join("\n")).digest("hex");
}

/**
 * Imports the library, turning a failure into one clear line: without --allow-ffi the native
 * addons it loads at import time (ONNX Runtime, sharp) fail with a misleading install hint.
 */
async function loadTransformers(): Promise<Transformers> {
  try {
    return await importTransformers();
  } catch (e) {
    const ffi = (await Deno.permissions.query({ name: "ffi" })).state;
    throw new Error(
      `the bert text encoder could not load @huggingface/transformers: ` +
        describeError(e).split("\n")[0] +
        (ffi === "granted" ? "" : " (run Deno with --allow-ffi: ONNX Runtime is a native addon)"),
    );
  }
}

/** Options of `BertTextEncoder.open`. */
export interface BertEncoderOptions {
  /** Word vectors kept (reference: 10; LV2D: 14). */
  tokens?: number;
}

type Transformers = Awaited<ReturnType<typeof importTransformers>>;
type LoadedModel = Awaited<ReturnType<Transformers["AutoModel"]["from_pretrained"]>>;

/** BERT word features from a local model folder; see the module comment for the pipeline. */
export class BertTextEncoder {
  /** Stable identity: pipeline version, model hash, settings. */
  readonly id: string;
  /** Word vectors per text. */
  readonly tokens: number;
  /** Hidden size of the model (config.json hidden_size). */
  readonly dim: number;
  /** Absolute path of the model folder. */
  readonly modelDir: string;
  /** The vocabulary used for tokenisation. */
  readonly vocab: BertVocab;

  private constructor(
    private readonly lib: Transformers,
    private readonly model: LoadedModel,
    private readonly special: SpecialIds,
    modelDir: string,
    vocab: BertVocab,
    hash: string,
    dim: number,
    tokens: number,
  ) {
    this.modelDir = modelDir;
    this.vocab = vocab;
    this.dim = dim;
    this.tokens = tokens;
    this.id =
      `${BERT_PIPELINE_VERSION}:sha256=${hash}:maxseq=${BERT_MAX_SEQ_LENGTH}:words=${tokens}`;
  }

  /**
   * Opens the model folder `modelDir` (relative paths resolve against the working directory).
   * Every problem with the folder, including a model the library cannot load or run, is a
   * DataError naming the folder and the files expected there.
   */
  static async open(modelDir: string, options: BertEncoderOptions = {}): Promise<BertTextEncoder> {
    const tokens = options.tokens ?? 10;
    if (!Number.isInteger(tokens) || tokens < 1) {
      throw new RangeError(`tokens must be a positive integer, got ${tokens}`);
    }
    // The library treats a relative "a/b" as a Hub model id; an absolute path is always local.
    const dir = resolve(modelDir);
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(dir);
    } catch (e) {
      const why = e instanceof Deno.errors.NotFound ? "no such folder" : describeError(e);
      throw new DataError(dir, `${why}; ${BERT_EXPECTED_FILES}`);
    }
    if (!info.isDirectory) throw new DataError(dir, `not a folder; ${BERT_EXPECTED_FILES}`);
    const config = await readBertConfig(dir);
    if (config.maxPosition !== null && config.maxPosition < BERT_MAX_SEQ_LENGTH) {
      throw new DataError(
        dir,
        `config.json: max_position_embeddings ${config.maxPosition} is below the ` +
          `${BERT_MAX_SEQ_LENGTH} positions the pipeline uses`,
      );
    }
    const vocab = await readBertVocab(dir);
    try {
      const st = await Deno.stat(`${dir}/onnx/model.onnx`);
      if (!st.isFile) throw new Error("not a file");
    } catch (e) {
      const why = e instanceof Deno.errors.NotFound ? "is missing" : `(${describeError(e)})`;
      throw new DataError(dir, `onnx/model.onnx ${why}; ${BERT_EXPECTED_FILES}`);
    }
    const hash = await modelHash(dir, vocab.file);

    const lib = await loadTransformers();
    // Local files only, and no file cache: nothing is downloaded and nothing is written.
    lib.env.allowRemoteModels = false;
    lib.env.allowLocalModels = true;
    lib.env.useFSCache = false;
    lib.env.useBrowserCache = false;
    let model: LoadedModel;
    try {
      model = await lib.AutoModel.from_pretrained(dir, {
        local_files_only: true,
        dtype: "fp32",
        device: "cpu",
        // One thread: ONNX Runtime's results then never depend on how work was split, so a text
        // gives the same bits on every run. Features are computed once per text and cached.
        session_options: { intraOpNumThreads: 1, interOpNumThreads: 1 },
      });
    } catch (e) {
      throw new DataError(
        dir,
        `@huggingface/transformers could not load the model (${describeError(e)}); ` +
          BERT_EXPECTED_FILES,
      );
    }
    const special = {
      cls: vocab.ids.get("[CLS]")!,
      sep: vocab.ids.get("[SEP]")!,
      unk: vocab.ids.get("[UNK]")!,
    };
    const enc = new BertTextEncoder(
      lib,
      model,
      special,
      dir,
      vocab,
      hash,
      config.hiddenSize,
      tokens,
    );
    // A probe run, so a model that loads but cannot run, or disagrees with config.json, fails
    // here with the folder named rather than in the middle of training.
    await enc.hiddenStates([]);
    return enc;
  }

  /**
   * Last-layer hidden states of `[CLS] pieces [SEP]` as [pieces.length + 2] x dim rows. Pieces
   * must be vocabulary tokens (as `bertWordPieces` returns), at most 23.
   */
  async hiddenStates(pieces: readonly string[]): Promise<Float32Array> {
    if (pieces.length > BERT_MAX_SEQ_LENGTH - 2) {
      throw new RangeError(`at most ${BERT_MAX_SEQ_LENGTH - 2} wordpieces, got ${pieces.length}`);
    }
    const ids = [
      this.special.cls,
      ...pieces.map((p) => this.vocab.ids.get(p) ?? this.special.unk),
      this.special.sep,
    ];
    const L = ids.length;
    const tensor = (values: number[]) =>
      new this.lib.Tensor("int64", BigInt64Array.from(values, BigInt), [1, L]);
    let result: unknown;
    try {
      result = await this.model({
        input_ids: tensor(ids),
        attention_mask: tensor(ids.map(() => 1)),
        token_type_ids: tensor(ids.map(() => 0)),
      });
    } catch (e) {
      throw new DataError(
        this.modelDir,
        `onnx/model.onnx failed to run (${describeError(e)}); ${BERT_EXPECTED_FILES}`,
      );
    }
    const out = (result as Record<string, { dims?: number[]; data?: unknown } | undefined>)
      .last_hidden_state;
    const dims = out?.dims ?? [];
    if (
      !(out?.data instanceof Float32Array) || dims.length !== 3 || dims[0] !== 1 ||
      dims[1] !== L || dims[2] !== this.dim
    ) {
      throw new DataError(
        this.modelDir,
        `onnx/model.onnx: expected a float32 last_hidden_state of shape [1, ${L}, ${this.dim}] ` +
          `(hidden_size of config.json), got ${out ? `[${dims.join(", ")}]` : "no such output"}`,
      );
    }
    return out.data;
  }

  /** The `tokens` x `dim` word features of one description (see the module comment). */
  async encode(text: string): Promise<Float32Array> {
    const pieces = bertWordPieces(text, this.vocab.ids);
    const hidden = await this.hiddenStates(pieces);
    // Rows 1..n are the pieces; row 0 is [CLS] and row n+1 is [SEP].
    const rows = hidden.subarray(this.dim, (pieces.length + 1) * this.dim);
    return mergeWordPieces(pieces, rows, this.dim, this.tokens);
  }

  /** Releases the ONNX Runtime session. */
  async close(): Promise<void> {
    await this.model.dispose();
  }
}
