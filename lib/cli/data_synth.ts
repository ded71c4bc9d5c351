/**
 * `deno task data:synth --out DIR [--seed N] [--train N] [--val N] [--test N] [--size N]`:
 * writes a synthetic QaTa-layout data set (lib/data/synth.ts) that `listSplit("qata", ...)`
 * and the training runs read like the real one.
 * Exit codes: 0 success, 2 bad usage or an unusable output folder, 1 internal error.
 */
import { generateSynth, MIN_SIZE, SYNTH_DEFAULTS, type SynthOptions } from "../data/synth.ts";

const USAGE = "usage: deno task data:synth --out DIR [--seed N] [--train N] [--val N] " +
  `[--test N] [--size N]\n  defaults: seed ${SYNTH_DEFAULTS.seed}, train ${SYNTH_DEFAULTS.train}, ` +
  `val ${SYNTH_DEFAULTS.val}, test ${SYNTH_DEFAULTS.test}, size ${SYNTH_DEFAULTS.size} ` +
  `(min ${MIN_SIZE})`;

/** A command-line mistake: reported with the usage text and exit code 2. */
export class UsageError extends Error {}

const NUMERIC = ["seed", "train", "val", "test", "size"] as const;

/**
 * Parses the arguments of `data:synth`.
 * @throws UsageError for unknown flags, missing values or non-integers
 */
export function parseSynthArgs(args: readonly string[]): SynthOptions {
  const opts: Partial<SynthOptions> = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const eq = arg.indexOf("=");
    // Both "--flag value" and "--flag=value", as the other CLIs' users will try either.
    const flag = eq >= 0 ? arg.slice(0, eq) : arg;
    if (!flag.startsWith("--")) throw new UsageError(`unexpected argument ${arg}`);
    const name = flag.slice(2);
    if (name !== "out" && !(NUMERIC as readonly string[]).includes(name)) {
      throw new UsageError(`unknown option ${flag}`);
    }
    const value = eq >= 0 ? arg.slice(eq + 1) : args[++i];
    if (value === undefined || value === "") throw new UsageError(`${flag} needs a value`);
    if (name === "out") opts.out = value;
    else {
      if (!/^\d+$/.test(value)) throw new UsageError(`${flag} must be a non-negative integer`);
      opts[name as (typeof NUMERIC)[number]] = Number(value);
    }
  }
  if (!opts.out) throw new UsageError("--out DIR is required");
  return opts as SynthOptions;
}

async function main(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  let opts: SynthOptions;
  try {
    opts = parseSynthArgs(args);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`data:synth: ${e.message}\n${USAGE}`);
    return 2;
  }
  const start = performance.now();
  try {
    // Progress about every tenth of the set, so large runs show life without flooding logs.
    let nextReport = 0;
    const summary = await generateSynth(opts, (done, total) => {
      if (done >= nextReport || done === total) {
        console.log(`data:synth: ${done}/${total} samples`);
        nextReport = done + Math.max(1, Math.ceil(total / 10));
      }
    });
    const { train, val, test } = summary.counts;
    const secs = ((performance.now() - start) / 1000).toFixed(1);
    console.log(
      `data:synth: wrote ${train} train, ${val} val, ${test} test samples ` +
        `(${summary.size}x${summary.size}, seed ${summary.seed}) to ${summary.out} in ${secs} s`,
    );
    return 0;
  } catch (e) {
    if (e instanceof RangeError || e instanceof Deno.errors.AlreadyExists) {
      console.error(`data:synth: ${e.message}\n${USAGE}`);
      return 2;
    }
    if (e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotADirectory) {
      console.error(`data:synth: cannot write to ${opts.out}: ${e.message}`);
      return 2;
    }
    throw e;
  }
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (e) {
    console.error(`data:synth: internal error: ${e instanceof Error ? e.stack : e}`);
    Deno.exit(1);
  }
}
