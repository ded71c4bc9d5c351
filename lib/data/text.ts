/**
 * The text-encoder facade the runner uses: one interface over the `builtin` stand-in
 * (text_builtin.ts) and real BERT features (text_bert.ts), plus `encodeTexts`, which computes each
 * distinct description once and keeps the result in the on-disk cache (text_cache.ts).
 */
import { InputError } from "../config/errors.ts";
import { DataError } from "./errors.ts";
import { BertTextEncoder } from "./text_bert.ts";
import { BUILTIN_ENCODER_ID, encodeBuiltin } from "./text_builtin.ts";
import { getOrCompute } from "./text_cache.ts";
import { resolveBertModel } from "./hub.ts";

/** The `text` section of an experiment, as the encoder needs it. */
export interface TextEncoderConfig {
  /** `builtin` (no model files, not BERT) or `bert` (a local model folder). */
  encoder: "builtin" | "bert";
  /** The BERT model folder; for `bert` this or `model`, ignored for `builtin`. */
  model_dir: string | null;
  /** The BERT model as a hub id (downloaded once into `cacheDir`) or a folder. */
  model?: string | null;
  /** Where hub models are kept (`<cacheDir>/hub/...`); default `.cache`. */
  cacheDir?: string;
  /** Rows per text (reference: 10). */
  tokens: number;
  /** Vector size per row; for `bert` it must equal the model's hidden_size. */
  dim: number;
  /** Seed of the builtin vocabulary; BERT is deterministic and ignores it. */
  seed: number;
}

/** Turns descriptions into `tokens` x `dim` features. */
export interface TextEncoder {
  /**
   * Stable identity of the features: encoder and pipeline version, model identity (SHA-256 of
   * the model files for BERT) and settings. Equal ids mean equal features for equal texts, so it
   * keys the disk cache.
   */
  id: string;
  /** Rows per text. */
  tokens: number;
  /** Values per row. */
  dim: number;
  /** Features of one description, row-major `tokens * dim`. */
  encode(text: string): Promise<Float32Array>;
  /** Releases resources (the ONNX session); absent when there are none. */
  close?(): Promise<void>;
}

/**
 * Opens the configured encoder. For `bert` the model folder is loaded and probed now, so a bad
 * folder or a `dim` that is not the model's hidden size fails before any training starts.
 */
export async function openTextEncoder(
  c: TextEncoderConfig,
  log: (line: string) => void = () => {},
): Promise<TextEncoder> {
  if (c.encoder === "builtin") {
    const { tokens, dim, seed } = c;
    // Validates tokens and dim with encodeBuiltin's own messages.
    encodeBuiltin("", { maxTokens: tokens, dim, seed });
    return {
      id: `${BUILTIN_ENCODER_ID}:tokens=${tokens}:dim=${dim}:seed=${seed}`,
      tokens,
      dim,
      encode: (text) => Promise.resolve(encodeBuiltin(text, { maxTokens: tokens, dim, seed })),
    };
  }
  if (c.encoder !== "bert") {
    throw new InputError(
      `text.encoder must be "builtin" or "bert", got ${JSON.stringify(c.encoder)}`,
    );
  }
  const spec = c.model || c.model_dir;
  if (!spec) {
    throw new InputError(
      "text.encoder is bert but neither text.model nor text.model_dir is set: name a hub model " +
        "id (e.g. Xenova/bert-base-uncased) or a local BERT model folder (config.json, " +
        "tokenizer.json or vocab.txt, onnx/model.onnx)",
    );
  }
  const dir = c.model
    ? await resolveBertModel(c.model, c.cacheDir ?? ".cache", {
      onProgress: downloadProgress(c.model, log),
    })
    : spec;
  const bert = await BertTextEncoder.open(dir, { tokens: c.tokens });
  if (bert.dim !== c.dim) {
    await bert.close();
    throw new DataError(
      `${bert.modelDir}/config.json`,
      `hidden_size is ${bert.dim} but text.dim is ${c.dim}; set text.dim to ${bert.dim}`,
    );
  }
  return {
    id: bert.id,
    tokens: bert.tokens,
    dim: bert.dim,
    encode: (text) => bert.encode(text),
    close: () => bert.close(),
  };
}

/** Progress lines of a hub download: each file's start, then about every tenth of it. */
function downloadProgress(id: string, log: (line: string) => void) {
  const shown = new Map<string, number>();
  return (file: string, done: number, total: number | null) => {
    const step = total === null ? 50 * 2 ** 20 : Math.max(1, Math.floor(total / 10));
    const last = shown.get(file);
    if (last !== undefined && done - last < step && done !== total) return;
    shown.set(file, done);
    const mb = (n: number) => (n / 2 ** 20).toFixed(1);
    log(`text: downloading ${id} ${file}: ${mb(done)}${total === null ? "" : `/${mb(total)}`} MB`);
  };
}

/**
 * Features of many texts, in order. Each distinct text is encoded once (equal texts share one
 * array, so callers must not modify them) and, when `cacheDir` is not null, stored there by
 * `getOrCompute` under (encoder id, text), so later runs read it back bitwise. Texts are encoded
 * one after another: the BERT session runs single-threaded for reproducible bits, and order keeps
 * progress reports monotonic. `onProgress` gets (distinct texts done, distinct texts in all).
 */
export async function encodeTexts(
  enc: TextEncoder,
  texts: string[],
  cacheDir: string | null,
  onProgress?: (done: number, total: number) => void,
): Promise<Float32Array[]> {
  const distinct = [...new Set(texts)];
  const features = new Map<string, Float32Array>();
  const expectedLength = enc.tokens * enc.dim;
  for (const text of distinct) {
    const values = cacheDir === null
      ? await enc.encode(text)
      : await getOrCompute(cacheDir, [enc.id, text], () => enc.encode(text), { expectedLength });
    if (values.length !== expectedLength) {
      throw new RangeError(
        `text encoder ${enc.id}: ${values.length} values, expected ${expectedLength}`,
      );
    }
    features.set(text, values);
    onProgress?.(features.size, distinct.length);
  }
  return texts.map((t) => features.get(t)!);
}
