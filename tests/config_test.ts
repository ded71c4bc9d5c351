/**
 * The experiment configuration (lib/config): schema defaults, `extends` chains, `--set`
 * overrides, positioned errors (file:line:col or --set, key path, allowed keys/values), the
 * content hash, and every shipped experiment file.
 */
import { assert, assertEquals, expectError } from "./assert.ts";
import { InputError } from "../lib/config/errors.ts";
import { loadSweep } from "../lib/sweep/spec.ts";

import {
  applySets,
  canonicalJson,
  type LoadedExperiment,
  loadExperiment,
  normalizePath,
  resolveExperimentText,
} from "../lib/config/load.ts";
import {
  BACKEND_CHOICES,
  type ExperimentConfig,
  formatSchemaKeys,
  modelOptions,
  schemaKeys,
} from "../lib/config/schema.ts";
import { parseSet } from "../lib/config/overrides.ts";
import { BACKENDS } from "../lib/backends/select.ts";
import { buildModel, MODELS } from "../lib/models/registry.ts";
import { countModel } from "../lib/models/count.ts";

const MIN = "name: t\ndata: {dataset: synth}\nmodel: {name: lvit-t}\n";

/** A read function over in-memory files; a missing one throws NotFound like Deno's. */
function memFs(files: Record<string, string>): (p: string) => string {
  return (p) => {
    if (!Object.hasOwn(files, p)) throw new Deno.errors.NotFound(`no such file: ${p}`);
    return files[p];
  };
}

function resolve(
  text: string,
  sets: string[] = [],
  files: Record<string, string> = {},
  file = "e.yaml",
): LoadedExperiment {
  return resolveExperimentText(file, text, sets, memFs(files));
}

/** The InputError message of `f`; fails when `f` succeeds or throws anything else. */
function inputError(what: string, f: () => unknown): string {
  return expectError(what, InputError, f).message;
}

/** The message must match every pattern. */
function fails(
  what: string,
  text: string,
  patterns: RegExp[],
  sets: string[] = [],
  files: Record<string, string> = {},
) {
  const msg = inputError(what, () => resolve(text, sets, files));
  for (const re of patterns) {
    if (!re.test(msg)) throw new Error(`${what}: message does not match ${re}:\n${msg}`);
  }
  assert(!msg.includes("\n\n"), `${what}: one paragraph expected:\n${msg}`);
}

Deno.test("defaults: the reference recipe and the registry's model options fill in", () => {
  const c = resolve(MIN).config;
  assertEquals(
    [c.variant, c.description, c.seed, c.backend],
    ["default", "", 666, "auto"],
  );
  assertEquals(c.data, {
    dataset: "synth",
    root: null,
    cache_dir: ".cache",
    augment: true,
    synth: { seed: 0, train: 64, val: 16, test: 16 },
  });
  assertEquals(c.text, { encoder: "builtin", model_dir: null });
  assertEquals(c.train, {
    epochs: 2000,
    batch: 2,
    lr: 0.001,
    betas: [0.9, 0.999],
    eps: 1e-8,
    weight_decay: 0,
    schedule: { kind: "cosine-restarts", t0: 10, t_mult: 1, eta_min: 0.0001 },
    patience: 50,
    min_save_epoch: 6,
    eval_every: 1,
    loss: { dice: 0.5, bce: 0.5 },
    checkpoint_every: 0,
    max_steps_per_epoch: null,
    labeled_fraction: 1,
    time_limit: null,
  });
  assertEquals(c.semi, {
    prototype_epochs: 10,
    epi: true,
    epi_beta: 0.99,
    binarize: false,
    lv_loss: true,
    lv_weight: 0.1,
    contrastive_dir: null,
  });
  assertEquals(c.eval, { split: "test", overlays: 16, save_predictions: true });
  // Model defaults are the registry's, per model.
  const { name, options } = modelOptions(c);
  assertEquals(name, "lvit-t");
  assertEquals(canonicalJson(options), canonicalJson(MODELS["lvit-t"].defaults));
  const l = modelOptions(resolve(MIN.replace("lvit-t", "lvit-lw")).config).options;
  assertEquals([l.depth, l.mlpRatio, l.text], [4, 4, false]);
  const u = resolve(MIN.replace("lvit-t", "unet-small")).config;
  assertEquals(u.model, {
    name: "unet-small",
    image_size: 224,
    widths: [16, 32, 64, 128],
    out_channels: 1,
  });
  assertEquals(modelOptions(u).options, {
    imageSize: 224,
    widths: [16, 32, 64, 128],
    outChannels: 1,
  });
  const r = resolve(MIN.replace("lvit-t", "unet")).config;
  assertEquals(modelOptions(r).options, { imageSize: 224, baseChannels: 64, outChannels: 1 });
});

