/**
 * Issue 16.2: model options are declared once, next to each model (lib/models/options.ts), and
 * the experiment schema, the README key table, `inspect`'s option listing, `modelOptions` and
 * the positioned error messages are all derived from that declaration.
 *
 * The acceptance case: a throwaway option added in ONE place (a test model whose declaration is
 * the small U-Net's plus `gain`) shows up everywhere: accepted with its default, rejected out of
 * range and by its cross-key check at the YAML key with file:line:col, in the README table rows
 * and in inspect's listing; and it does not leak into the registry's models.
 */
import { assert, assertEquals, expectError } from "./assert.ts";
import { InputError } from "../lib/config/errors.ts";
import { type LoadedExperiment, resolveExperimentText } from "../lib/config/load.ts";
import {
  ExperimentSchema,
  formatSchemaKeys,
  modelOptionRows,
  modelOptions,
  schemaFor,
  schemaKeys,
} from "../lib/config/schema.ts";
import { expects } from "../lib/config/leaf.ts";
import { z } from "../lib/deps.ts";
import { formatModelOptions, inspectText } from "../lib/cli/inspect.ts";
import { buildModel, type ModelDeclarations, MODELS } from "../lib/models/registry.ts";
import { checkOptions, extendOptions } from "../lib/models/options.ts";
import { UNET_OPTIONS, type UNetOptions } from "../lib/models/unet.ts";

/** The one place the throwaway option is declared. */
const GAIN_OPTIONS = extendOptions<UNetOptions, { gain: number }>(UNET_OPTIONS, {
  gain: {
    key: "gain",
    schema: expects(z.number().gt(0).lte(4), "a number in (0, 4]"),
    default: 2,
    doc: "Throwaway test option: a gain no model reads",
  },
}, [{
  keys: ["gain", "widths"],
  test: (o) =>
    o.gain <= o.widths.length
      ? undefined
      : `gain (${o.gain}) must not exceed the number of widths (${o.widths.length})`,
}]);

/** The registry plus the test model, as a registry-wide declaration list would be. */
const MODELS_PLUS: ModelDeclarations = {
  ...MODELS,
  "unet-gain": {
    name: "unet-gain",
    description: "the small U-Net with a throwaway option (tests only)",
    options: GAIN_OPTIONS,
  },
};

const HEAD = "name: t\ndata: {dataset: synth}\n";

function resolvePlus(text: string, sets: string[] = []): LoadedExperiment {
  return resolveExperimentText("e.yaml", text, sets, () => {
    throw new Deno.errors.NotFound("no extends in these tests");
  }, MODELS_PLUS);
}

function message(what: string, f: () => unknown): string {
  return expectError(what, InputError, f).message;
}

Deno.test("a declared option is in the YAML schema: default filled, keys mapped", () => {
  const r = resolvePlus(`${HEAD}model: {name: unet-gain, widths: [4, 8], image_size: 32}\n`);
  const m = r.config.model as Record<string, unknown>;
  assertEquals(m, { name: "unet-gain", image_size: 32, widths: [4, 8], out_channels: 1, gain: 2 });
  assertEquals(modelOptions(r.config, MODELS_PLUS), {
    name: "unet-gain",
    options: { imageSize: 32, widths: [4, 8], outChannels: 1, gain: 2 },
  });
  // Writing the default out is the same experiment; another value is another one.
  const explicit = resolvePlus(
    `${HEAD}model: {name: unet-gain, widths: [4, 8], image_size: 32, gain: 2}\n`,
  );
  assertEquals(explicit.hash, r.hash);
  const other = resolvePlus(`${HEAD}model: {name: unet-gain, widths: [4, 8], gain: 0.5}\n`);
  assertEquals((other.config.model as Record<string, unknown>).gain, 0.5);
  assert(other.hash !== r.hash, "gain is part of the config hash");
  // The allowed keys of the test model name it, in declaration order.
  const unknown = message(
    "unknown key",
    () => resolvePlus(`${HEAD}model: {name: unet-gain, g: 1}\n`),
  );
  assert(
    unknown.endsWith(
      "allowed: name, image_size, widths, out_channels, gain, init_from, init_prefix",
    ),
    unknown,
  );
});

