/**
 * `deno task table`: finished runs grouped by experiment and variant with mean ± sd, the
 * reference file's names, order and figures, MACs counted from each run's config, and bad
 * summaries or reference files refused with the file named.
 */
import { join } from "node:path";
import { InputError } from "../lib/config/errors.ts";
import { resolveExperimentText } from "../lib/config/load.ts";
import { countModel } from "../lib/models/count.ts";
import { experimentModel } from "../lib/run/experiment.ts";
import {
  finishedRuns,
  latexText,
  type MacsOf,
  MAX_SUMMARY_BYTES,
  readReference,
  referenceMacsOf,
  resultRows,
  RESULTS_CSV_COLUMNS,
  resultsCsv,
  resultsLatex,
  resultsMarkdown,
} from "../lib/run/results_table.ts";
import { main } from "../lib/cli/table.ts";
import { assert, assertEquals, expectRejection } from "./assert.ts";
import { withTmp } from "./process.ts";
import { tinyExperiment } from "./fuzz_driver.ts";

/** A summary.json with the given figures (fractions) and the other fields plausible. */
function summary(o: {
  experiment: string;
  variant: string;
  seed: number;
  dice: number;
  iou: number;
  pooled?: [number, number];
  hours?: number;
}) {
  return {
    experiment: o.experiment,
    variant: o.variant,
    seed: o.seed,
    backend: "cpu",
    adapter: "cpu, 1 thread, BLAS libopenblas.so.0",
    params: 1234,
    macs: 99,
    epochs: 60,
    steps: 600,
    best_epoch: 10,
    val: { dice: 0.5, iou: 0.4 },
    test: {
      dice: o.dice,
      iou: o.iou,
      f1: o.dice,
      ...(o.pooled ? { pooled: { dice: o.pooled[0], iou: o.pooled[1] } } : {}),
    },
    train_seconds: (o.hours ?? 1) * 3600,
  };
}

/** A run folder as the runner leaves it: config.yaml, metrics.jsonl and (finished) summary. */
async function runFolder(dir: string, config: string, sum?: unknown) {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(join(dir, "config.yaml"), config);
  await Deno.writeTextFile(join(dir, "metrics.jsonl"), "");
  if (sum !== undefined) {
    await Deno.writeTextFile(join(dir, "summary.json"), JSON.stringify(sum));
  }
}

const noMacs: MacsOf = () => Promise.resolve(7e9);

