/**
 * Chunked long runs (issue 14): durations, `--time-limit` / `train.time_limit` (exit 75 at an
 * epoch end with a checkpoint and the command that continues; not part of the config hash),
 * runs continued chunk by chunk ending bitwise equal to an uninterrupted run (supervised from
 * the command line, semi-supervised in-process), and `deno task status` (run folders, states,
 * ETA).
 */
import { join } from "node:path";
import { resolveExperimentText } from "../lib/config/load.ts";
import { InputError } from "../lib/config/errors.ts";
import { formatDuration, parseDuration } from "../lib/config/duration.ts";
import { runExperiment } from "../lib/run/runner.ts";
import { fileExists, readMetrics } from "../lib/run/folder.ts";
import { lockHeld, readRunState, RunLockedError, RunStateWriter } from "../lib/run/state.ts";
import { findRunFolders, formatStatus, runStatus } from "../lib/run/status.ts";
import { shellQuote } from "../lib/sweep/spec.ts";
import { assert, assertEquals, expectError, expectRejection } from "./assert.ts";
import { assertNoStackTrace, denoRun, sha256File, withTmp } from "./process.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const RUN = join(ROOT, "lib/cli/run.ts");
const STATUS = join(ROOT, "lib/cli/status.ts");
const quiet = { progress: false, signals: false, log: () => {} };

/** A tiny experiment (U-Net 4-8, 32x32 generated data, cpu, 3 epochs); `train` adds keys. */
function tiny(dir: string, train = "", epochs = 3) {
  return [
    "name: tiny",
    "seed: 5",
    "backend: cpu",
    `data: { dataset: synth, synth: { train: 8, val: 4, test: 4 }, cache_dir: ${dir}/cache }`,
    "model: { name: unet-small, widths: [4, 8], image_size: 32 }",
    `train: { epochs: ${epochs}, batch: 2, lr: 0.01, min_save_epoch: 2${train} }`,
    "eval: { overlays: 2 }",
  ].join("\n");
}

async function sameFiles(a: string, b: string, files: string[]) {
  for (const f of files) {
    const [ha, hb] = await Promise.all([sha256File(join(a, f)), sha256File(join(b, f))]);
    assert(ha === hb, `${f} differs from the uninterrupted run`);
  }
}

const epochsOf = async (dir: string) =>
  (await readMetrics(join(dir, "metrics.jsonl"))).filter((m) => m.kind === "epoch");

Deno.test("durations: the documented forms, and what is refused", () => {
  const good: [unknown, number][] = [
    ["90s", 90],
    ["45m", 2700],
    ["2h", 7200],
    ["1h30m", 5400],
    ["1h 30m", 5400],
    ["1d", 86400],
    ["1d2h3m4s", 93784],
    ["1.5h", 5400],
    ["5400", 5400],
    [" 0.001 ", 0.001],
    [3600, 3600],
    [0.5, 0.5],
  ];
  for (const [v, want] of good) assertEquals([v, parseDuration(v)], [v, want]);
  for (
    const v of ["", "0", "0s", "0h0m", "-1", "-5m", "1m1h", "1x", "h", "soon", "1:30", "1e3", 0, -3]
  ) assertEquals([v, parseDuration(v)], [v, null]);
  for (const v of [null, undefined, true, [1], NaN, Infinity]) {
    assertEquals(parseDuration(v), null);
  }
  for (const s of ["1h30m", "1d", "45s", "2m0.5s", "0.001s"]) {
    assertEquals(formatDuration(parseDuration(s)!), s);
  }
});

Deno.test("train.time_limit: validated with line:col, and not part of the config hash", () => {
  const text = (train: string) => tiny("/tmp", train);
  const none = resolveExperimentText("e.yaml", text(""));
  for (const v of ["2h", "90", "1h30m", "null"]) {
    const r = resolveExperimentText("e.yaml", text(`, time_limit: ${v}`));
    assertEquals([v, r.hash, r.fullHash], [v, none.hash, none.fullHash]);
  }
  // The key is still in the resolved config (config.yaml), just not in its identity.
  const two = resolveExperimentText("e.yaml", text(", time_limit: 2h"));
  assertEquals(two.config.train.time_limit, "2h");
  assert(two.yaml.includes("time_limit: 2h"), two.yaml);
  // Other train keys still change it.
  assert(resolveExperimentText("e.yaml", text(", patience: 7")).hash !== none.hash, "patience");
  for (const v of ["soon", "0", "-1h", "[1]"]) {
    expectError(
      `time_limit ${v}`,
      InputError,
      () => resolveExperimentText("e.yaml", text(`, time_limit: ${v}`)),
      "e.yaml:6:",
      "train.time_limit",
      "1h30m",
    );
  }
});

