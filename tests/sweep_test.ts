/**
 * Sweeps (issue 8): expansion order, include/exclude and variant names; positions of bad sweep
 * files; every point checked before anything runs; --dry-run hashes; the tables; a failing point;
 * and the acceptance run: a sweep on generated data interrupted with SIGTERM and finished with
 * --resume, whose table equals the statistics recomputed from the runs' summary.json files.
 */
import { assertNoStackTrace, denoRun, withTmp } from "./process.ts";
import { join } from "node:path";
import { assert, assertEquals, expectError } from "./assert.ts";
import { InputError } from "../lib/config/errors.ts";
import { resolveExperimentText } from "../lib/config/load.ts";
import { parseSet } from "../lib/config/overrides.ts";
import {
  defaultVariantName,
  expandSweep,
  parseSweepText,
  resolveSweep,
  setArg,
} from "../lib/sweep/spec.ts";
import { aggregate, fixed, meanSd, summaryCsv, summarySvg } from "../lib/sweep/aggregate.ts";
import type { Summary } from "../lib/run/runner.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const SWEEP = join(ROOT, "lib/cli/sweep.ts");

/** A tiny experiment on generated data (U-Net 4-8 on 32x32, cpu). */
function baseYaml(dir: string, train = "epochs: 2, batch: 2, lr: 0.01, min_save_epoch: 1") {
  return [
    "name: tiny",
    "seed: 5",
    "backend: cpu",
    `data: { dataset: synth, synth: { train: 8, val: 4, test: 4 }, cache_dir: ${dir}/cache }`,
    "model: { name: unet-small, widths: [4, 8], image_size: 32 }",
    `train: { ${train} }`,
    "eval: { overlays: 1, save_predictions: false }",
  ].join("\n") + "\n";
}

/** Parses sweep text named `s.sweep.yaml` and expands it (no base file needed). */
function expand(text: string) {
  return expandSweep(parseSweepText("s.sweep.yaml", text));
}

function throwsInput(f: () => unknown, ...needles: string[]): string {
  return expectError(`InputError with ${needles.join(", ")}`, InputError, f, ...needles).message;
}

const cli = (args: string[], cwd = ROOT) => denoRun([SWEEP, ...args], cwd);
const noTrace = assertNoStackTrace;

const exists = (p: string) => Deno.stat(p).then(() => true, () => false);

// ---------------------------------------------------------------------------------------------
// Expansion.

Deno.test("expansion: cartesian product in axis and value order, seed where it stands", () => {
  const e = expand(
    "name: s\nbase: b.yaml\naxes:\n  model.text: [true, false]\n  seed: [1, 2]\n" +
      "  train.lr: [0.1, 0.2]\n",
  );
  assertEquals(
    e.points.map((p) => `${p.variant}/${p.seedValue}`),
    [
      "text-true_lr-0.1/1",
      "text-true_lr-0.2/1",
      "text-true_lr-0.1/2",
      "text-true_lr-0.2/2",
      "text-false_lr-0.1/1",
      "text-false_lr-0.2/1",
      "text-false_lr-0.1/2",
      "text-false_lr-0.2/2",
    ],
  );
  assertEquals(e.variants.map((v) => v.name), [
    "text-true_lr-0.1",
    "text-true_lr-0.2",
    "text-false_lr-0.1",
    "text-false_lr-0.2",
  ]);
  assertEquals(e.variants[0].label, "model.text=true, train.lr=0.1");
  // The baseline defaults to the first variant; --set order follows the axes.
  assertEquals(e.baseline, "text-true_lr-0.1");
  assertEquals(e.points[2].overrides.map((s) => s.key), ["model.text", "seed", "train.lr"]);
});