Deno.test("table: runs grouped by experiment/variant, mean ± sd, reference rows first", async () => {
  await withTmp("lvit-table-", async (root) => {
    const cfg = "name: x\n";
    // [folder, experiment, variant, seed, dice, iou, pooled, hours]
    const finished: [string, string, string, number, number, number, [number, number]?, number?][] =
      [
        ["a/default/h1", "a", "default", 1, 0.7, 0.5, [0.72, 0.52], 1],
        ["a/default/h2", "a", "default", 2, 0.8, 0.6, [0.78, 0.58], 3],
        ["b/x/h3", "b", "x", 1, 0.6, 0.45],
      ];
    for (const [f, experiment, variant, seed, dice, iou, pooled, hours] of finished) {
      const s = summary({ experiment, variant, seed, dice, iou, pooled, hours });
      await runFolder(join(root, ...f.split("/")), cfg, s);
    }
    await runFolder(join(root, "c", "default", "h4"), cfg); // unfinished: left out
    const runs = await finishedRuns([root]);
    assertEquals(runs.length, 3);
    const reference = {
      source: "the paper",
      rows: [
        { run: "z/default", name: "Z", dice: 90, iou: 80 },
        { run: "a/default", name: "Model A", dice: 76.5, iou: 60 },
        { run: "y/default", name: "Line\nbreak | pipe" },
      ],
    };
    const rows = await resultRows(runs, [root], reference, noMacs);
    assertEquals(rows.map((r) => r.name), ["Z", "Model A", "Line\nbreak | pipe", "b/x"]);
    const [z, a, , b] = rows;
    assertEquals(z.folders, []);
    assertEquals(a.folders, [join("a", "default", "h1"), join("a", "default", "h2")]);
    assertEquals(a.seeds, [1, 2]);
    assert(Math.abs(a.testDice.mean! - 0.75) < 1e-12, `mean ${a.testDice.mean}`);
    assert(Math.abs(a.testDice.sd! - Math.sqrt(0.005)) < 1e-12, `sd ${a.testDice.sd}`);
    assert(Math.abs(a.diceDiff! - (75 - 76.5)) < 1e-9, `diff ${a.diceDiff}`);
    assert(Math.abs(a.trainHours.mean! - 2) < 1e-12, `hours ${a.trainHours.mean}`);
    assertEquals(a.ranOn, ["cpu, 1 thread"]);
    assertEquals(b.pooledDice.n, 0); // a summary without pooled figures
    assertEquals(b.reference, null);

    const md = resultsMarkdown(rows, reference);
    const line = (name: string) => md.split("\n").find((l) => l.startsWith(`| ${name} |`)) ?? "";
    assert(line("Z").includes("| not run |"), line("Z"));
    assert(line("Model A").includes("75.00 ± 7.07 / 55.00 ± 7.07"), line("Model A"));
    assert(line("Model A").includes("| 76.50 / 60.00 | -1.50 |"), line("Model A"));
    assert(line("Model A").includes("0.00 / 7.00"), line("Model A")); // params (M) / GMACs
    assert(line("b/x").includes("| 60.00 / 45.00 | — / — |"), line("b/x"));
    assert(md.includes("Reference: the paper"), md);
    assert(line("Line break \\| pipe").includes("| not run |"), md); // one row, one line

    const csv = resultsCsv(rows).trimEnd().split("\n");
    assertEquals(csv[0].split(","), [...RESULTS_CSV_COLUMNS]);
    assertEquals(csv.length, 6); // a header and four rows, one of them quoted over two lines
    const aCsv = Object.fromEntries(RESULTS_CSV_COLUMNS.map((c, i) => [c, csv[2].split(",")[i]]));
    assertEquals(csv[3], '"Line');
    assert(csv[4].startsWith('break | pipe",y/default,'), csv[4]);
    assertEquals(aCsv.test_dice_mean, "75.0000");
    assertEquals(aCsv.test_dice_sd, "7.0711");
    assertEquals(aCsv.seeds, "1 2");
    assertEquals(aCsv.reference_dice, "76.50");
    assertEquals(csv[1], "Z,z/default,,,,,,,,,,,90.00,80.00,,,,,,,,");

    const tex = resultsLatex(rows).split("\n");
    assertEquals(tex[0], "\\begin{tabular}{lrrrrrr}");
    assert(
      tex.includes(
        "Model A & $75.00 \\pm 7.07$ & $55.00 \\pm 7.07$ & 76.50 & 60.00 & 0.00 & 7.00 \\\\",
      ),
      tex.join("\n"),
    );
    assert(tex.includes("b/x & $60.00$ & $45.00$ & -- & -- & 0.00 & 7.00 \\\\"), tex.join("\n"));
  });
});

Deno.test("table: MACs come from the run's config, as inspect counts them", async () => {
  await withTmp("lvit-table-macs-", async (root) => {
    const text = tinyExperiment(join(root, "cache"));
    const dir = join(root, "run");
    await runFolder(dir, text);
    const cfg = resolveExperimentText(join(dir, "config.yaml"), text).config;
    const want = countModel(experimentModel(cfg).fn, 1, cfg.model.image_size).macsReference;
    assert(want > 0, `count ${want}`);
    assertEquals(await referenceMacsOf(dir), want);
    // A config that no longer loads gives no count rather than an error.
    await Deno.writeTextFile(join(dir, "config.yaml"), "model: { name: no-such-model }\n");
    assertEquals(await referenceMacsOf(dir), null);
  });
});