Deno.test("modelOptions builds the model the config names", () => {
  const c = resolve(MIN, ["model.base_channels=8", "model.image_size=64"]).config;
  const { name, options } = modelOptions(c);
  // deno-lint-ignore no-explicit-any
  const small = countModel(buildModel(name, options as any), 1, 64).paramsRegistered;
  const full = countModel(buildModel("lvit-t"), 1, 224).paramsRegistered;
  assert(small > 0 && small < full / 20, `${small} vs ${full}`);
});

Deno.test("extends: bases in order, deep merge of mappings, lists and scalars replace", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lvit-config-" });
  try {
    await Deno.mkdir(`${dir}/base`);
    await Deno.writeTextFile(
      `${dir}/base/recipe.yaml`,
      [
        "# shared recipe",
        "seed: 1",
        "data: {dataset: qata, cache_dir: /tmp/c}",
        "train:",
        "  epochs: 100",
        "  batch: 4",
        "  betas: [0.5, 0.6]",
        "  schedule: {kind: constant, t0: 5}",
        "model: {name: unet-small, widths: [8, 16, 32]}",
        "",
      ].join("\n"),
    );
    await Deno.writeTextFile(
      `${dir}/base/small.yaml`,
      "extends: recipe.yaml\nseed: 2\ntrain: {batch: 8, schedule: {t0: 7}}\n",
    );
    await Deno.writeTextFile(
      `${dir}/base/other.yaml`,
      "seed: 3\ntrain: {lr: 0.01}\nmodel: {widths: [4, 8]}\n",
    );
    await Deno.mkdir(`${dir}/exp`);
    await Deno.writeTextFile(
      `${dir}/exp/run.yaml`,
      "extends: [../base/small.yaml, ../base/other.yaml]\nname: run\ntrain: {epochs: 9}\n",
    );
    const r = await loadExperiment(`${dir}/exp/run.yaml`);
    const c = r.config;
    assertEquals(r.files, [
      `${dir}/exp/run.yaml`,
      `${dir}/base/small.yaml`,
      `${dir}/base/recipe.yaml`,
      `${dir}/base/other.yaml`,
    ]);
    assertEquals(c.seed, 3); // other.yaml comes after small.yaml
    assertEquals(c.name, "run");
    assertEquals(c.data.dataset, "qata");
    assertEquals(c.data.cache_dir, "/tmp/c");
    assertEquals([c.train.epochs, c.train.batch, c.train.lr], [9, 8, 0.01]);
    assertEquals(c.train.betas, [0.5, 0.6]);
    // Mappings merge key by key through the chain.
    assertEquals(c.train.schedule, { kind: "constant", t0: 7, t_mult: 1, eta_min: 0.0001 });
    // Lists replace whole.
    assertEquals(c.model, { name: "unet-small", image_size: 224, widths: [4, 8], out_channels: 1 });

    // A bad value is reported where it was set: in the base file.
    await Deno.writeTextFile(`${dir}/base/other.yaml`, "seed: 3\ntrain: {lr: -1}\n");
    const msg = await loadExperiment(`${dir}/exp/run.yaml`).then(
      () => "accepted",
      (e) => e instanceof InputError ? e.message : String(e),
    );
    assert(
      msg.startsWith(`${dir}/base/other.yaml:2:13: 'train.lr' must be a positive number (got -1)`),
      msg,
    );
    // An unreadable experiment file is bad input too.
    const missing = await loadExperiment(`${dir}/nope.yaml`).then(
      () => "accepted",
      (e) => e instanceof InputError ? e.message : String(e),
    );
    assert(missing.startsWith(`${dir}/nope.yaml: cannot read the experiment file`), missing);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("extends: a diamond reads the shared base twice without calling it a cycle", () => {
  const files = {
    "x/base.yaml": "seed: 5\ndata: {dataset: synth}\n",
    "x/a.yaml": "extends: base.yaml\ntrain: {epochs: 3}\n",
    "x/b.yaml": "extends: ./base.yaml\ntrain: {batch: 3}\n",
  };
  const r = resolve(`extends: [a.yaml, b.yaml]\n${MIN}`, [], files, "x/top.yaml");
  assertEquals([r.config.seed, r.config.train.epochs, r.config.train.batch], [5, 3, 3]);
  assertEquals(r.files, ["x/top.yaml", "x/a.yaml", "x/base.yaml", "x/b.yaml"]);
  assertEquals(normalizePath("a/./b/../../../c//d"), "../c/d");
});

Deno.test("--set: values typed as YAML, nested paths, merged like a file, validated", () => {
  const c = resolve(MIN.replace("lvit-t", "unet-small"), [
    "train.epochs=2",
    "data.augment=false",
    "model.widths=[8,16]",
    "train.schedule.t0=3",
    "train.schedule={kind: constant}",
    "train.lr=3e-4",
    "data.root=/data/x y",
    "description='a: b'",
    "eval.overlays=0",
  ]).config;
  assertEquals(c.train.epochs, 2);
  assertEquals(c.data.augment, false);
  assertEquals(c.model, { name: "unet-small", image_size: 224, widths: [8, 16], out_channels: 1 });
  assertEquals(c.train.schedule, { kind: "constant", t0: 3, t_mult: 1, eta_min: 0.0001 });
  assertEquals(c.train.lr, 0.0003);
  assertEquals(c.data.root, "/data/x y");
  assertEquals(c.description, "a: b");
  assertEquals(c.eval.overlays, 0);
  // `key=` is null; later overrides win.
  const d = resolve(MIN, ["data.root=/a", "data.root=", "model.plam=false", "model.plam=true"]);
  assertEquals([d.config.data.root, d.config.model.plam], [null, true]);
  // An override replaces the file's value, and its problems are reported as --set.
  fails("set epochs 0", MIN, [
    /^--set train\.epochs=0: 'train\.epochs' must be a positive integer \(got 0\)$/,
  ], [
    "train.epochs=0",
  ]);
  fails(
    "set plam",
    MIN,
    [/^--set model\.plam=yes: 'model\.plam' must be true or false \(got "yes"\)$/],
    ["model.plam=yes"],
  );
  fails(
    "set through a scalar",
    MIN,
    [/^--set train\.epochs\.x=1: 'train\.epochs' must be a positive integer/],
    ["train.epochs.x=1"],
  );
  // applySets works on raw trees too.
  assertEquals(applySets({ a: { b: 1, c: 2 } }, ["a.b=[1, 2]", "d=x"]), {
    a: { b: [1, 2], c: 2 },
    d: "x",
  });
  assertEquals(parseSet("a.b-c_d=0x10").value, 16);
});

Deno.test("--set: bad paths, bad values and unknown keys name the argument", () => {
  fails("unknown key", MIN, [
    /^--set train\.epochz=2: unknown key 'train\.epochz' \(did you mean 'epochs'\?\); allowed: epochs, batch, lr,/,
  ], ["train.epochz=2"]);
  fails("unknown section", MIN, [
    /^--set trian\.epochs=2: unknown key 'trian' \(did you mean 'train'\?\); allowed: name, variant,/,
  ], [
    "trian.epochs=2",
  ]);
  fails("no =", MIN, [/^--set train\.epochs: expected key\.path=value/], ["train.epochs"]);
  fails("empty key", MIN, [/^--set =2: expected key\.path=value/], ["=2"]);
  fails("empty segment", MIN, [/^--set train\.\.epochs=2: 'train\.\.epochs' is not a key path/], [
    "train..epochs=2",
  ]);
  fails("bad segment", MIN, [/^--set train\.ep ochs=2: .*is not a key path/], ["train.ep ochs=2"]);
  fails(
    "extends",
    MIN,
    [/^--set extends=a\.yaml: 'extends' can only be set in an experiment file/],
    [
      "extends=a.yaml",
    ],
  );
  fails("bad flow", MIN, [/^--set model\.widths=\[8,: cannot read the value as YAML/], [
    "model.widths=[8,",
  ]);
  fails("block value", MIN, [/^--set description=a: b: the value reads as a YAML block mapping/], [
    "description=a: b",
  ]);
  fails(
    "dollar",
    MIN,
    [/^--set data\.root=\$\{HOME\}\/x: contains "\$\{".*LVIT_DATA.*data\.root/],
    [
      "data.root=${HOME}/x",
    ],
  );
});

Deno.test("errors: YAML syntax, unknown keys, types, enums name file:line:col and key path", () => {
  fails("syntax", "name: t\nmodel: {name: lvit-t\n", [/^e\.yaml:\d+:\d+: invalid YAML: /]);
  fails("tab indent", "name: t\nmodel:\n\tname: x\n", [/^e\.yaml:3:1: invalid YAML: /]);
  fails("duplicate key", `${MIN}name: u\n`, [
    /^e\.yaml:4:1: invalid YAML: Map keys must be unique/,
  ]);
  fails("unknown tag", `${MIN}description: !js/function "x"\n`, [/^e\.yaml:4:14: invalid YAML: /]);
  fails("root list", "- a\n- b\n", [/^e\.yaml:1:1: an experiment file must be a mapping/]);
  fails("unknown top", `${MIN}trian: {epochs: 2}\n`, [
    /^e\.yaml:4:1: unknown key 'trian' \(did you mean 'train'\?\); allowed: name, variant, description, seed, backend, data, text, model, train, semi, eval$/,
  ]);
  fails("unknown nested", `${MIN}train:\n  schedule: {kind: constant, t_0: 3}\n`, [
    /^e\.yaml:5:30: unknown key 'train\.schedule\.t_0' \(did you mean 't0'\?\); allowed: kind, t0, t_mult, eta_min$/,
  ]);
  fails(
    "unknown model key",
    "name: t\ndata: {dataset: synth}\nmodel:\n  name: lvit-t\n  dept: 2\n",
    [
      /^e\.yaml:5:3: unknown key 'model\.dept' for model lvit-t \(did you mean 'depth'\?\); allowed: name, image_size, base_channels, depth,/,
    ],
  );
  fails(
    "key not valid for the model",
    "name: t\ndata: {dataset: synth}\nmodel:\n  name: unet\n  widths: [8, 16]\n",
    [
      /^e\.yaml:5:3: unknown key 'model\.widths' for model unet; allowed: name, image_size, base_channels, out_channels, init_from, init_prefix$/,
    ],
  );
  fails("wrong type", `${MIN}train:\n  epochs: ten\n`, [
    /^e\.yaml:5:11: 'train\.epochs' must be a positive integer \(got "ten"\)$/,
  ]);
  fails("not an integer", `${MIN}train: {batch: 2.5}\n`, [
    /^e\.yaml:4:16: 'train\.batch' must be a positive integer \(got 2\.5\)$/,
  ]);
  fails("list item", `${MIN}train: {betas: [0.9, 1.5]}\n`, [
    /^e\.yaml:4:22: 'train\.betas\[1\]' must be a number in \[0, 1\) \(got 1\.5\)$/,
  ]);
  fails("list length", `${MIN}train: {betas: [0.9]}\n`, [
    /^e\.yaml:4:16: 'train\.betas' must be a list of 2 numbers in \[0, 1\) \(got \[0\.9\]\)$/,
  ]);
  fails("section type", `${MIN}eval: 3\n`, [/^e\.yaml:4:7: 'eval' must be a mapping \(got 3\)$/]);
  fails("bad enum", `${MIN}backend: gpu\n`, [
    /^e\.yaml:4:10: 'backend' must be one of "auto", "webgpu", "cpu" \(got "gpu"\)/,
  ]);
  fails("bad dataset", "name: t\ndata: {dataset: monseg}\nmodel: {name: unet}\n", [
    /^e\.yaml:2:17: 'data\.dataset' must be one of "synth", "qata", "mosmed", "monuseg" \(got "monseg"\) \(did you mean 'monuseg'\?\)$/,
  ]);
  fails("bad model", "name: t\ndata: {dataset: synth}\nmodel:\n  name: lvit-x\n", [
    /^e\.yaml:4:9: 'model\.name' must be one of "lvit-t", "lvit-tw", "lvit-l", "lvit-lw", "unet", "unet-small", "unetpp", "uctransnet", "gtunet" \(got "lvit-x"\) \(did you mean 'lvit-t'\?\)$/,
  ]);
  fails("literal enum", `${MIN.slice(0, -2)}, text_level: 5}\n`, [
    /^e\.yaml:3:35: 'model\.text_level' must be one of 1, 2, 3, 4 \(got 5\)$/,
  ]);
  fails("bad name", MIN.replace("name: t", "name: a/b"), [
    /^e\.yaml:1:7: 'name' must be a name of letters, digits, '\.', '_' and '-' \(got "a\/b"\)$/,
  ]);
  fails("dots name", MIN.replace("name: t", 'name: ".."'), [/^e\.yaml:1:7: 'name' must be/]);
  fails("missing keys", "data: {}\nmodel: {}\n", [
    /^e\.yaml:1:1: missing key 'data\.dataset' \(one of "synth",/m,
    /^e\.yaml:2:1: missing key 'model\.name' \(one of "lvit-t",/m,
    /^e\.yaml: missing key 'name'/m,
  ]);
  fails("every problem, in file order", `${MIN}train: {epochs: 0, batch: x}\nbackend: gpu\n`, [
    /^e\.yaml:4:17: 'train\.epochs'.*\ne\.yaml:4:27: 'train\.batch'.*\ne\.yaml:5:10: 'backend'/,
  ]);
});

Deno.test("errors: model checks across keys point at the key at fault", () => {
  const m = "name: t\ndata: {dataset: synth}\nmodel:\n  name: lvit-t\n";
  fails("heads 0", `${m}  heads: 0\n`, [
    /^e\.yaml:5:10: 'model\.heads' must be a positive integer \(got 0\)$/,
  ]);
  fails("base_channels vs heads", `${m}  base_channels: 12\n`, [
    /^e\.yaml:5:18: invalid 'model\.base_channels' for lvit-t: base_channels \(12\) must be even and divisible by heads \(8\)$/,
  ]);
  // Only heads was set: the problem is reported there.
  fails("heads vs base_channels", `${m}  heads: 5\n`, [
    /^e\.yaml:5:10: invalid 'model\.base_channels'/,
  ]);
  fails("lvit image size", `${m}  image_size: 72\n`, [/^e\.yaml:5:15: .*multiple of 16/]);
  fails(
    "unet image size",
    "name: t\ndata: {dataset: synth}\nmodel: {name: unet, image_size: 100}\n",
    [
      /^e\.yaml:3:33: 'model\.image_size' must be a positive multiple of 16 \(got 100\)$/,
    ],
  );
  // With the default image size, the widths that make it invalid are at fault.
  fails(
    "unet-small widths",
    "name: t\ndata: {dataset: synth}\nmodel: {name: unet-small, widths: [4, 8, 16, 32, 64, 128, 256]}\n",
    [
      /^e\.yaml:3:35: invalid 'model\.image_size' for unet-small: image_size must be divisible by 64 = 2\^\(levels - 1\) for the 7 levels of widths \(got 224\)$/,
    ],
  );
  fails("bert without a model", `${MIN}text:\n  encoder: bert\n`, [
    /^e\.yaml:5:12: text\.encoder 'bert' needs text\.model \(a hub id .*\) or text\.model_dir/,
  ]);
  fails(
    "bert with both model and model_dir",
    `${MIN}text: {encoder: bert, model: a/b, model_dir: /m}\n`,
    [
      /^e\.yaml:\d+:\d+: set text\.model or text\.model_dir, not both/,
    ],
  );
  assertEquals(resolve(`${MIN}text: {encoder: bert, model_dir: /m}\n`).config.text.model_dir, "/m");
  assertEquals(
    resolve(`${MIN}text: {encoder: bert, model: Xenova/bert-base-uncased}\n`).config.text.model,
    "Xenova/bert-base-uncased",
  );
});

Deno.test("errors: missing and cyclic extends, and ${} name the extends entry", () => {
  fails("missing", `name: t\nextends: [base/nope.yaml]\n`, [
    /^e\.yaml:2:11: extends target 'base\/nope\.yaml' not found \(looked for base\/nope\.yaml\)$/,
  ]);
  const cyc = {
    "d/a.yaml": "extends: b.yaml\nname: a\n",
    "d/b.yaml": "seed: 1\nextends:\n  - ../d/a.yaml\n",
  };
  const msg = inputError("cycle", () => resolve(cyc["d/a.yaml"], [], cyc, "d/a.yaml"));
  assertEquals(msg, "d/b.yaml:3:5: cyclic extends: d/a.yaml -> d/b.yaml -> d/a.yaml");
  const self = inputError("self", () => resolve("extends: e.yaml\n", [], { "e.yaml": "" }));
  assertEquals(self, "e.yaml:1:10: cyclic extends: e.yaml -> e.yaml");
  fails("bad extends", "extends: {a: 1}\n", [
    /^e\.yaml:1:10: 'extends' must be a file name or a list of file names/,
  ]);
  fails("error in a base", "extends: b.yaml\nname: t\n", [/^b\.yaml:\d+:\d+: invalid YAML/], [], {
    "b.yaml": "seed: 1\ntrain: {epochs: 2\n",
  });
  fails(
    "dollar",
    "name: t\ndata:\n  dataset: qata\n  root: ${LVIT_DATA}/QaTa\nmodel: {name: unet}\n",
    [
      /^e\.yaml:4:9: 'data\.root' contains "\$\{": .*no variables or expressions.*LVIT_DATA.*data\.root/,
    ],
  );
  fails("dollar in list", `${MIN}extends: ["\${X}.yaml"]\n`, [
    /^e\.yaml:4:11: 'extends\[0\]' contains "\$\{"/,
  ]);
});

Deno.test("hash: stable under key order and style, changes with any value", () => {
  const a = resolve(
    "name: t\nseed: 666\ndata:\n  dataset: synth\n  augment: true\nmodel: {name: unet, base_channels: 8}\n" +
      "train: {epochs: 3, lr: 0.001}\n",
  );
  const b = resolve(
    "train:\n  lr: 1.0e-3\n  epochs: 3\nmodel:\n  base_channels: 8\n  name: unet\n" +
      "data: {augment: true, dataset: synth}\nname: t\n",
  );
  assert(/^[0-9a-f]{8}$/.test(a.hash) && /^[0-9a-f]{64}$/.test(a.fullHash), a.fullHash);
  assertEquals(a.fullHash.slice(0, 8), a.hash);
  assertEquals(b.hash, a.hash);
  // Writing a default out is the same experiment.
  assertEquals(
    resolve(
      "name: t\ndata: {dataset: synth}\nmodel: {name: unet, base_channels: 8}\ntrain: {epochs: 3}\n",
    ).hash,
    a.hash,
  );
  assert(resolve(MIN, ["train.epochs=3"]).hash !== resolve(MIN, ["train.epochs=4"]).hash);
  assert(resolve(MIN, ["description=x"]).hash !== resolve(MIN).hash);
  assertEquals(
    canonicalJson({ b: [2, { d: 1, c: null }], a: "x" }),
    '{"a":"x","b":[2,{"c":null,"d":1}]}',
  );
});

Deno.test("the resolved YAML reloads to the same config and hash", () => {
  for (const text of [MIN, MIN.replace("lvit-t", "unet-small")]) {
    const r = resolve(text, ["description='a: \"b\" #x'", "train.eps=1e-9", "data.root='007'"]);
    const again = resolve(r.yaml, [], {}, "config.yaml");
    assertEquals(again.config, r.config);
    assertEquals(again.hash, r.hash);
  }
});

Deno.test("every shipped experiment and sweep file loads", async () => {
  // Every file under experiments/ but the base/ fragments, which only exist to be extended.
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(dir)) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory && path !== "experiments/base") walk(path);
      else if (e.isFile && e.name.endsWith(".yaml")) files.push(path);
    }
  };
  walk("experiments");
  files.sort();
  for (
    const f of ["experiments/demo.yaml", "experiments/qata.yaml", "experiments/semi/qata-25.yaml"]
  ) {
    assert(files.includes(f), `${f} not found among ${files.length} files`);
  }
  const seen = new Map<string, string>();
  const points = new Map<string, number>();
  for (const f of files) {
    if (f.endsWith(".sweep.yaml")) {
      points.set(f, (await loadSweep(f)).points.length);
      continue;
    }
    const r = await loadExperiment(f);
    const prev = seen.get(r.hash);
    assert(!prev, `${f} and ${prev} resolve to the same hash ${r.hash}`);
    seen.set(r.hash, f);
  }
  assertEquals(Object.fromEntries(points), {
    "experiments/ablations/text-plam-monuseg.sweep.yaml": 12,
    "experiments/ablations/text-plam-synth.sweep.yaml": 12,
    "experiments/ablations/text-tokens-synth.sweep.yaml": 6,
    "experiments/monuseg-table.sweep.yaml": 21,
    "experiments/semi/synth-25-ablations.sweep.yaml": 30,
  });
  const q = (await loadExperiment("experiments/qata.yaml")).config;
  assertEquals([q.model.name, q.model.image_size, q.train.batch, q.train.lr], [
    "lvit-t",
    224,
    24,
    0.0003,
  ]);
  const u = (await loadExperiment("experiments/unet-qata.yaml")).config;
  assertEquals([u.model.name, u.model.image_size, u.train.batch], ["unet", 224, 24]);
});

Deno.test("schema docs: every resolved key has a description; backends match select.ts", () => {
  const keys = schemaKeys();
  const byPath = new Map(keys.map((k) => [k.path, k]));
  const leaves = (v: unknown, p: string): string[] =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.entries(v).flatMap(([k, x]) => [`${p}${k}`, ...leaves(x, `${p}${k}.`)])
      : [];
  for (const m of ["lvit-t", "unet", "unet-small", "unetpp", "uctransnet", "gtunet"]) {
    const c: ExperimentConfig = resolve(MIN.replace("lvit-t", m)).config;
    for (const p of leaves(c, "")) {
      const k = byPath.get(p);
      assert(k && k.description.length > 10, `no description for ${p}`);
    }
  }
  assertEquals(byPath.get("train.epochs")?.default, 2000);
  assertEquals(byPath.get("train.epochs")?.unit, "epochs");
  assertEquals(byPath.get("name")?.required, true);
  assertEquals(byPath.get("model.depth")?.defaultByModel, {
    "lvit-t": 1,
    "lvit-tw": 1,
    "lvit-l": 4,
    "lvit-lw": 4,
    uctransnet: 4,
  });
  assertEquals(byPath.get("model.widths")?.models, ["unet-small"]);
  assert(formatSchemaKeys().includes("| `train.schedule.t0` | a positive integer | 10 |"));
  assertEquals([...BACKEND_CHOICES], [...BACKENDS]);
});