Deno.test("--time-limit with a bad value: exit 2, the usage line, no stack trace", async () => {
  await withTmp("lvit-tl-", async (dir) => {
    await Deno.writeTextFile(join(dir, "e.yaml"), tiny(dir));
    for (const v of ["soon", "0", "1m1h"]) {
      const r = await denoRun([RUN, join(dir, "e.yaml"), "--out", dir, "--time-limit", v], ROOT);
      assert(r.code === 2, `--time-limit ${v}: exit ${r.code}\n${r.text}`);
      assert(r.text.includes(`--time-limit must be a duration`), r.text);
      assert(r.text.includes("usage: deno task run"), r.text);
      assertNoStackTrace(r.text);
    }
    // Nothing was started.
    assertEquals(await findRunFolders(dir), []);
  });
});

Deno.test("time limit: exit 75 at each epoch end, --resume chunk by chunk, bitwise the uninterrupted run", async () => {
  await withTmp("lvit-tl-", async (dir) => {
    // The reference: no time limit at all, in-process.
    const full = await runExperiment(resolveExperimentText(join(dir, "ref.yaml"), tiny(dir)), {
      ...quiet,
      out: join(dir, "a"),
    });
    const hash = full.dir.split("/").at(-1)!;
    const out = join(dir, "b");
    const file = join(dir, "e.yaml");
    const runDir = join(out, "tiny", "default", hash);

    // Chunk 1: the command line's 1 ms wins over the file's day. 1 ms is over before the
    // process has even loaded the runner, so the run stops at its first epoch end whatever the
    // machine's speed, and never gets to its last epoch.
    await Deno.writeTextFile(file, tiny(dir, ", time_limit: 1d"));
    const c1 = await denoRun([RUN, file, "--out", out, "--time-limit", "0.001"], ROOT);
    assert(c1.code === 75, `chunk 1: exit ${c1.code}\n${c1.text}`);
    assertNoStackTrace(c1.text);
    assert(c1.text.includes("time limit 0.001s reached after epoch 1 of 3"), c1.text);
    const cmd1 = ["deno", "task", "run", file, "--out", out, "--time-limit", "0.001", "--resume"];
    assert(c1.text.includes(`continue with: ${cmd1.map(shellQuote).join(" ")}\n`), c1.text);
    // Same run folder as the reference: the limit is not part of the run's identity.
    assertEquals((await epochsOf(runDir)).length, 1);
    await Deno.stat(join(runDir, "checkpoints", "last.safetensors"));
    const rec = await readRunState(runDir);
    assertEquals([rec?.state, rec?.reason], ["paused", "time_limit"]);
    assertEquals(await lockHeld(runDir), false);

    // `deno task status --json` over the whole output folder.
    const st = await denoRun([STATUS, out, "--json"], ROOT);
    assert(st.code === 0, st.text);
    const rows = JSON.parse(st.text);
    assertEquals(rows.length, 1);
    assertEquals(
      [rows[0].path, rows[0].state, rows[0].note, rows[0].epochs_done, rows[0].epochs_total],
      [runDir, "paused", "time limit", 1, 3],
    );
    assert(rows[0].eta_seconds > 0 && rows[0].epochs_left === 2, JSON.stringify(rows[0]));

    // Chunk 2: the file's own train.time_limit (another value: still the same run).
    await Deno.writeTextFile(file, tiny(dir, ", time_limit: 0.001s"));
    const c2 = await denoRun([RUN, file, "--out", out, "--resume"], ROOT);
    assert(c2.code === 75, `chunk 2: exit ${c2.code}\n${c2.text}`);
    assertEquals((await epochsOf(runDir)).length, 2);
    const line = c2.text.split("\n").find((l) => l.startsWith("continue with: deno task run "));
    assertEquals(line, `continue with: deno task run ${file} --out ${out} --resume`);

    // Chunk 3: the printed command, with the limit gone from the file: runs to the end.
    await Deno.writeTextFile(file, tiny(dir));
    const args = line!.slice("continue with: deno task run ".length).split(" ");
    const c3 = await denoRun([RUN, ...args], ROOT);
    assert(c3.code === 0, `chunk 3: exit ${c3.code}\n${c3.text}`);
    await sameFiles(full.dir, runDir, [
      "checkpoints/last.safetensors",
      "checkpoints/best.safetensors",
    ]);
    const losses = async (d: string) => (await epochsOf(d)).map((m) => m.loss);
    assertEquals(await losses(runDir), await losses(full.dir));
    const fin = await runStatus(runDir);
    assertEquals([fin.state, fin.epochs_done, fin.eta_seconds], ["finished", 3, null]);
    assertEquals((await readRunState(runDir))?.state, "finished");
    assert(formatStatus([fin]).includes(`${runDir}  3/3`), formatStatus([fin]));
  });
});

