/**
 * LViT experiments on Deno + WebGPU: the public API. Re-exports only; see README.md.
 *
 * @example Run an experiment file (or YAML text) programmatically
 * ```ts
 * import { loadExperiment, runExperiment } from "./mod.ts";
 * const exp = await loadExperiment("experiments/demo.yaml", ["train.epochs=2"]);
 * const { dir, summary } = await runExperiment(exp, { out: "runs" });
 * console.log(dir, summary?.test.dice);
 * ```
 *
 * @example Train the engine's U-Net on generated data with the low-level API
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
export { compile, type Program, type Target } from "./lib/backends/compile.ts";
export { type Step, type WebGpuProgram } from "./lib/backends/webgpu/lower.ts";
export { type CpuProgram, type CpuStep } from "./lib/backends/cpu/lower.ts";
export type { Binding, KernelPlan, WgslKernel } from "./kernels/webgpu/types.ts";
export type { CpuKernel, CpuPartFn } from "./kernels/cpu/types.ts";
export { runRef } from "./lib/backends/ref/interpreter.ts";
export { acquireDevice, type GpuContext, NoAdapterError } from "./lib/backends/webgpu/device.ts";
export { Executable, WebGPURuntime } from "./lib/backends/webgpu/executor.ts";
export { CpuExecutable, CpuRuntime } from "./lib/backends/cpu/executor.ts";
export type { CpuThreads, ProgramShare } from "./lib/backends/cpu/threads.ts";
export type { GemmArgs } from "./lib/backends/cpu/gemm_split.ts";
export {
  predict,
  type PredictedImage,
  type PredictOptions,
  type PredictResult,
} from "./lib/run/predict.ts";
export {
  modelToOnnx,
  ONNX_OPSET,
  type OnnxExport,
  type OnnxExportOptions,
} from "./lib/export/onnx.ts";
export { OnnxExportError } from "./lib/export/onnx_ops.ts";
export {
  EXPORT_FORMATS,
  type ExportFormat,
  type ExportOptions,
  type ExportResult,
  exportRun,
} from "./lib/run/export.ts";
export { type OrtPredictOptions, predictOrt } from "./lib/run/predict_ort.ts";
export { exportWeb, type WebExportOptions, type WebExportResult } from "./lib/run/export_web.ts";
export { type ServeOptions, serveStatic } from "./lib/export/web_serve.ts";
export {
  type Backend,
  type BackendRequest,
  BACKENDS,
  type Exe,
  type Runtime,
  selectBackend,
} from "./lib/backends/select.ts";
export {
  batchNorm2d,
  type BatchNormOpts,
  cbr,
  conv2dLayer,
  convTransposeLayer,
  type Ctx,
} from "./lib/nn/layers.ts";
export { unet, type UNetOptions } from "./lib/models/unet.ts";
export { balancedBce, segLoss, squaredDice } from "./lib/train/loss.ts";
export { adamHyper, type AdamOptions, adamUpdate } from "./lib/train/optim.ts";
export { type Forward, type Model, Session, type SessionOptions } from "./lib/train/session.ts";
export { Inference, type InferenceOptions } from "./lib/train/inference.ts";
export {
  loadWeights,
  type LoadWeightsOptions,
  saveWeights,
  type WeightHolder,
  type WeightsReport,
} from "./lib/train/weights.ts";
export { type EpochReport, fit, type FitOptions, type Split, validate } from "./lib/train/fit.ts";
export {
  addTestCounts,
  emptyCounts,
  type ImageScores,
  meanScores,
  type PixelCounts,
  pooledScores,
  testScores,
  valScores,
} from "./lib/eval/metrics.ts";
export { type BlobSet, blobSet } from "./lib/data/blobs.ts";
export { didYouMean, InputError } from "./lib/config/errors.ts";
export {
  type DataConfig,
  type EvalConfig,
  type ExperimentConfig,
  formatSchemaKeys,
  type LViTModelConfig,
  type LViTName,
  type ModelConfig,
  modelOptions,
  type SchemaKey,
  schemaKeys,
  type SemiConfig,
  type TextConfig,
  type TrainConfig,
  type UNetModelConfig,
  type UNetSmallModelConfig,
} from "./lib/config/schema.ts";
export { type LoadedExperiment, loadExperiment, resolveExperimentText } from "./lib/config/load.ts";
export { runExperiment, type RunOptions, type RunResult, type Summary } from "./lib/run/runner.ts";
export {
  createInference,
  createSession,
  type ExperimentInference,
  type ExperimentModel,
  experimentModel,
  type ExperimentSession,
  geometryOf,
  prepareData,
} from "./lib/run/experiment.ts";
export { type EvalOptions, type EvalResult, evaluate } from "./lib/run/evaluate.ts";
export {
  type InitReport,
  initSession,
  type InitSource,
  matchInit,
  readInitSource,
} from "./lib/run/init_from.ts";
export { type RunPaths, runPaths, writeAtomic } from "./lib/run/folder.ts";
export { formatDuration, parseDuration } from "./lib/config/duration.ts";
export { identityOf, NON_IDENTITY_KEYS } from "./lib/config/load.ts";
export {
  findRunFolders,
  formatStatus,
  type RunStateName,
  type RunStatus,
  runStatus,
  statusOf,
} from "./lib/run/status.ts";
export {
  type FinishedRun,
  finishedRuns,
  readReference,
  readRunSummary,
  type Reference,
  type ResultRow,
  resultRows,
  resultsCsv,
  resultsLatex,
  resultsMarkdown,
} from "./lib/run/results_table.ts";
export {
  LOCK_FILE,
  lockHeld,
  readRunState,
  type RecordedState,
  RUN_STATE_FORMAT,
  type RunStateRecord,
  STATE_FILE,
} from "./lib/run/state.ts";
export {
  type EpochRecord,
  type Geometry,
  initialState,
  type Recipe,
  type Samples,
  scoreSplit,
  type SemiPlan,
  train,
  type TrainerHooks,
  type TrainerState,
} from "./lib/train/trainer.ts";
export { lrAt, type ScheduleConfig } from "./lib/train/schedule.ts";
export {
  openDataset,
  type OpenedDataset,
  type OpenOptions,
  type SplitData,
} from "./lib/data/dataset.ts";
export {
  checkDataset,
  type CheckOptions,
  type CheckReport,
  type KindChoice,
  type SplitSummary,
} from "./lib/data/check.ts";
export {
  encodeTexts,
  openTextEncoder,
  type TextEncoder,
  type TextEncoderConfig,
} from "./lib/data/text.ts";
export {
  type TinyBertConfig,
  type TinyBertFileOptions,
  type TinyBertOptions,
  type TinyBertWeights,
  type TinyTensor,
  writeTinyBert,
} from "./lib/data/tiny_bert.ts";
export { type ChartOptions, type ChartSeries, lineChartSvg } from "./lib/report/svg.ts";
export { overlayRgb, predictionPng } from "./lib/report/images.ts";
export {
  type EpochRecord as ReportEpochRecord,
  type OverlayTile,
  type RenderedReport,
  renderReport,
  type ReportInput,
  writeReport,
} from "./lib/report/report.ts";
export * from "./lib/rng/philox.ts";
export { permutation } from "./lib/rng/shuffle.ts";
export { batchNorm1d, conv1d, conv1dLayer } from "./lib/nn/layers.ts";
export {
  buildModel,
  MODEL_NAMES,
  type ModelCheck,
  type ModelDeclaration,
  type ModelDeclarations,
  type ModelEntry,
  type ModelName,
  type ModelOption,
  type ModelOptions,
  type ModelOptionsByName,
  MODELS,
  type ValueSchema,
} from "./lib/models/registry.ts";
export {
  lvit,
  LVIT_DEFAULTS,
  type LViTOptions,
  STEP_INPUT,
  TEXT_INPUT,
  type TextSubstitute,
} from "./lib/models/lvit.ts";
export { unetRef, type UNetRefOptions } from "./lib/models/unet_ref.ts";
export { unetpp, UNETPP_DEFAULTS, type UNetPPOptions } from "./lib/models/unetpp.ts";
export { gtunet, GTUNET_DEFAULTS, type GTUNetOptions } from "./lib/models/gtunet.ts";
export {
  uctransnet,
  UCTRANSNET_DEFAULTS,
  type UCTransNetOptions,
} from "./lib/models/uctransnet.ts";
export { stateDict, type StateDictInput, type StateEntry } from "./lib/models/state_dict.ts";
export {
  countGraph,
  countModel,
  evalPeak,
  exactMacs,
  type ModelCount,
  type ModelFn,
  type ModuleRow,
  type PeakMemory,
  referenceMacs,
  trainPeak,
} from "./lib/models/count.ts";
export {
  decodeSafetensors,
  encodeSafetensors,
  type OutTensor,
  type RawOutTensor,
  type SafetensorsDtype,
  SafetensorsError,
  type TensorEntry,
} from "./lib/io/safetensors.ts";
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
export {
  type Image8,
  preprocessImage,
  preprocessMask,
  resizeLinear,
} from "./lib/data/preprocess.ts";
export { parseXlsx, readTextTable, readXlsx, type SheetRows } from "./lib/data/xlsx.ts";
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
  type Split as SplitName,
} from "./lib/data/lvit_folder.ts";
export { applyAugment, type AugmentOp, augmentSample, drawAugment } from "./lib/data/augment.ts";
export {
  BUILTIN_ENCODER_ID,
  type BuiltinTextOptions,
  builtinTokens,
  encodeBuiltin,
  readTextPadding,
} from "./lib/data/text_builtin.ts";
export {
  getOrCompute as cachedTextFeatures,
  type TextCacheOptions,
} from "./lib/data/text_cache.ts";
export { generateSynth, type SynthOptions, type SynthSummary } from "./lib/data/synth.ts";
