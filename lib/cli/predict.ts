/**
 * `deno task predict <run-dir|checkpoint> <image|folder>... [--text "..." | --texts TABLE.xlsx]
 * [--out DIR] [--threshold 0.5] [--probabilities] [--backend ...] [--checkpoint FILE]`:
 * segments new images with a trained run (lib/run/predict.ts) and writes per image a 0/255 mask
 * and an overlay at the image's own size (and the probabilities with `--probabilities`). An
 * unreadable image, a missing text or a model that reads text without one is exit 2, naming the
 * file. With `--engine ort` the first argument is a model written by `deno task export`, run in
 * onnxruntime-web (lib/run/predict_ort.ts).
 */
import { InputError } from "../config/errors.ts";
import { cliArgs, parseBackend, runCli } from "./common.ts";
import { predict } from "../run/predict.ts";

const USAGE = "usage: deno task predict <run-dir|checkpoint.safetensors> <image|folder>... " +
  '[--text "..." | --texts TABLE.xlsx] [--out DIR] [--threshold 0.5] [--probabilities] ' +
  "[--backend auto|webgpu|cpu] [--checkpoint FILE.safetensors|FILE.pth]\n" +
  "       deno task predict --engine ort <model.onnx> <image|folder>... [same options but " +
  "--backend and --checkpoint]";

async function main(argv: string[]): Promise<number> {
  const { values: v, positionals } = cliArgs(argv, {
    text: { type: "string" },
    texts: { type: "string" },
    out: { type: "string" },
    threshold: { type: "string" },
    probabilities: { type: "boolean" },
    backend: { type: "string" },
    checkpoint: { type: "string" },
    engine: { type: "string" },
  }, USAGE);
  if (positionals.length < 2) throw new InputError(USAGE);
  const threshold = v.threshold === undefined ? undefined : Number(v.threshold);
  if (threshold !== undefined && !Number.isFinite(threshold)) {
    throw new InputError(`--threshold must be a number (got ${v.threshold})\n${USAGE}`);
  }
  if (v.engine !== undefined && v.engine !== "native" && v.engine !== "ort") {
    throw new InputError(`--engine must be native or ort (got ${v.engine})\n${USAGE}`);
  }
  if (v.engine === "ort") {
    if (v.backend !== undefined || v.checkpoint !== undefined) {
      throw new InputError(
        `--engine ort runs the .onnx file's own weights in onnxruntime-web: ` +
          `--backend and --checkpoint do not apply\n${USAGE}`,
      );
    }
    // Imported here: its ONNX reader loads protobufjs (lib/deps.ts), which the native engine
    // never needs.
    const { predictOrt } = await import("../run/predict_ort.ts");
    await predictOrt(positionals[0], positionals.slice(1), {
      text: v.text,
      texts: v.texts,
      out: v.out,
      threshold,
      probabilities: v.probabilities,
    });
    return 0;
  }
  await predict(positionals[0], positionals.slice(1), {
    text: v.text,
    texts: v.texts,
    out: v.out,
    threshold,
    probabilities: v.probabilities,
    backend: v.backend === undefined ? undefined : parseBackend(v.backend, USAGE),
    checkpoint: v.checkpoint,
  });
  return 0;
}

if (import.meta.main) await runCli(() => main(Deno.args));
