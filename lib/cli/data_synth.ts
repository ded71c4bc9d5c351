/**
 * `deno task data:synth --out DIR [--seed N] [--train N] [--val N] [--test N] [--size N]`:
 * writes a synthetic QaTa-layout data set (lib/data/synth.ts) that `listSplit("qata", ...)`
 * and the training runs read like the real one.
 * Exit codes: 0 success, 2 bad usage or an unusable output folder, 1 internal error.
 */
import { InputError } from "../config/errors.ts";
import {
  checkSynthOptions,
  generateSynth,
  MIN_SIZE,
  SYNTH_DEFAULTS,
  type SynthOptions,
} from "../data/synth.ts";
import { cliArgs, runCli } from "./common.ts";

const USAGE = "usage: deno task data:synth --out DIR [--seed N] [--train N] [--val N] " +
  `[--test N] [--size N]\n  defaults: seed ${SYNTH_DEFAULTS.seed}, train ${SYNTH_DEFAULTS.train}, ` +
  `val ${SYNTH_DEFAULTS.val}, test ${SYNTH_DEFAULTS.test}, size ${SYNTH_DEFAULTS.size} ` +
  `(min ${MIN_SIZE})`;

/** Usage errors are InputErrors (exit 2 through runCli); the old name stays importable. */
export { InputError as UsageError };

const NUMERIC = ["seed", "train", "val", "test", "size"] as const;

/** A usage error: the message, then the usage text. */
const usage = (msg: string) => new InputError(`data:synth: ${msg}\n${USAGE}`);

/**
 * Parses and checks the arguments of `data:synth`.
 * @throws UsageError (an InputError) for unknown flags, missing values, non-integers or values
 * out of range
 */
export function parseSynthArgs(args: readonly string[]): SynthOptions {
  const { values: v, positionals } = cliArgs([...args], {
    out: { type: "string" },
    seed: { type: "string" },
    train: { type: "string" },
    val: { type: "string" },
    test: { type: "string" },
    size: { type: "string" },
  }, USAGE);
  if (positionals.length) throw usage(`unexpected argument ${positionals[0]}`);
  if (!v.out) throw usage("--out DIR is required");
  const opts: SynthOptions = { out: v.out };
  for (const name of NUMERIC) {
    const value = v[name];
    if (value === undefined) continue;
    if (!/^\d+$/.test(value)) throw usage(`--${name} must be a non-negative integer`);
    opts[name] = Number(value);
  }
  // generateSynth's own rules, checked first: a bad option is a usage error, and anything
  // generateSynth throws later is a real failure.
  try {
    checkSynthOptions(opts);
  } catch (e) {
    if (e instanceof RangeError) throw usage(e.message);
    throw e;
  }
  return opts;
}

async function main(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  const opts = parseSynthArgs(args);
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
    // The options were checked above; what remains as bad input is an unusable output folder.
    if (e instanceof Deno.errors.AlreadyExists) throw usage(e.message);
    if (e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotADirectory) {
      throw new InputError(`data:synth: cannot write to ${opts.out}: ${e.message}`);
    }
    throw e;
  }
}

if (import.meta.main) await runCli(() => main(Deno.args));
