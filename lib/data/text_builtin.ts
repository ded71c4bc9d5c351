/**
 * The `builtin` text encoder: a stand-in for the reference's BERT embedding (lvit-reference.md
 * 4.4) that needs no model files.
 *
 * **This is not BERT.** It keeps the reference's text handling exactly (the `read_text` " EOF XXX"
 * padding, first line only, lowercase basic tokenisation with punctuation as separate tokens, cut
 * to the first N tokens) but replaces the contextual 768-d BERT vectors by a fixed random vector
 * per token: FNV-1a of the token's UTF-8 bytes keys Philox, whose normals, scaled by 1/sqrt(dim),
 * give a vector of about unit length. Equal words get equal vectors and different words nearly
 * orthogonal ones, so the text still carries information, but there is no context and no notion
 * of similar meaning.
 *
 * It exists so the demo, the tests and machines without BERT weights can run the full text path
 * deterministically; results trained with it are not comparable with the paper's.
 */
import { fillNormal, Stream } from "../rng/philox.ts";
import { fnv1a } from "./hash.ts";

/** Identifier of this encoder and its version, for cache keys. Bump it when vectors change. */
export const BUILTIN_ENCODER_ID = "builtin-fnv1a-philox-v1";

/** Options of `encodeBuiltin`. */
export interface BuiltinTextOptions {
  /** Rows kept (the reference's cut-off size is 10; LV2D uses 14). */
  maxTokens?: number;
  /** Vector size per token (BERT-Base: 768). */
  dim?: number;
  /** Mixed into the Philox counter, so different seeds give unrelated vocabularies. */
  seed?: number;
}

/**
 * The reference `read_text` padding: when the whitespace word count is below 9, append
 * " EOF XXX" (9 - count) times. Counted on the whole description, as the reference does before
 * it keeps the first line.
 */
export function readTextPadding(text: string): string {
  const trimmed = text.trim();
  const count = trimmed === "" ? 0 : trimmed.split(/\s+/).length;
  return count < 9 ? text + " EOF XXX".repeat(9 - count) : text;
}

/** The text the reference embeds: padded by `readTextPadding`, then its first line. */
export function prepareText(text: string): string {
  return readTextPadding(text).split("\n")[0];
}

function isControl(ch: string): boolean {
  // BERT treats \t, \n, \r as whitespace, not as control characters.
  if (ch === "\t" || ch === "\n" || ch === "\r") return false;
  return /^[\p{Cc}\p{Cf}]$/u.test(ch);
}

function isPunctuation(ch: string): boolean {
  // BERT counts every non-alphanumeric ASCII symbol ($, ^, `, ...) as punctuation, plus Unicode P*.
  const cp = ch.codePointAt(0)!;
  if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96)) return true;
  if (cp >= 123 && cp <= 126) return true;
  return /^\p{P}$/u.test(ch);
}

function isCjk(cp: number): boolean {
  return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) || (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}

/**
 * BERT's uncased BasicTokenizer: drop NUL, U+FFFD and control characters, isolate CJK characters,
 * lowercase, strip accents (NFD, drop combining marks), split on whitespace and split every
 * punctuation character off as its own token.
 */
export function basicTokenize(text: string): string[] {
  let cleaned = "";
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (cp === 0 || cp === 0xfffd || isControl(ch)) continue;
    cleaned += isCjk(cp) ? ` ${ch} ` : (/^\s$/u.test(ch) ? " " : ch);
  }
  const tokens: string[] = [];
  for (const word of cleaned.trim().split(/\s+/)) {
    if (word === "") continue;
    const w = word.toLowerCase().normalize("NFD").replace(/\p{Mn}/gu, "");
    let cur = "";
    for (const ch of w) {
      if (isPunctuation(ch)) {
        if (cur !== "") tokens.push(cur);
        tokens.push(ch);
        cur = "";
      } else cur += ch;
    }
    if (cur !== "") tokens.push(cur);
  }
  return tokens;
}

/** The tokens the builtin encoder embeds: `prepareText`, `basicTokenize`, first `maxTokens`. */
export function builtinTokens(text: string, maxTokens = 10): string[] {
  return basicTokenize(prepareText(text)).slice(0, maxTokens);
}

const utf8 = new TextEncoder();

/** 32-bit FNV-1a of the token's UTF-8 bytes. */
export function fnv1a32(token: string): number {
  return fnv1a(utf8.encode(token));
}

/**
 * Writes the vector of one token into `out` (length = dim): normals from Philox keyed by
 * (FNV-1a(token), Stream.data) at step `seed`, scaled by 1/sqrt(dim).
 */
export function tokenVectorInto(out: Float32Array, token: string, seed = 0): void {
  fillNormal(out, fnv1a32(token), Stream.data, seed, 0, 1 / Math.sqrt(out.length));
}

/**
 * Encodes a description as `maxTokens` x `dim` features (row-major Float32Array): one row per
 * token of `builtinTokens`, zero rows after the last token when there are fewer.
 */
export function encodeBuiltin(text: string, options: BuiltinTextOptions = {}): Float32Array {
  const maxTokens = options.maxTokens ?? 10;
  const dim = options.dim ?? 768;
  const seed = options.seed ?? 0;
  if (!Number.isInteger(maxTokens) || maxTokens < 1) {
    throw new RangeError(`maxTokens must be a positive integer, got ${maxTokens}`);
  }
  if (!Number.isInteger(dim) || dim < 1) {
    throw new RangeError(`dim must be a positive integer, got ${dim}`);
  }
  const out = new Float32Array(maxTokens * dim);
  const tokens = builtinTokens(text, maxTokens);
  for (let i = 0; i < tokens.length; i++) {
    tokenVectorInto(out.subarray(i * dim, (i + 1) * dim), tokens[i], seed);
  }
  return out;
}