Deno.test("time limit in a semi-supervised run: one epoch per chunk, bitwise the uninterrupted run", async () => {
  await withTmp("lvit-tl-semi-", async (dir) => {
    const exp = () =>
      resolveExperimentText(
        join(dir, "semi.yaml"),
        [
          "name: semi-tiny",
          "seed: 4",
          "backend: cpu",
          `data: { dataset: synth, synth: { train: 12, val: 4, test: 4 }, cache_dir: ${dir}/c }`,
          "model: { name: unet-small, widths: [4, 8], image_size: 32 }",
          "train: { epochs: 4, batch: 2, lr: 0.01, min_save_epoch: 1, labeled_fraction: 0.5 }",
          "semi: { prototype_epochs: 1 }",
          "eval: { overlays: 0, save_predictions: false }",
        ].join("\n"),
      );
    const full = await runExperiment(exp(), { ...quiet, out: join(dir, "a") });
    // In-process the limit counts from the test process's start, long past: every chunk
    // stops at its first epoch end, until the last epoch, which finishes the run.
    const out = join(dir, "b");
    const chunks: boolean[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await runExperiment(exp(), { ...quiet, out, resume: i > 0, timeLimit: 1e-3 });
      chunks.push(r.timeLimited === true);
      assertEquals((await epochsOf(r.dir)).length, i + 1);
      if (!r.interrupted) break;
      assert(r.timeLimited && !r.summary, `chunk ${i + 1} was not stopped by the time limit`);
    }
    assertEquals(chunks, [true, true, true, false]);
    await sameFiles(full.dir, join(out, "semi-tiny", "default", full.dir.split("/").at(-1)!), [
      "checkpoints/last.safetensors",
      "checkpoints/best.safetensors",
      "pseudo/epoch-3.f32",
      "pseudo/epoch-4.f32",
    ]);
  });
});

Deno.test("status: a live run is running; killed, it is paused; a failed one says why", async () => {
  await withTmp("lvit-tl-st-", async (dir) => {
    const file = join(dir, "long.yaml");
    // Enough epochs (a few ms each) that the run is alive while it is looked at.
    await Deno.writeTextFile(file, tiny(dir, ", patience: 5000", 5000));
    const out = join(dir, "runs");
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--unstable-webgpu", RUN, file, "--out", out],
      stdout: "null",
      stderr: "null",
      env: { XDG_RUNTIME_DIR: "/tmp" },
    }).spawn();
    let runDir = "";
    try {
      for (let i = 0; i < 600 && !runDir; i++) {
        await new Promise((r) => setTimeout(r, 50));
        const dirs = await findRunFolders(out).catch(() => []);
        // An epoch is logged before its checkpoint is written: wait for both, or a kill in
        // between leaves a run that "died before its first checkpoint" (failed, not paused).
        const ready = dirs.length && (await epochsOf(dirs[0])).length >= 1 &&
          await fileExists(join(dirs[0], "checkpoints", "last.safetensors"));
        if (ready) runDir = dirs[0];
      }
      assert(runDir, "the run wrote no epoch");
      const live = await runStatus(runDir);
      assertEquals([live.state, live.pid, live.epochs_total], ["running", child.pid, 5000]);
      assert(live.eta_seconds! > 0, JSON.stringify(live));
    } finally {
      child.kill("SIGKILL");
      await child.status;
    }
    const dead = await runStatus(runDir);
    assertEquals(dead.state, "paused");
    assert(dead.note!.includes(`process ${child.pid} ended without recording why`), dead.note!);

    // A run that fails after taking its folder: failed, with the error; the lock is let go.
    const bad = tiny(dir).replace(
      /data: \{[^\n]*/,
      `data: { dataset: monuseg, root: ${join(dir, "none")} }`,
    );
    const exp = resolveExperimentText(join(dir, "bad.yaml"), bad);
    const err = await expectRejection(
      "missing data",
      Error,
      () => runExperiment(exp, { ...quiet, out }),
    );
    const failedDir = join(out, "tiny", "default", exp.hash);
    const f = await runStatus(failedDir);
    assertEquals([f.state, f.note, f.epochs_done], ["failed", err.message, 0]);
    assertEquals(await lockHeld(failedDir), false);
    assertEquals((await findRunFolders(out)).sort(), [failedDir, runDir].sort());
  });
});