Deno.test("table: summaries and reference files that are not ones are refused by name", async () => {
  await withTmp("lvit-table-bad-", async (root) => {
    const good = summary({ experiment: "a", variant: "v", seed: 1, dice: 0.5, iou: 0.4 });
    const cases: [string, string, string][] = [
      ["not JSON", "{", "not valid JSON"],
      ["a Dice out of range", JSON.stringify({ ...good, test: { ...good.test, dice: 2 } }), "dice"],
      ["a string for a number", JSON.stringify({ ...good, params: "many" }), "params"],
      ["a list", "[]", "not a run summary"],
    ];
    for (const [what, text, needle] of cases) {
      const dir = join(root, what.replaceAll(" ", "-"));
      await runFolder(dir, "name: x\n");
      await Deno.writeTextFile(join(dir, "summary.json"), text);
      const e = await expectRejection(what, InputError, () => finishedRuns([dir]), needle);
      assert(e.message.includes(join(dir, "summary.json")), e.message);
    }
    const big = join(root, "big");
    await runFolder(big, "name: x\n");
    await Deno.writeTextFile(join(big, "summary.json"), " ".repeat(MAX_SUMMARY_BYTES + 1));
    await expectRejection(
      "an oversized summary",
      InputError,
      () => finishedRuns([big]),
      "accepted for summary files",
    );
    await expectRejection("a missing folder", InputError, () => finishedRuns([join(root, "no")]));

    const ref = join(root, "ref.json");
    const refCases: [string, string, string][] = [
      ["a run listed twice", '{"rows":[{"run":"a/v"},{"run":"a/v"}]}', "listed twice"],
      ["a run without a variant", '{"rows":[{"run":"a"}]}', "rows.0.run"],
      ["an unknown key", '{"rows":[],"__proto__":{"x":1}}', "__proto__"],
      ["a figure as text", '{"rows":[{"run":"a/v","dice":"80"}]}', "rows.0.dice"],
    ];
    for (const [what, text, needle] of refCases) {
      await Deno.writeTextFile(ref, text);
      await expectRejection(what, InputError, () => readReference(ref), ref, needle);
      assertEquals(({} as Record<string, unknown>).x, undefined);
    }
  });
});

Deno.test("table: the command prints Markdown, or the rows as JSON", async () => {
  await withTmp("lvit-table-cli-", async (root) => {
    await runFolder(
      join(root, "r1"),
      "name: x\n",
      summary({ experiment: "a", variant: "v", seed: 3, dice: 0.81234, iou: 0.7 }),
    );
    const ref = join(root, "ref.json");
    await Deno.writeTextFile(ref, '{"rows":[{"run":"a/v","name":"A","dice":80,"iou":70}]}');
    const out: string[] = [];
    assertEquals(await main([root, "--reference", ref], (s) => out.push(s)), 0);
    assert(out[0].includes("| A | `r1` | 81.23 / 70.00 |"), out[0]);
    assert(out[0].includes("| +1.23 |"), out[0]);
    out.length = 0;
    assertEquals(await main([root, "--json"], (s) => out.push(s)), 0);
    const rows = JSON.parse(out[0]);
    assertEquals(rows.length, 1);
    assertEquals(rows[0].run, "a/v");
    assertEquals(rows[0].seeds, [3]);
    await expectRejection("an unknown option", InputError, () => main(["--bogus"]), "usage");
    await expectRejection("two formats", InputError, () => main(["--csv", "--latex"]), "one");
    out.length = 0;
    assertEquals(await main([root, "--latex"], (s) => out.push(s)), 0);
    // No reference columns without --reference; no MACs from a config that does not load.
    assert(out[0].includes("\na/v & $81.23$ & $70.00$ & 0.00 & -- \\\\\n"), out[0]);
    assert(out[0].startsWith("\\begin{tabular}") && out[0].endsWith("\\end{tabular}"), out[0]);
  });
});

/** A Markdown table's rows as trimmed cells (alignment padding and the rule line dropped). */
function tableCells(md: string): string[][] {
  return md.split("\n").filter((l) => l.startsWith("|") && !/^\|[\s|-]+\|$/.test(l))
    .map((l) => l.slice(1, -1).split(" | ").map((c) => c.trim()));
}

Deno.test("table: README's MoNuSeg table is the command's output on results/monuseg", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const section = readme.split("## MoNuSeg: the paper's table, reproduced")[1];
  assert(section !== undefined, "README has the MoNuSeg section");
  const table = section.split("\n\n").find((p) => p.startsWith("| model"));
  assert(table !== undefined, "the section has the table");
  const root = new URL("../results/monuseg", import.meta.url).pathname;
  const ref = join(root, "reference.json");
  const out: string[] = [];
  assertEquals(await main([root, "--reference", ref], (s) => out.push(s)), 0);
  const want = tableCells(out[0].split("\n\n")[0]);
  const got = tableCells(table);
  for (let i = 0; i < Math.max(want.length, got.length); i++) {
    assertEquals(got[i], want[i]);
  }
});

Deno.test("table: LaTeX text escapes its special characters and sets code in \\texttt", () => {
  assertEquals(
    latexText("a_b & 50% #1 $x {y} ~^\\"),
    "a\\_b \\& 50\\% \\#1 \\$x \\{y\\} " +
      "\\textasciitilde{}\\textasciicircum{}\\textbackslash{}",
  );
  assertEquals(latexText("U-Net (`unet_x.yaml`)"), "U-Net (\\texttt{unet\\_x.yaml})");
});