Deno.test("expansion: variants, include, exclude, default names", () => {
  const e = expand(`name: s
base: b.yaml
baseline: full
axes:
  model.text: [true, false]
  model.plam: [true, false]
  seed: [1, 2]
variants:
  - { name: full, when: { model.text: true, model.plam: true } }
  - { name: no-text, when: { model.text: false, model.plam: true } }
include:
  - { model.text: false, model.text_substitute: image }
exclude:
  - { model.text: false, model.plam: false }
  - { model.text: true, model.plam: false, seed: 2 }
`);
  assertEquals(
    e.points.map((p) => `${p.variant}/${p.seedValue}`),
    [
      "full/1",
      "full/2",
      "text-true_plam-false/1",
      "no-text/1",
      "no-text/2",
      "text-false_text_substitute-image/1",
      "text-false_text_substitute-image/2",
    ],
  );
  assertEquals(e.points.map((p) => p.index), [1, 2, 3, 4, 5, 6, 7]);
  assertEquals(e.warnings, []);
  // Two keys with the same last segment keep their whole path in default names.
  assertEquals(
    defaultVariantName(
      [{ key: "model.dropout", value: 0.1 }, { key: "data.dropout", value: [1, 2] }],
    ),
    "model.dropout-0.1_data.dropout-1x2",
  );
  assertEquals(
    defaultVariantName([{ key: "train.schedule", value: { kind: "constant" } }]),
    "schedule-kind-constant",
  );
  assertEquals(defaultVariantName([]), "default");
  assertEquals(defaultVariantName([{ key: "description", value: "a b/c" }]), "description-a-b-c");
});

Deno.test("expansion: ambiguous names, bad baseline and unused rules", () => {
  throwsInput(
    () =>
      expand(
        "name: s\nbase: b.yaml\naxes:\n  model.text: [true, false]\n  model.plam: [true]\n" +
          "variants:\n  - { name: x, when: { model.plam: true } }\n",
      ),
    "s.sweep.yaml:7:13: variant 'x' would name two different combinations",
  );
  throwsInput(
    () =>
      expand(
        "name: s\nbase: b.yaml\nbaseline: ful\naxes:\n  model.text: [true]\n" +
          "variants:\n  - { name: full, when: { model.text: true } }\n",
      ),
    "s.sweep.yaml:3:11: baseline 'ful' is not a variant of this sweep (did you mean 'full'?)",
  );
  const e = expand(
    "name: s\nbase: b.yaml\naxes:\n  model.text: [true]\n" +
      "variants:\n  - { name: never, when: { model.text: false } }\n" +
      "exclude: [ { model.text: false } ]\n",
  );
  assertEquals(e.warnings, [
    "s.sweep.yaml:7:14: exclude[0] matches no point",
    "s.sweep.yaml:6:13: variant 'never' matches no point",
  ]);
});

Deno.test("a sweep whose excludes remove every point is an error (exit 2)", async () => {
  const text = "name: s\nbase: b.yaml\naxes:\n  model.text: [true, false]\n  seed: [1, 2]\n" +
    "exclude:\n  - { model.text: true }\n  - { model.text: false }\n";
  throwsInput(
    () => expand(text),
    "s.sweep.yaml: the sweep has no points (every combination is excluded)",
  );
  await withTmp("lvit-sweep-", async (dir) => {
    const file = join(dir, "s.sweep.yaml");
    await Deno.writeTextFile(file, text);
    await Deno.writeTextFile(join(dir, "b.yaml"), baseYaml(dir));
    const r = await cli([file, "--out", join(dir, "runs")]);
    assertEquals(r.code, 2);
    assert(r.text.includes(`${file}: the sweep has no points`), r.text);
    noTrace(r.text);
    assert(!(await exists(join(dir, "runs"))), "nothing written");
  });
});

