/**
 * Every third-party dependency, once, as full npm specifiers with pinned majors: a module
 * imported from a URL does not see this repository's import map (design.md 2).
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
// Zip container of .xlsx files (lib/data/xlsx.ts); zipSync builds test fixtures.
export { unzipSync, zipSync } from "npm:fflate@^0.8.3";
// BERT text features (lib/data/text_bert.ts). Imported on first use only, through a specifier
// Deno cannot see ahead of time: the package and its ONNX Runtime and sharp binaries are ~490 MB,
// which a fresh machine (CI, the GPU box) should download only when a BERT encoder is asked for,
// and loading it starts native addons (needs --allow-ffi) that builtin-encoder runs do not pay.
const TRANSFORMERS = ["npm:@huggingface/transformers", "^4.3.1"].join("@");
/** Loads `@huggingface/transformers` (downloads it on first use). */
export const importTransformers = (): Promise<
  typeof import("npm:@huggingface/transformers@^4.3.1")
> => import(TRANSFORMERS);
