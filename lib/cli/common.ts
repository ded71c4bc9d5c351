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
    e instanceof SafetensorsError;
}

/** Runs a command's main and exits with its code; known errors print their message only. */
export async function runCli(main: () => Promise<number>): Promise<never> {
  try {
    Deno.exit(await main());
  } catch (e) {
    if (isInputError(e) || e instanceof NoAdapterError) {
      console.error((e as Error).message);
      Deno.exit(e instanceof NoAdapterError ? 1 : 2);
    }
    throw e;
  }
}
