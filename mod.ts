/**
 * LViT experiments on Deno + WebGPU: the public API. Re-exports only; see README.md.
 *
 * @example Train the engine's U-Net on generated data
 * ```ts
 * import { blobSet, fit, selectBackend, Session, unet } from "./mod.ts";
 * const backend = await selectBackend("auto");
 * const s = await Session.create(backend, (c, x) => unet(c, x, { widths: [16, 32, 64, 128] }), {
 *   batch: 2, channels: 3, height: 64, width: 64, seed: 1,
 * });
 * await fit(s, blobSet(1, 0, 48, 64), blobSet(1, 1e6, 16, 64), 2, { epochs: 3, lr: 2e-3, seed: 1 });
 * ```
 * @module
 */
export * from "./lib/graph/mod.ts";
export { runRef } from "./lib/backends/ref/interpreter.ts";
export { acquireDevice, type GpuContext, NoAdapterError } from "./lib/backends/webgpu/device.ts";
export { Executable, WebGPURuntime } from "./lib/backends/webgpu/executor.ts";
export { CpuExecutable, CpuRuntime } from "./lib/backends/cpu/executor.ts";
export {
  type Backend,
  type BackendRequest,
  BACKENDS,
  type Exe,
  type Runtime,
  selectBackend,
} from "./lib/backends/select.ts";
export { batchNorm2d, cbr, conv2dLayer, convTransposeLayer, type Ctx } from "./lib/nn/layers.ts";
export { unet, type UNetOptions } from "./lib/models/unet.ts";
export { balancedBce, segLoss, squaredDice } from "./lib/train/loss.ts";
export { adamHyper, type AdamOptions, adamUpdate } from "./lib/train/optim.ts";
export { type Model, Session, type SessionOptions } from "./lib/train/session.ts";
export { type EpochReport, fit, type FitOptions, type Split, validate } from "./lib/train/fit.ts";
export { meanScores, testScores, valScores } from "./lib/eval/metrics.ts";
export { blobSet } from "./lib/data/blobs.ts";
export { type Experiment, InputError, parseExperiment } from "./lib/config/demo_schema.ts";
export { runExperiment } from "./lib/run/experiment.ts";
export * from "./lib/rng/philox.ts";
export { permutation } from "./lib/rng/shuffle.ts";
export { batchNorm1d, conv1d, conv1dLayer } from "./lib/nn/layers.ts";
export {
  buildModel,
  MODEL_NAMES,
  type ModelEntry,
  type ModelName,
  MODELS,
} from "./lib/models/registry.ts";
export {
  lvit,
  LVIT_DEFAULTS,
  type LViTOptions,
  STEP_INPUT,
  TEXT_INPUT,
} from "./lib/models/lvit.ts";
export { unetRef, type UNetRefOptions } from "./lib/models/unet_ref.ts";
export {
  countGraph,
  countModel,
  evalPeak,
  exactMacs,
  type ModelCount,
  referenceMacs,
  trainPeak,
} from "./lib/models/count.ts";
export { decodeSafetensors, encodeSafetensors, SafetensorsError } from "./lib/io/safetensors.ts";
export {
  CheckpointError,
  loadCheckpoint,
  type LoadOptions,
  type LoadReport,
  matchStateDict,
  saveCheckpoint,
} from "./lib/io/checkpoint.ts";
export { DataError } from "./lib/data/errors.ts";
export { type DecodedImage, decodeImage, readImage } from "./lib/data/codecs.ts";
export { preprocessImage, preprocessMask, resizeLinear } from "./lib/data/preprocess.ts";
export { parseXlsx, readTextTable, readXlsx } from "./lib/data/xlsx.ts";
export {
  type DatasetKind,
  expectedLayout,
  listLvitDataset,
  listSplit,
  type LoadedSample,
  loadSample,
  type LvitDataset,
  type LvitSample,
  resolveDataRoot,
} from "./lib/data/lvit_folder.ts";
export { applyAugment, augmentSample, drawAugment } from "./lib/data/augment.ts";
export {
  BUILTIN_ENCODER_ID,
  builtinTokens,
  encodeBuiltin,
  readTextPadding,
} from "./lib/data/text_builtin.ts";
export { getOrCompute as cachedTextFeatures } from "./lib/data/text_cache.ts";
export { generateSynth, type SynthOptions } from "./lib/data/synth.ts";