Deno.test("status: run folders at any depth, ETA bounded by epochs or patience, fresh", async () => {
  await withTmp("lvit-tl-eta-", async (dir) => {
    const put = async (d: string, epochs: number, patience: number, secs: number[], best = 0) => {
      await Deno.mkdir(join(d, "checkpoints"), { recursive: true });
      await Deno.writeTextFile(
        join(d, "config.yaml"),
        `name: x\ntrain:\n  epochs: ${epochs}\n  patience: ${patience}\n`,
      );
      const lines = secs.map((s, i) =>
        JSON.stringify({
          kind: "epoch",
          epoch: i + 1,
          seconds: s,
          val_dice: 0.1 * (i + 1),
          best: i + 1 === best,
        })
      );
      await Deno.writeTextFile(join(d, "metrics.jsonl"), lines.map((l) => l + "\n").join(""));
    };
    // Best at epoch 2, patience 5: the trainer stops after epoch 2 + 5 + 1 = 8 at the latest,
    // 4 more after the 4 done, sooner than the 96 epochs left.
    const a = join(dir, "deep", "x", "default", "aaaaaaaa");
    await put(a, 100, 5, [1, 2, 3, 10], 2);
    await Deno.writeTextFile(join(a, "checkpoints", "last.safetensors"), "");
    // Patience far off: the epoch count bounds it.
    const b = join(dir, "x", "default", "bbbbbbbb");
    await put(b, 10, 50, [4, 6], 1);
    await Deno.writeTextFile(join(b, "checkpoints", "last.safetensors"), "");
    // Config and an empty log only: fresh.
    const c = join(dir, "x", "default", "cccccccc");
    await put(c, 10, 50, []);
    // Not run folders: a config alone, and the subfolders of a run folder.
    await Deno.mkdir(join(dir, "other"), { recursive: true });
    await Deno.writeTextFile(join(dir, "other", "config.yaml"), "name: y\n");
    await put(join(a, "checkpoints", "nested"), 1, 1, [1]);

    assertEquals(await findRunFolders(dir), [a, b, c]);
    assertEquals(await findRunFolders(a), [a]);
    const [sa, sb, sc] = await Promise.all([a, b, c].map(runStatus));
    assertEquals(
      [sa.state, sa.epochs_done, sa.best_epoch, sa.best_val_dice, sa.epoch_seconds_median],
      ["paused", 4, 2, 0.2, 2.5],
    );
    assertEquals([sa.epochs_left, sa.epochs_left_by, sa.eta_seconds], [4, "patience", 10]);
    assertEquals([sb.state, sb.epochs_left, sb.epochs_left_by, sb.eta_seconds], [
      "paused",
      8,
      "epochs",
      40,
    ]);
    assertEquals([sc.state, sc.epochs_done, sc.eta_seconds], ["fresh", 0, null]);
    const table = formatStatus([sa, sb, sc]).split("\n");
    assertEquals(table.length, 4);
    assert(table[1].includes("4/100") && table[1].includes("0:10 (patience)"), table[1]);

    // The command line: a table by default; a missing path is exit 2 with a message.
    const ok = await denoRun([STATUS, dir], ROOT);
    assert(ok.code === 0 && ok.text.includes(b) && ok.text.includes("fresh"), ok.text);
    const none = join(dir, "nope");
    const r = await denoRun([STATUS, none], ROOT);
    assert(r.code === 2 && r.text.includes(`${none}: no such folder`), r.text);
    assertNoStackTrace(r.text);
  });
});

Deno.test("state: claim locks and records; a second claimant is refused; end lets go", async () => {
  await withTmp("lvit-tl-lock-", async (dir) => {
    assertEquals([await lockHeld(dir), await readRunState(dir)], [null, null]);
    const a = new RunStateWriter();
    await a.claim(dir);
    assertEquals([await lockHeld(dir), (await readRunState(dir))?.state], [true, "running"]);
    // A second claimant (flock locks are per open file, so one process can play both) is
    // refused with the holder's pid, and writes nothing.
    const b = new RunStateWriter();
    await expectRejection("second claim", RunLockedError, () => b.claim(dir), `pid ${Deno.pid}`);
    await b.fail(new Error("boom"));
    const mid = await readRunState(dir);
    assertEquals([await lockHeld(dir), mid?.state, mid?.error], [true, "running", undefined]);
    await a.end("paused", "time_limit");
    const rec = await readRunState(dir);
    assertEquals([await lockHeld(dir), rec?.state, rec?.reason], [false, "paused", "time_limit"]);
    // Nothing claimed: nothing written.
    await new RunStateWriter().end("finished");
    assertEquals((await readRunState(dir))?.state, "paused");
  });
});