Deno.test("a declared option is rejected out of range and by its check, at its YAML key", () => {
  const range = message(
    "gain 9",
    () => resolvePlus(`${HEAD}model:\n  name: unet-gain\n  gain: 9\n`),
  );
  assertEquals(range, "e.yaml:5:9: 'model.gain' must be a number in (0, 4] (got 9)");
  const zero = message(
    "gain 0 via --set",
    () => resolvePlus(`${HEAD}model: {name: unet-gain}\n`, ["model.gain=0"]),
  );
  assertEquals(zero, "--set model.gain=0: 'model.gain' must be a number in (0, 4] (got 0)");
  const check = message(
    "gain 3 with two widths",
    () => resolvePlus(`${HEAD}model:\n  name: unet-gain\n  widths: [4, 8]\n  gain: 3\n`),
  );
  assertEquals(
    check,
    "e.yaml:6:9: invalid 'model.gain' for unet-gain: gain (3) must not exceed the number of " +
      "widths (2)",
  );
  // The base declaration's checks come along, blamed as the base blames them.
  const base = message(
    "inherited check",
    () => resolvePlus(`${HEAD}model: {name: unet-gain, widths: [4, 8, 16], image_size: 34}\n`),
  );
  assertEquals(
    base,
    "e.yaml:3:58: invalid 'model.image_size' for unet-gain: image_size must be divisible by 4 " +
      "= 2^(levels - 1) for the 3 levels of widths (got 34)",
  );
  // Models built from code get the same words from the same declaration.
  const e = expectError(
    "checkOptions",
    RangeError,
    () => checkOptions("unet-gain", GAIN_OPTIONS, { ...GAIN_OPTIONS.defaults, gain: 5 }),
  );
  assertEquals(e.message, "unet-gain: gain must be a number in (0, 4] (got 5)");
});

Deno.test("a declared option is in the README table rows, only for its model", () => {
  const table = formatSchemaKeys(schemaKeys(MODELS_PLUS));
  const row = table.split("\n").find((l) => l.startsWith("| `model.gain` |"));
  assertEquals(
    row,
    "| `model.gain` | a number in (0, 4] | 2 | Throwaway test option: a gain no model reads " +
      "(models: unet-gain) |",
  );
  // The keys it shares with its base list it among their models.
  const widths = table.split("\n").find((l) => l.startsWith("| `model.widths` |"))!;
  assert(widths.endsWith("(models: unet-small, unet-gain) |"), widths);
  const name = table.split("\n").find((l) => l.startsWith("| `model.name` |"))!;
  assert(name.includes('"unet-gain"') && name.includes("unet-gain (the small U-Net"), name);
  // The registry's own table does not have it.
  assert(!formatSchemaKeys().includes("model.gain"), "gain leaked into the registry's table");
  assert(!("gain" in (MODELS["unet-small"].defaults as object)), "gain leaked into unet-small");
});

Deno.test("a declared option is in inspect's listing", () => {
  const r = resolvePlus(`${HEAD}model: {name: unet-gain, widths: [4, 8], gain: 1.5}\n`);
  const listing = formatModelOptions(modelOptionRows(r.config.model, MODELS_PLUS));
  const lines = listing.split("\n");
  assertEquals(lines[0].split(/\s{2,}/), ["option", "value", "default", "description"]);
  assertEquals(lines.map((l) => l.split(/\s{2,}/)[0]).slice(2), [
    "image_size",
    "widths",
    "out_channels",
    "gain",
  ]);
  assertEquals(lines.at(-1)!.split(/\s{2,}/), [
    "gain",
    "1.5 *",
    "2",
    "Throwaway test option: a gain no model reads",
  ]);
  // inspect's report prints the same listing for a registered model.
  const report = inspectText(
    "u.yaml",
    "name: u\ndata: {dataset: synth}\nmodel: {name: unet-small, widths: [4, 8], image_size: 32}\n",
  );
  assertEquals(report.options.map((o) => [o.key, o.value]), [
    ["image_size", 32],
    ["widths", [4, 8]],
    ["out_channels", 1],
  ]);
  assert(!report.options.some((o) => o.key === "gain"), "gain leaked into unet-small");
});

Deno.test("the registry's declarations: defaults are the schema's, checks name YAML keys", () => {
  for (const [name, entry] of Object.entries(MODELS)) {
    const r = resolveExperimentText("e.yaml", `${HEAD}model: {name: ${name}}\n`);
    // Every declared option resolves to its default, under its YAML key, and maps back.
    assertEquals(modelOptions(r.config).options, entry.defaults);
    const keys = Object.keys(r.config.model).filter((k) => k !== "name");
    assertEquals(keys, entry.options.list.map((o) => o.key));
  }
  // LViT built from code: the declaration's check, in YAML's key names (no regex over them).
  const e = expectError(
    "lvit image size",
    RangeError,
    () => buildModel("lvit-t", { imageSize: 72 })({} as never, {} as never),
  );
  assertEquals(e.message, "lvit: image_size must be a multiple of 16, at least 64 (got 72)");
  const h = expectError(
    "lvit heads",
    RangeError,
    () => buildModel("lvit-t", { heads: 5 })({} as never, {} as never),
  );
  assertEquals(h.message, "lvit: base_channels (64) must be even and divisible by heads (5)");
  // The registry's schema is built once; other declarations get their own, built once too.
  assert(schemaFor(MODELS) === ExperimentSchema, "the registry's schema is rebuilt");
  assert(schemaFor(MODELS_PLUS) !== ExperimentSchema, "the test schema is the registry's");
  assert(schemaFor(MODELS_PLUS) === schemaFor(MODELS_PLUS), "the test schema is rebuilt");
});
