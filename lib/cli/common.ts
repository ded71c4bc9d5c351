/**
 * What every command-line entry point shares: turning known errors into the exit codes of
 * design.md 5 (2 bad input: config, data, checkpoint files, usage; 1 no adapter or internal)
 * with a one-paragraph message instead of a stack trace.
 */
import { InputError } from "../config/errors.ts";
import { NoAdapterError } from "../backends/webgpu/device.ts";
import { type BackendRequest, BACKENDS } from "../backends/select.ts";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { DataError } from "../data/errors.ts";
import { CheckpointError } from "../io/checkpoint.ts";
import { SafetensorsError } from "../io/safetensors.ts";
import { PthError } from "../io/pth.ts";
import { DivergedError } from "../train/errors.ts";

/**
 * Parses a command line with Node's `util.parseArgs` (strict: unknown options and missing
 * values are errors), turning its errors into bad input that carries the usage line.
 */
export function cliArgs<O extends NonNullable<ParseArgsConfig["options"]>>(
  argv: string[],
  options: O,
  usage: string,
) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new InputError(`${(e as Error).message}\n${usage}`);
  }
}

/** The value of a `--backend` option; anything else is bad input (with the usage line). */
export function parseBackend(value: string | undefined, usage: string): BackendRequest {
  if (!BACKENDS.includes(value as BackendRequest)) {
    throw new InputError(
      `--backend must be one of ${BACKENDS.join(", ")} (got ${value})\n${usage}`,
    );
  }
  return value as BackendRequest;
}

/** Errors that mean bad input (exit 2): their message is the whole story. */
export function isInputError(e: unknown): boolean {
  return e instanceof InputError || e instanceof DataError || e instanceof CheckpointError ||
    e instanceof SafetensorsError || e instanceof PthError;
}

/**
 * The file-system errors a run reports in one line rather than as a crash (issue 15): an output
 * that cannot be written (exit 2: read-only, no permission, a file where a folder must be) and a
 * full disk or quota (exit 1). Deno's message names the operation, the path and the errno.
 */
const OS_ERRORS: Record<string, number> = {
  EACCES: 2,
  EPERM: 2,
  EROFS: 2,
  ENOTDIR: 2,
  EISDIR: 2,
  ENOSPC: 1,
  EDQUOT: 1,
  EFBIG: 1,
};

/** The exit code of a file-system error of {@link OS_ERRORS}, else null. */
export function osErrorExit(e: unknown): number | null {
  if (!(e instanceof Error)) return null;
  const code = (e as { code?: unknown }).code;
  return typeof code === "string" && code in OS_ERRORS && /\(os error \d+\)/.test(e.message)
    ? OS_ERRORS[code]
    : null;
}

/** Runs a command's main and exits with its code; known errors print their message only. */
export async function runCli(main: () => Promise<number>): Promise<never> {
  try {
    Deno.exit(await main());
  } catch (e) {
    if (isInputError(e) || e instanceof NoAdapterError || e instanceof DivergedError) {
      console.error((e as Error).message);
      Deno.exit(isInputError(e) ? 2 : 1);
    }
    const os = osErrorExit(e);
    if (os !== null) {
      console.error(`error: ${(e as Error).message}`);
      Deno.exit(os);
    }
    throw e;
  }
}