Deno.test("sweep file problems are reported at their line:col", () => {
  throwsInput(
    () => parseSweepText("s.sweep.yaml", "name: s\nbase: b.yaml\naxis:\n  seed: [1]\n"),
    "s.sweep.yaml:3:1: unknown key 'axis' (did you mean 'axes'?)",
    "s.sweep.yaml:1:1: missing key 'axes'",
  );
  throwsInput(
    () => parseSweepText("s.sweep.yaml", "name: s\nbase: b.yaml\naxes:\n  seed: 3\n"),
    "s.sweep.yaml:4:9: 'axes.seed' must be a list of values, e.g. [true, false] (got 3)",
  );
  throwsInput(
    () => parseSweepText("s.sweep.yaml", "name: s\nbase: b.yaml\naxes:\n  a..b: [1]\n"),
    "s.sweep.yaml:4:3: 'a..b' must be a key path",
  );
  throwsInput(
    () => parseSweepText("s.sweep.yaml", "name: a/b\nbase: b.yaml\naxes: {}\n"),
    "s.sweep.yaml:1:7: 'name' must be a sweep name",
  );
  throwsInput(
    () => parseSweepText("s.sweep.yaml", "name: s\nbase: b.yaml\naxes:\n  seed: [1, 2, 1]\n"),
    "s.sweep.yaml:4:16: axis 'seed' lists 1 twice",
  );
  throwsInput(
    () => parseSweepText("s.sweep.yaml", "name: s\nbase: b.yaml\naxes:\n  variant: [a, b]\n"),
    "s.sweep.yaml:4:3: axis 'variant': the sweep sets 'variant' itself",
  );
  throwsInput(
    () =>
      parseSweepText(
        "s.sweep.yaml",
        "name: s\nbase: b.yaml\naxes:\n  seed: [1]\nexclude: [ { train.lr: 1 } ]\n",
      ),
    "s.sweep.yaml:5:14: exclude[0] 'train.lr' is not an axis",
  );
});

Deno.test("--set arguments read back as the same values", () => {
  const cases: [string, unknown][] = [
    ["model.text", false],
    ["model.widths", [4, 8]],
    ["train.lr", 0.003],
    ["train.lr", 1e-8],
    ["description", "true"],
    ["description", "a: b"],
    ["description", "x #y"],
    ["data.root", null],
    ["train.schedule", { kind: "constant", t0: 3 }],
  ];
  for (const [k, v] of cases) {
    const a = setArg(k, v);
    assertEquals(parseSet(a).value, v);
  }
  assertEquals(setArg("model.text", false), "model.text=false");
  assertEquals(setArg("description", "true"), 'description="true"');
});

// ---------------------------------------------------------------------------------------------
// Resolution through the experiment loader.

Deno.test("a bad axis key or value fails at the sweep file's position before anything runs", async () => {
  await withTmp("lvit-sweep-", async (dir) => {
    await Deno.writeTextFile(join(dir, "base.yaml"), baseYaml(dir));
    const sweep = [
      "name: bad",
      "base: base.yaml",
      "set: { train.epochs: 0 }",
      "axes:",
      "  model.widths: [[4, 8]]",
      "  model.plamm: [true, false]",
      "  seed: [1, 2]",
      "",
    ].join("\n");
    const file = join(dir, "bad.sweep.yaml");
    await Deno.writeTextFile(file, sweep);
    const msg = throwsInput(
      () => resolveSweep(parseSweepText(file, sweep)),
      `${file}:3:22: set 'train.epochs': 'train.epochs' must be a positive integer (got 0)`,
      `${file}:6:3: axis 'model.plamm': unknown key 'model.plamm' for model unet-small`,
    );
    assertEquals(msg.split("\n").length, 2); // one line per problem, not one per point
    const r = await cli([file, "--out", join(dir, "runs"), "--workers", "2"]);
    assertEquals(r.code, 2);
    noTrace(r.text);
    assert(r.text.includes(`${file}:6:3: axis 'model.plamm'`), r.text);
    assert(!(await exists(join(dir, "runs"))), "something ran");
    assert(!(await exists(join(dir, "cache"))), "data was prepared");
    // A missing base file is reported at the base: line.
    await Deno.writeTextFile(file, sweep.replace("base.yaml", "nope.yaml"));
    const m = await cli([file, "--dry-run"]);
    assertEquals(m.code, 2);
    assert(m.text.includes(`${file}:2:7: base experiment not found`), m.text);
  });
});

