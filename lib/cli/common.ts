/**
 * What every command-line entry point shares: reading the experiment file and turning known
 * errors into the exit codes of design.md 5 (2 bad input, 1 no adapter or internal) with a
 * one-paragraph message instead of a stack trace.
 */
import { InputError } from "../config/demo_schema.ts";
import { NoAdapterError } from "../backends/webgpu/device.ts";

/** The text of an experiment file; an unreadable file is bad input. */
export async function readExperimentFile(file: string): Promise<string> {
  try {
    return await Deno.readTextFile(file);
  } catch (e) {
    throw new InputError(`${file}: cannot read the experiment file (${(e as Error).message})`);
  }
}

/** Runs a command's main and exits with its code; known errors print their message only. */
export async function runCli(main: () => Promise<number>): Promise<never> {
  try {
    Deno.exit(await main());
  } catch (e) {
    if (e instanceof InputError || e instanceof NoAdapterError) {
      console.error(e.message);
      Deno.exit(e instanceof InputError ? 2 : 1);
    }
    throw e;
  }
}
