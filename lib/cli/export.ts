/**
 * `deno task export <run-dir|checkpoint> --format onnx [--out model.onnx] [--checkpoint FILE]`:
 * writes the run's model in evaluation mode with its weights as an ONNX file (lib/run/export.ts)
 * that onnxruntime-web runs (`deno task predict --engine ort model.onnx IMAGE...`). A model op
 * without an ONNX mapping, a checkpoint that does not fit the model or a bad argument is exit 2.
 * With `--web DIR` (the target may also be an exported .onnx file) it writes a static web page
 * that runs the model in the browser (lib/run/export_web.ts), served by `deno task serve DIR`.
 */
import { InputError } from "../config/errors.ts";
import { cliArgs, runCli } from "./common.ts";
import { EXPORT_FORMATS, type ExportFormat, exportRun } from "../run/export.ts";
import { exportWeb } from "../run/export_web.ts";

const USAGE = "usage: deno task export <run-dir|checkpoint.safetensors> --format onnx " +
  "[--out FILE.onnx] [--checkpoint FILE.safetensors|FILE.pth]\n" +
  "       deno task export <run-dir|checkpoint|model.onnx> --web DIR [--texts TABLE.xlsx] " +
  "[--checkpoint FILE]";

async function main(argv: string[]): Promise<number> {
  const { values: v, positionals } = cliArgs(argv, {
    format: { type: "string" },
    out: { type: "string" },
    checkpoint: { type: "string" },
    web: { type: "string" },
    texts: { type: "string" },
  }, USAGE);
  if (positionals.length !== 1) throw new InputError(USAGE);
  const format = v.format ?? "onnx";
  if (!EXPORT_FORMATS.includes(format as ExportFormat)) {
    throw new InputError(
      `--format must be one of ${EXPORT_FORMATS.join(", ")} (got ${format})\n${USAGE}`,
    );
  }
  if (v.web !== undefined) {
    if (v.out !== undefined) throw new InputError(`--out and --web exclude each other\n${USAGE}`);
    await exportWeb(positionals[0], { dir: v.web, checkpoint: v.checkpoint, texts: v.texts });
    return 0;
  }
  if (v.texts !== undefined) throw new InputError(`--texts goes with --web\n${USAGE}`);
  await exportRun(positionals[0], {
    format: format as ExportFormat,
    out: v.out,
    checkpoint: v.checkpoint,
  });
  return 0;
}

if (import.meta.main) await runCli(() => main(Deno.args));