Deno.test("--dry-run prints every point with its config hash, folder and run command", async () => {
  await withTmp("lvit-sweep-", async (dir) => {
    const base = join(dir, "base.yaml");
    await Deno.writeTextFile(base, baseYaml(dir));
    const file = join(dir, "s.sweep.yaml");
    await Deno.writeTextFile(
      file,
      "name: dry\nbase: base.yaml\nset: { train.epochs: 3 }\n" +
        "axes:\n  model.widths: [[4, 8], [4, 16]]\n  seed: [1, 2]\n",
    );
    const out = join(dir, "runs");
    const r = await cli([file, "--dry-run", "--out", out, "--backend", "cpu"]);
    assertEquals(r.code, 0);
    const text = await Deno.readTextFile(base);
    let k = 0;
    for (const w of ["4,8", "4,16"]) {
      for (const seed of [1, 2]) {
        const variant = `widths-${w.replace(",", "x")}`;
        const sets = [
          "train.epochs=3",
          `model.widths=[${w}]`,
          `seed=${seed}`,
          `variant=${variant}`,
        ];
        const { hash } = resolveExperimentText(base, text, sets);
        const folder = join(out, "tiny", variant, hash);
        assert(r.text.includes(`${hash}  pending     ${folder}`), `${hash} missing:\n${r.text}`);
        const cmd = `deno task run ${base} ${
          sets.map((s) => `--set ${s.includes("[") ? `'${s}'` : s}`).join(" ")
        } --out ${out} --backend cpu`;
        assert(r.text.includes(cmd), `command missing: ${cmd}\n${r.text}`);
        k++;
      }
    }
    assertEquals(k, 4);
    assert(!(await exists(out)), "--dry-run wrote something");

    // A point with a checkpoint but no summary is unfinished: shown so, and the sweep refuses
    // to start without --resume (nothing runs).
    const first = r.text.split("\n").find((l) => l.includes("pending"))!.trim().split(/\s+/).pop()!;
    await Deno.mkdir(join(first, "checkpoints"), { recursive: true });
    await Deno.writeTextFile(join(first, "checkpoints", "last.safetensors"), "");
    const d2 = await cli([file, "--dry-run", "--out", out]);
    assert(/unfinished\s+\S+/.test(d2.text) && d2.text.includes("--resume"), d2.text);
    const refused = await cli([file, "--out", out]);
    assertEquals(refused.code, 2);
    noTrace(refused.text);
    assert(refused.text.includes("pass --resume"), refused.text);
    assert(!(await exists(join(out, "dry"))), "the refused sweep wrote its folder");
  });
});

// ---------------------------------------------------------------------------------------------
// Tables.

/** A summary.json with the metrics the tables read (pooled: 0.05 above the per-image ones). */
function fakeSummary(dice: number, iou: number, params = 100, seconds = 1): Summary {
  return {
    params,
    macs: 2.5e9,
    val: { dice: dice + 0.1, iou: iou + 0.1 },
    test: { dice, iou, f1: dice, pooled: { dice: dice + 0.05, iou: iou + 0.05 } },
    train_seconds: seconds,
  } as Summary;
}

