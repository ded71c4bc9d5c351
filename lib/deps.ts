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

// ONNX export (lib/export/onnx_proto.ts): protobufjs, the most used protobuf runtime on npm, in
// its light build (reflection, encode, decode; no .proto parser), fed the onnx.proto schema as a
// JSON descriptor written in this repository. Its advisories concern .proto parsing and
// setProperty (CVE-2022-25878, CVE-2023-36665: prototype pollution) and, in 2026, code
// generation from hostile schemas (CVE-2026-41242: fixed in 8.0.1), prototype lookups, decoder
// recursion and UTF-8 (CVE-2026-44288, -44289, -44291, -44293: fixed in 8.0.2) and helper-name
// collisions (CVE-2026-54269: fixed in 8.6.0); CVE-2026-48712 (payload recursion) was fixed in
// 8.4.1. 8.8.1 postdates every one; the schema is ours, the decoded input (a user's .onnx file in
// `predict --engine ort`) goes through the fixed decoder.
// onnx-proto was not taken: it pins protobufjs 6, which no longer gets fixes. Imported on first
// use through a specifier Deno cannot see ahead of time (as the runtimes below): with it and its
// dependencies (@types/node among them, ~4 MB) in the static graph, every command (the demo's
// first run included) downloaded it.
const PROTOBUF = ["npm:protobufjs", "^8.8.1/light.js"].join("@");

/** A protobufjs message type (the methods lib/export/onnx_proto.ts uses). */
export interface ProtobufType {
  verify(message: object): string | null;
  fromObject(object: object): unknown;
  encode(message: unknown): { finish(): Uint8Array };
  decode(bytes: Uint8Array): unknown;
  toObject(message: unknown, options: Record<string, unknown>): unknown;
}

/** The part of protobufjs's light build used here (reflection from a JSON descriptor). */
export interface ProtobufLib {
  Root: { fromJSON(json: unknown): { lookupType(name: string): ProtobufType } };
}

/** Loads protobufjs's light build (downloads it on first use). */
export const importProtobuf = async (): Promise<ProtobufLib> => {
  const m = await import(PROTOBUF);
  return (m.default ?? m) as ProtobufLib;
};

// onnxruntime-web (lib/run/predict_ort.ts): runs exported models with its wasm execution
// provider, inside Deno. Imported on first use only, through a specifier Deno cannot see ahead of
// time (as the BERT runtime above): its wasm builds (~145 MB unpacked) are needed by
// `predict --engine ort` and its tests alone. Its own protobufjs dependency (^7.2.4) resolves to
// the newest 7.x (7.6.6 today), past the 7.x fixes of the advisories above (7.6.3).
const ORT = ["npm:onnxruntime-web", "^1.31.1"].join("@");

/** A tensor of onnxruntime-web (the fields used here). */
export interface OrtTensor {
  readonly dims: readonly number[];
  readonly type: string;
  readonly data: unknown;
}

/** An onnxruntime-web inference session (the fields used here). */
export interface OrtSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>>;
  release(): Promise<void>;
}

/**
 * The part of `onnxruntime-web` used here. Typed here rather than with `typeof import(...)`,
 * which would make type checking (and `deno cache`) fetch the package.
 */
export interface OrtLib {
  env: { wasm: { numThreads?: number; proxy?: boolean }; logLevel?: string };
  Tensor: new (type: "float32", data: Float32Array, dims: readonly number[]) => OrtTensor;
  InferenceSession: {
    create(
      model: Uint8Array,
      options?: { executionProviders?: string[]; graphOptimizationLevel?: string },
    ): Promise<OrtSession>;
  };
}

/** Loads `onnxruntime-web` (downloads it on first use). */
export const importOrt = async (): Promise<OrtLib> => (await import(ORT)) as OrtLib;

/**
 * onnxruntime-web's browser build for the wasm execution provider, as `file:` URLs in Deno's npm
 * cache, for `deno task export --web` to copy next to its page: the ES module with its JS glue
 * bundled in (`onnxruntime-web/wasm`) and the wasm binary it loads. The same package and version
 * `predict --engine ort` runs; loading it first makes Deno install and resolve it.
 */
export async function ortBrowserFiles(): Promise<{ module: URL; wasm: URL }> {
  await importOrt();
  return {
    module: new URL(import.meta.resolve(`${ORT}/wasm`)),
    wasm: new URL(import.meta.resolve(`${ORT}/ort-wasm-simd-threaded.wasm`)),
  };
}
