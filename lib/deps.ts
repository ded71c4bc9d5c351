/**
 * Every third-party dependency, once, as full npm specifiers with pinned majors: a module
 * imported from a URL does not see this repository's import map (design.md 2).
 *
 * There is no deno.lock (`"lock": false` in deno.json): Deno installs every npm package a
 * lockfile lists whenever any npm package is needed, so the lazily loaded BERT runtime below
 * (~490 MB) would be downloaded by every command, the demo included, on a fresh machine.
 */
export { isMap, LineCounter, parseDocument } from "npm:yaml@^2.8.1";
// The experiment loader (lib/config/load.ts) walks the YAML tree itself to keep line:col.
export { isAlias, isScalar, isSeq, stringify as stringifyYaml } from "npm:yaml@^2.8.1";
// The experiment schema (lib/config/schema.ts). zod 4 has no dependencies; the one published
// advisory (CVE-2023-4316, a ReDoS in z.string().email()) concerns <= 3.22.2.
export { z } from "npm:zod@^4.6.7";

// Image codecs for the LViT data reader (lib/data/codecs.ts says why these); the encoders build
// test fixtures.
export { convertIndexedToRgb, decode as decodePng, encode as encodePng } from "npm:fast-png@^8.0.0";
export { default as UTIF } from "npm:utif2@^4.1.0";
export { default as jpegJs } from "npm:jpeg-js@^0.4.4";
// Zip container of .xlsx files (lib/data/zip.ts streams each entry through Inflate, bounded by
// its declared size); zipSync builds test fixtures.
export { Inflate, zipSync } from "npm:fflate@^0.8.3";
// BERT text features (lib/data/text_bert.ts). Imported on first use only, through a specifier
// Deno cannot see ahead of time: the package and its ONNX Runtime and sharp binaries are ~490 MB,
// which a fresh machine (CI, the GPU box) should download only when a BERT encoder is asked for,
// and loading it starts native addons (needs --allow-ffi) that builtin-encoder runs do not pay.
const TRANSFORMERS = ["npm:@huggingface/transformers", "^4.3.1"].join("@");
/**
 * The part of `@huggingface/transformers` the BERT encoder uses. Typed here rather than with
 * `typeof import(...)`, which would make type checking (and `deno cache`) fetch the package.
 */
export interface TransformersLib {
  env: {
    allowRemoteModels: boolean;
    allowLocalModels: boolean;
    useFSCache: boolean;
    useBrowserCache: boolean;
  };
  AutoModel: {
    from_pretrained(dir: string, options: Record<string, unknown>): Promise<TransformersModel>;
  };
  Tensor: new (type: "int64", data: BigInt64Array, dims: number[]) => unknown;
  /** Used by the tests to compare tokenisations. */
  AutoTokenizer: {
    from_pretrained(dir: string, options: Record<string, unknown>): Promise<
      (text: string) => { input_ids: { tolist(): unknown } }
    >;
  };
}

/** A loaded model: called with named input tensors, returns named output tensors. */
export interface TransformersModel {
  (inputs: Record<string, unknown>): Promise<unknown>;
  dispose(): Promise<unknown>;
}

/** Loads `@huggingface/transformers` (downloads it on first use). */
export const importTransformers = async (): Promise<TransformersLib> =>
  (await import(TRANSFORMERS)) as TransformersLib;