Deno.test("tables: mean and sample sd, n/a below 2 seeds, diff vs baseline", () => {
  const s = meanSd([0.5, 0.7, 0.9]);
  assertEquals([s.n, fixed(s.mean!, 6), fixed(s.sd!, 6)], [3, "0.700000", "0.200000"]);
  assertEquals(meanSd([0.5]), { n: 1, mean: 0.5, sd: null });
  assertEquals(meanSd([]), { n: 0, mean: null, sd: null });
  assertEquals(fixed(-0.00001, 4), "0.0000");

  const sw = {
    variants: [
      { name: "a", label: "x=1", settings: [] },
      { name: "b", label: 'x=2, y="q"', settings: [] },
      { name: "c", label: "x=3", settings: [] },
    ],
    baseline: "b",
  };
  const pts = [
    { index: 1, variant: "a" },
    { index: 2, variant: "a" },
    { index: 3, variant: "b" },
    { index: 4, variant: "c" },
  ] as unknown as Parameters<typeof aggregate>[1];
  // Point 3's summary predates the pooled metric: its pooled cells are n/a.
  const old = fakeSummary(0.5, 0.3, 120, 1);
  const sums = new Map([
    [1, fakeSummary(0.8, 0.6, 100, 2)],
    [2, fakeSummary(0.6, 0.4, 100, 4)],
    [3, { ...old, test: { dice: 0.5, iou: 0.3, f1: 0.5 } } as Summary],
  ]);
  const rows = aggregate(sw, pts, sums);
  assertEquals(rows.map((r) => [r.done, r.total]), [[2, 2], [1, 1], [0, 1]]);
  assertEquals(summaryCsv(rows).split("\n"), [
    "variant,settings,baseline,seeds_done,seeds_total,val_dice_mean,val_dice_sd,val_iou_mean," +
    "val_iou_sd,test_dice_mean,test_dice_sd,test_iou_mean,test_iou_sd,test_dice_pooled_mean," +
    "test_dice_pooled_sd,test_iou_pooled_mean,test_iou_pooled_sd,params,gmacs," +
    "train_seconds_mean,test_dice_diff_vs_baseline",
    "a,x=1,false,2,2,0.8000,0.1414,0.6000,0.1414,0.7000,0.1414,0.5000,0.1414," +
    "0.7500,0.1414,0.5500,0.1414,100,2.500,3.00,+0.2000",
    'b,"x=2, y=""q""",true,1,1,0.6000,n/a,0.4000,n/a,0.5000,n/a,0.3000,n/a,' +
    "n/a,n/a,n/a,n/a,120,2.500,1.00,+0.0000",
    "c,x=3,false,0,1,n/a,n/a,n/a,n/a,n/a,n/a,n/a,n/a,n/a,n/a,n/a,n/a,n/a,n/a,n/a,n/a",
    "",
  ]);
  const svg = summarySvg("t <&>", rows);
  assert(svg.startsWith("<?xml") && svg.includes("t &lt;&amp;&gt;"), "svg header / escaping");
  assertEquals(svg, summarySvg("t <&>", rows)); // deterministic
  assert(svg.includes("no finished seed"), "the empty row is labelled");
});

// ---------------------------------------------------------------------------------------------
// Running.

Deno.test("a failing point is recorded and the sweep goes on, exit 1", async () => {
  await withTmp("lvit-sweep-", async (dir) => {
    await Deno.writeTextFile(join(dir, "base.yaml"), baseYaml(dir));
    const file = join(dir, "f.sweep.yaml");
    await Deno.writeTextFile(
      file,
      "name: f\nbase: base.yaml\naxes:\n  data.root: [null]\n" +
        `include: [ { data.dataset: qata, data.root: ${dir}/nope } ]\n`,
    );
    const out = join(dir, "runs");
    const r = await cli([file, "--out", out]);
    assertEquals(r.code, 1);
    noTrace(r.text);
    const pj = JSON.parse(await Deno.readTextFile(join(out, "f", "points.json")));
    assertEquals(pj.points.map((p: { status: string }) => p.status), ["done", "failed"]);
    assertEquals(pj.points[1].exit_code, 2);
    assert(pj.points[1].error.includes("nope"), pj.points[1].error);
    assert(await exists(pj.points[1].log), "log of the failed point");
    const md = await Deno.readTextFile(join(out, "f", "sweep-summary.md"));
    assert(md.includes("## Failed points") && md.includes("exit 2"), md);
    assert(r.text.includes("FAILED"), r.text);
  });
});

Deno.test("acceptance: a sweep interrupted by SIGTERM finishes with --resume; table = summaries", async () => {
  await withTmp("lvit-sweep-", async (dir) => {
    await Deno.writeTextFile(
      join(dir, "base.yaml"),
      baseYaml(dir, "epochs: 30, batch: 2, lr: 0.01, min_save_epoch: 5, patience: 100"),
    );
    const file = join(dir, "acc.sweep.yaml");
    await Deno.writeTextFile(
      file,
      [
        "name: acc",
        "base: base.yaml",
        "baseline: small-fast",
        "axes:",
        "  model.widths: [[4, 8], [8, 16]]",
        "  train.lr: [0.01, 0.03]",
        "  seed: [1, 2]",
        "variants:",
        "  - { name: small-fast, when: { model.widths: [4, 8], train.lr: 0.03 } }",
        "",
      ].join("\n"),
    );
    const out = join(dir, "runs");
    const sdir = join(out, "acc");
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--unstable-webgpu", SWEEP, file, "--out", out, "--workers", "2"],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const outText = Promise.all([
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
    ]);
    // Interrupt once the first point has finished (points take about a second each).
    const summaries = async () => {
      const pj = JSON.parse(await Deno.readTextFile(join(sdir, "points.json")));
      const done: string[] = [];
      for (const p of pj.points) if (await exists(join(p.dir, "summary.json"))) done.push(p.dir);
      return done;
    };
    let exited = false;
    child.status.then(() => exited = true);
    for (let i = 0; i < 1200 && !exited; i++) {
      await new Promise((r) => setTimeout(r, 25));
      if ((await exists(join(sdir, "points.json"))) && (await summaries()).length >= 1) break;
    }
    if (!exited) child.kill("SIGTERM");
    const st = await child.status;
    const first = (await outText).join("");
    noTrace(first);
    assert(st.code === 130, `exit ${st.code}:\n${first}`);
    assert(first.includes("stopping: no new points"), first);
    const finished = await summaries();
    assert(finished.length >= 1 && finished.length < 8, `finished ${finished.length}:\n${first}`);
    const mtimes = new Map<string, number>();
    for (const d of finished) {
      mtimes.set(d, (await Deno.stat(join(d, "summary.json"))).mtime!.getTime());
    }
    // Partial tables exist already.
    const partial = await Deno.readTextFile(join(sdir, "sweep-summary.csv"));
    assertEquals(partial.trim().split("\n").length, 5);

    const again = await cli([file, "--out", out, "--workers", "2", "--resume"]);
    noTrace(again.text);
    assert(again.code === 0, again.text);
    const pj = JSON.parse(await Deno.readTextFile(join(sdir, "points.json")));
    assertEquals(pj.points.length, 8);
    for (const p of pj.points) {
      assertEquals(p.status, "done");
      const was = mtimes.get(p.dir);
      const log = await Deno.readTextFile(p.log);
      const attempts = log.split("\n").filter((l: string) => l.startsWith("=== ")).length;
      if (was !== undefined) {
        const now = (await Deno.stat(join(p.dir, "summary.json"))).mtime!.getTime();
        assertEquals(now, was);
        assert(again.text.includes(`skip ${p.variant} seed ${p.seed}: finished`), again.text);
        assertEquals(attempts, 1);
      } else {
        assert(!again.text.includes(`skip ${p.variant} seed ${p.seed}:`), again.text);
        // A point stopped by the SIGTERM logged two attempts; the others one.
        const stopped = first.includes(`stopped ${p.variant} seed ${p.seed} `);
        assertEquals(attempts, stopped ? 2 : 1);
      }
    }
    const ran = again.text.split("\n").filter((l) => / (start|continue) /.test(l)).length;
    assert(ran === 8 - finished.length, again.text);

    // The table equals the statistics recomputed from the summaries.
    const csv = (await Deno.readTextFile(join(sdir, "sweep-summary.csv"))).trim().split("\n");
    const head = csv[0].split(",");
    const rows = csv.slice(1).map((l) => {
      const cells = l.match(/("([^"]|"")*"|[^,]*)(,|$)/g)!.map((c) => c.replace(/,$/, ""));
      return Object.fromEntries(head.map((h, i) => [h, cells[i]]));
    });
    assertEquals(rows.map((r) => r.variant), [
      "widths-4x8_lr-0.01",
      "small-fast",
      "widths-8x16_lr-0.01",
      "widths-8x16_lr-0.03",
    ]);
    const stats = (xs: number[]) => {
      const m = xs.reduce((a, b) => a + b, 0) / xs.length;
      const sd = Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1));
      return [m, sd];
    };
    const f4 = (x: number) => x.toFixed(4).replace(/^-(0\.0+)$/, "$1");
    let baseDice = NaN;
    const means = new Map<string, number>();
    for (const r of rows) {
      const sums = await Promise.all(
        pj.points.filter((p: { variant: string }) => p.variant === r.variant).map(
          async (p: { dir: string }) =>
            JSON.parse(await Deno.readTextFile(join(p.dir, "summary.json"))) as Summary,
        ),
      );
      assertEquals([r.seeds_done, r.seeds_total], ["2", "2"]);
      for (
        const [col, get] of [
          ["val_dice", (s: Summary) => s.val.dice!],
          ["val_iou", (s: Summary) => s.val.iou!],
          ["test_dice", (s: Summary) => s.test.dice],
          ["test_iou", (s: Summary) => s.test.iou],
          ["test_dice_pooled", (s: Summary) => s.test.pooled.dice],
          ["test_iou_pooled", (s: Summary) => s.test.pooled.iou],
        ] as const
      ) {
        const [m, sd] = stats(sums.map(get));
        assertEquals([r[`${col}_mean`], r[`${col}_sd`]], [f4(m), f4(sd)]);
      }
      assertEquals(r.params, String(sums[0].params));
      const ts = sums.map((s) => s.train_seconds);
      assertEquals(r.train_seconds_mean, ((ts[0] + ts[1]) / 2).toFixed(2));
      const [m] = stats(sums.map((s) => s.test.dice));
      means.set(r.variant, m);
      if (r.variant === "small-fast") baseDice = m;
    }
    for (const r of rows) {
      const d = means.get(r.variant)! - baseDice;
      assertEquals(r.test_dice_diff_vs_baseline, (d < 0 ? "" : "+") + f4(d));
    }
    const md = await Deno.readTextFile(join(sdir, "sweep-summary.md"));
    const [m, sd] = stats(
      [...means.keys()].includes("small-fast")
        ? await Promise.all(
          pj.points.filter((p: { variant: string }) => p.variant === "small-fast").map(
            async (p: { dir: string }) =>
              JSON.parse(await Deno.readTextFile(join(p.dir, "summary.json"))).test.dice as number,
          ),
        )
        : [],
    );
    assert(md.includes(`${(100 * m).toFixed(2)} ± ${(100 * sd).toFixed(2)}`), md);
    // The Markdown table labels per-image and pooled metrics and carries both.
    assert(
      md.includes(
        "| test Dice (per-image) | test IoU (per-image) | test Dice (pooled) | test IoU (pooled) |",
      ),
      md,
    );
    const pooled = await Promise.all(
      pj.points.filter((p: { variant: string }) => p.variant === "small-fast").map(
        async (p: { dir: string }) =>
          (JSON.parse(await Deno.readTextFile(join(p.dir, "summary.json"))) as Summary).test
            .pooled.dice,
      ),
    );
    const [pm, psd] = stats(pooled);
    const baseRow = md.split("\n").find((l) => l.startsWith("| **small-fast** (baseline) |"));
    assertEquals(
      baseRow?.split(" | ")[7],
      `${(100 * pm).toFixed(2)} ± ${(100 * psd).toFixed(2)}`,
    );
    assert(await exists(join(sdir, "sweep-summary.svg")), "svg");
  });
});
