/**
 * Sweeps on Slurm (issue 18): the job script's pieces (times, array, points.tsv), the script run
 * by bash with stand-in commands (arguments, requeue, exit codes), the state rules, a bad sweep
 * file refused before sbatch is called, and, against a real Slurm (.ci/slurm-up.sh starts a
 * single-node one): a 2x2 sweep whose tables equal the local executor's, tasks cut by their
 * time limit and requeued, Slurm's SIGUSR2 warning, `--status` while queued, running and after,
 * and a `--dry-run` script that `sbatch --test-only` accepts.
 *
 * Without sbatch (or with no controller answering) the Slurm tests are skipped with a message;
 * LVIT_REQUIRE_SLURM=1 (CI) makes them fail instead.
 */
import { join } from "node:path";
import { assert, assertEquals } from "./assert.ts";
import { sha256File, withTmp } from "./process.ts";
import { parseSweepText, resolveSweep } from "../lib/sweep/spec.ts";
import { resolveExperimentText } from "../lib/config/load.ts";
import {
  arraySpec,
  parseSlurmTime,
  pointsTsv,
  runTimeLimit,
  sbatchScript,
  signalLead,
  tsvField,
  tsvUnescape,
} from "../lib/sweep/slurm_script.ts";
import { mergeState, type PointStatusRow, readPointsTsv } from "../lib/sweep/slurm.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const SWEEP = join(ROOT, "lib/cli/sweep.ts");

// ---------------------------------------------------------------------------------------------
// Is there a Slurm to talk to?

async function sh(
  cmd: string,
  args: string[],
  cwd?: string,
  env?: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await new Deno.Command(cmd, { args, cwd, env, stdout: "piped", stderr: "piped" })
      .output();
    const dec = new TextDecoder();
    return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      return { code: 127, stdout: "", stderr: `${cmd}: not found` };
    }
    throw e;
  }
}

const REQUIRE = Deno.env.get("LVIT_REQUIRE_SLURM") === "1";
const sinfo = await sh("sinfo", ["-h", "-o", "%t"]);
const SLURM = sinfo.code === 0 && /idle|mix|alloc/.test(sinfo.stdout);
const WHY_NOT = sinfo.code === 127
  ? "sbatch/sinfo not found"
  : `no usable node (sinfo: ${(sinfo.stderr || sinfo.stdout).trim().split("\n")[0]})`;
if (!SLURM && !REQUIRE) {
  console.log(
    `sweep_slurm_test: ${WHY_NOT}: the tests against a real Slurm are SKIPPED (start one with ` +
      '`eval "$(.ci/slurm-up.sh)"`; LVIT_REQUIRE_SLURM=1 makes them fail instead)',
  );
}

/** A test that needs a Slurm cluster: skipped without one, failed without one under CI. */
function slurmTest(name: string, fn: () => Promise<void>) {
  Deno.test({
    name: `slurm: ${name}`,
    ignore: !SLURM && !REQUIRE,
    fn: async () => {
      if (!SLURM) throw new Error(`LVIT_REQUIRE_SLURM=1 but ${WHY_NOT}`);
      await fn();
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Tiny sweeps.

/** A tiny experiment on generated data (U-Net 4-8 on 32x32, cpu). */
function baseYaml(dir: string, epochs: number) {
  return [
    "name: tiny",
    "seed: 5",
    "backend: cpu",
    `data: { dataset: synth, synth: { train: 8, val: 4, test: 4 }, cache_dir: ${dir}/cache }`,
    "model: { name: unet-small, widths: [4, 8], image_size: 32 }",
    `train: { epochs: ${epochs}, batch: 2, lr: 0.01, min_save_epoch: 1 }`,
    "eval: { overlays: 1, save_predictions: false }",
  ].join("\n") + "\n";
}

/** Writes b.yaml and s.sweep.yaml (sweep `sw`) into `dir`. */
async function writeSweep(dir: string, epochs: number, axes: string) {
  await Deno.writeTextFile(join(dir, "b.yaml"), baseYaml(dir, epochs));
  await Deno.writeTextFile(join(dir, "s.sweep.yaml"), `name: sw\nbase: b.yaml\naxes:\n${axes}`);
}

/** `deno task sweep` in `dir` (stdout and stderr apart: --dry-run and --json print on stdout). */
const sweep = (dir: string, args: string[], env?: Record<string, string>) =>
  sh(Deno.execPath(), ["run", "-A", "--unstable-webgpu", SWEEP, "s.sweep.yaml", ...args], dir, {
    XDG_RUNTIME_DIR: "/tmp",
    ...env,
  });

async function status(dir: string, out = "runs"): Promise<PointStatusRow[]> {
  const r = await sweep(dir, ["--status", "--json", "--out", out]);
  assert(r.code === 0, `--status: exit ${r.code}\n${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout);
}

/**
 * Polls `--status` until every point is finished and its task has left the queue with its
 * record written (fails on a failed point or after `secs`); returns every snapshot seen.
 */
async function waitFinished(dir: string, secs = 150): Promise<PointStatusRow[][]> {
  const seen: PointStatusRow[][] = [];
  const end = Date.now() + secs * 1000;
  while (true) {
    const rows = await status(dir);
    seen.push(rows);
    const failed = rows.find((r) => r.state === "failed");
    assert(!failed, `point failed: ${JSON.stringify(failed)}`);
    // A point's run folder says finished (summary.json) a moment before its task exits and the
    // batch script appends the task's record: wait until the task has left the queue too.
    const done = (r: PointStatusRow) => r.state === "finished" && !r.slurm && r.last_task;
    if (rows.every(done)) return seen;
    if (Date.now() > end) {
      const q = await sh("squeue", ["-h", "-r", "-o", "%i %T %r"]);
      throw new Error(`not finished after ${secs} s: ${JSON.stringify(rows)}\n${q.stdout}`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

const jobsOf = async (dir: string) =>
  (await Deno.readTextFile(join(dir, "runs/sw/slurm/jobs.tsv"))).split("\n")
    .filter((l) => l && !l.startsWith("#")).map((l) => l.split("\t")[0]);

const tasksOf = async (dir: string, index: number) =>
  (await Deno.readTextFile(join(dir, `runs/sw/slurm/tasks/${index}.tsv`))).trim().split("\n")
    .map((l) => l.split("\t"));

/** Scalar equality with the output that explains a failure. */
function is(a: unknown, b: unknown, why: string) {
  assert(a === b, `${JSON.stringify(a)} !== ${JSON.stringify(b)}: ${why}`);
}

const exists = (p: string) => Deno.stat(p).then(() => true, () => false);

/** Weights bitwise and summary.json (timings aside) equal in two run folders. */
async function sameRun(a: string, b: string) {
  for (const f of ["checkpoints/best.safetensors", "checkpoints/last.safetensors"]) {
    const [ha, hb] = [await sha256File(join(a, f)), await sha256File(join(b, f))];
    assert(ha === hb, `${f} of ${a} differs from ${b}`);
  }
  const sum = async (d: string) => {
    const s = JSON.parse(await Deno.readTextFile(join(d, "summary.json")));
    delete s.train_seconds;
    delete s.step_ms_median;
    return s;
  };
  assertEquals(await sum(a), await sum(b));
}

/** A CSV without one column (train time cannot repeat between two runs). */
function csvWithout(text: string, column: string): string {
  const rows = text.trim().split("\n").map((l) => l.split(","));
  const k = rows[0].indexOf(column);
  assert(k >= 0, `no column ${column}`);
  return rows.map((r) => r.filter((_, i) => i !== k).join(",")).join("\n");
}

// ---------------------------------------------------------------------------------------------
// Pieces.

Deno.test("slurm pieces: times, array ranges, timing margins, points.tsv escapes", () => {
  assertEquals(parseSlurmTime("30"), 1800);
  assertEquals(parseSlurmTime("1:30"), 90);
  assertEquals(parseSlurmTime("02:00:00"), 7200);
  assertEquals(parseSlurmTime("1-12"), 129600);
  assertEquals(parseSlurmTime("1-0:30"), 88200);
  assertEquals(parseSlurmTime("1-0:0:5"), 86405);
  assertEquals(parseSlurmTime("UNLIMITED"), null);
  for (const bad of ["", "0", "1h", "1:2:3:4", "-1", "a-1"]) {
    assertEquals([bad, parseSlurmTime(bad)], [bad, undefined]);
  }
  assertEquals(arraySpec([5, 1, 2, 3, 7, 8]), "1-3,5,7-8");
  assertEquals(arraySpec([4], 2), "4%2");
  // Warning N = T/10 within 60-600 s (at most T/4); the run's limit T - 2N.
  assertEquals([signalLead(3600), runTimeLimit({ time: { text: "1:00:00", seconds: 3600 } })], [
    360,
    2880,
  ]);
  assertEquals(signalLead(86400), 600);
  assertEquals([signalLead(60), runTimeLimit({ time: { text: "1", seconds: 60 } })], [15, 30]);
  assertEquals(signalLead(null), 300);
  assertEquals(runTimeLimit({}), null);
  assertEquals(runTimeLimit({ time: { text: "1", seconds: 60 }, runTimeLimit: 0.5 }), 0.5);
  const odd = "a\tb\nc\\d \\t 'q' \"dq\" $HOME\r";
  assertEquals(tsvUnescape(tsvField(odd)), odd);
  assert(!/[\t\n\r]/.test(tsvField(odd)), tsvField(odd));
});

Deno.test("slurm state rules: run folder first, then the queue, the task records, accounting", () => {
  const q = (state: string) => ({ job: "12", index: 3, state, reason: "Priority" });
  const last = (code: number) => ({ time: "t", job: "12_3", restart: 0, host: "n1", code });
  const st = (
    f: string | null,
    queued: ReturnType<typeof q> | null,
    l: ReturnType<typeof last> | null = null,
    acct: { job: string; index: number; state: string; exit: string } | null = null,
  ) =>
    mergeState(
      f === null ? null : { state: f as "finished", note: null },
      queued,
      l,
      acct,
    ).state;
  assertEquals(st("finished", q("RUNNING")), "finished");
  assertEquals(st(null, q("RUNNING")), "running");
  assertEquals(st("paused", q("COMPLETING")), "running");
  assertEquals(st("paused", q("PENDING")), "paused");
  assertEquals(st(null, q("PENDING")), "pending");
  assertEquals(st("fresh", q("REQUEUED")), "pending");
  assertEquals(st("failed", q("PENDING")), "pending"); // submitted again
  assertEquals(st("running", null), "running"); // a live process holds the folder
  assertEquals(st("paused", null, last(75)), "paused");
  assertEquals(st("failed", null, last(1)), "failed");
  assertEquals(st(null, null, last(1)), "failed"); // died before the run said anything
  assertEquals(st(null, null, last(75)), "pending");
  assertEquals(st(null, null), "pending");
  assertEquals(
    st(null, null, null, { job: "12", index: 3, state: "NODE_FAIL", exit: "0:9" }),
    "failed",
  );
  assertEquals(
    st(null, null, null, { job: "12", index: 3, state: "COMPLETED", exit: "0:0" }),
    "pending",
  );
  assert(
    mergeState({ state: "paused", note: "time limit" }, null, last(75)).note!.includes(
      "--slurm submits it again",
    ),
  );
});

/**
 * Runs the generated job script with bash, stand-ins for deno and scontrol (they log their
 * arguments one per line, NUL-free, escaped) and the task id of Slurm's environment.
 */
Deno.test("the job script runs point k with its exact arguments and requeues only after progress", async () => {
  await withTmp("lvit-slurm-script-", async (dir) => {
    const odd = "a\tb\nc\\d 'q' \"dq\" $HOME %s";
    const base = baseYaml(dir, 1);
    const text = 'name: sw\nbase: "b\\tx\\ny.yaml"\naxes:\n  description: [plain, ' +
      JSON.stringify(odd) +
      "]\nvariants:\n  - { name: plain, when: { description: plain } }\n" +
      "  - { name: odd, when: { description: " + JSON.stringify(odd) + " } }\n";
    // Values reach the run as quoted --set arguments; raw tabs and line breaks can still come
    // with paths: a base file and an output folder with awkward characters (the output folder
    // also goes on #SBATCH lines, which cannot hold a line break or a double quote).
    const out = join(dir, "o\tu t 's $HOME\\x");
    const sw = resolveSweep(parseSweepText(join(dir, "s.sweep.yaml"), text), {
      out,
      readFile: () => base,
    });
    const slurmDir = join(out, "sw/slurm");
    await Deno.mkdir(slurmDir, { recursive: true });
    const tsv = pointsTsv(sw, (p) => join(dir, "logs", `${p.variant}.log`), ["--backend", "cpu"]);
    await Deno.writeTextFile(join(slurmDir, "points.tsv"), tsv);
    const back = await readPointsTsv(join(slurmDir, "points.tsv"));
    const want = sw.points.map((p) => [
      sw.spec.base,
      ...p.sets.flatMap((s) => ["--set", s]),
      "--out",
      out,
      "--backend",
      "cpu",
    ]);
    assertEquals([back.get(1), back.get(2)], want);
    assert(want[1][0].includes("\t") && want[1][0].includes("\n"), JSON.stringify(want[1]));

    // Stand-ins: deno writes a checkpoint unless told not to and exits with $FAKE_RC; scontrol
    // records its call.
    const bin = join(dir, "bin");
    await Deno.mkdir(bin);
    await Deno.writeTextFile(
      join(bin, "deno"),
      `#!/bin/bash\nfor a in "$@"; do printf '%s\\0' "$a"; done > "${dir}/args.bin"\n` +
        `if [ -z "\${NO_CKPT:-}" ]; then d="$(cat "${dir}/dir")"; mkdir -p "$d/checkpoints"; ` +
        `echo x > "$d/checkpoints/last.safetensors.tmp"; ` +
        `mv "$d/checkpoints/last.safetensors.tmp" "$d/checkpoints/last.safetensors"; fi\n` +
        `exit "$FAKE_RC"\n`,
    );
    await Deno.writeTextFile(
      join(bin, "scontrol"),
      `#!/bin/bash\necho "$*" >> "${dir}/scontrol"\n`,
    );
    await Deno.chmod(join(bin, "deno"), 0o755);
    await Deno.chmod(join(bin, "scontrol"), 0o755);
    const script = sbatchScript({
      sweepName: "sw",
      sweepFile: "s.sweep.yaml",
      indices: [1, 2],
      cwd: dir,
      slurmDir,
      deno: join(bin, "deno"),
      denoDir: join(dir, "deno-dir"),
      runScript: "/x/run.ts",
      options: { time: { text: "10", seconds: 600 } },
    });
    assert(script.includes("#SBATCH --array=1-2\n"), script);
    assert(script.includes("#SBATCH --signal=B:USR2@60\n"), script);
    assert(script.includes(`export DENO_DIR=${join(dir, "deno-dir")}\n`), script);
    await Deno.writeTextFile(join(dir, "job.sh"), script);
    const run = async (id: number, rc: number, extra: Record<string, string> = {}) => {
      await Deno.writeTextFile(join(dir, "dir"), sw.points[id - 1].dir);
      return await sh("bash", [join(dir, "job.sh")], dir, {
        PATH: `${bin}:${Deno.env.get("PATH")}`,
        SLURM_ARRAY_TASK_ID: String(id),
        SLURM_ARRAY_JOB_ID: "77",
        FAKE_RC: String(rc),
        ...extra,
      });
    };
    const args = async () =>
      (await Deno.readTextFile(join(dir, "args.bin"))).split("\0").slice(0, -1);
    const scontrol = () => Deno.readTextFile(join(dir, "scontrol")).catch(() => "");

    // Exit 0: the exact arguments (the odd value survives tabs, newlines, quotes, $), no requeue.
    let r = await run(2, 0);
    is(r.code, 0, r.stderr);
    assertEquals(await args(), [
      "run",
      "-A",
      "--unstable-webgpu",
      "/x/run.ts",
      ...want[1],
      "--resume",
      "--time-limit",
      "8m",
    ]);
    assertEquals(await scontrol(), "");
    // Exit 75 after a new checkpoint: requeued, and the task exits 0.
    r = await run(1, 75);
    assertEquals([r.code, await scontrol()], [0, "requeue 77_1\n"]);
    // Exit 75 without a new checkpoint: not requeued (it would loop), exit 75.
    r = await run(1, 75, { NO_CKPT: "1" });
    assertEquals(r.code, 75);
    assert(r.stderr.includes("not requeued"), r.stderr);
    assertEquals(await scontrol(), "requeue 77_1\n");
    // Any other code is passed on.
    r = await run(1, 3);
    assertEquals(r.code, 3);
    // Every attempt is recorded: job, restart count, host, exit code.
    const rec = (await Deno.readTextFile(join(slurmDir, "tasks/1.tsv"))).trim().split("\n")
      .map((l) => [l.split("\t")[1], l.split("\t")[4]]);
    assertEquals(rec, [["77_1", "75"], ["77_1", "75"], ["77_1", "3"]]);
    const log = await Deno.readTextFile(join(dir, "logs", "plain.log"));
    assert(log.includes("sweep sw, point 1: slurm job 77_1 (restart 0)"), log);
    // No task id: refused at once.
    const none = await sh("bash", [join(dir, "job.sh")], dir, {
      PATH: `${bin}:${Deno.env.get("PATH")}`,
    });
    assert(none.code !== 0 && none.stderr.includes("array job"), none.stderr);
  });
});

Deno.test("a sweep file with an error fails before anything is submitted (exit 2, line:col)", async () => {
  await withTmp("lvit-slurm-bad-", async (dir) => {
    await writeSweep(dir, 1, "  model.plamm: [true, false]\n  seed: [1, 2]\n");
    // An sbatch that records being called: it must never be.
    const bin = join(dir, "bin");
    await Deno.mkdir(bin);
    await Deno.writeTextFile(join(bin, "sbatch"), `#!/bin/sh\ntouch "${dir}/called"\necho 1\n`);
    await Deno.chmod(join(bin, "sbatch"), 0o755);
    const env = { PATH: `${bin}:${Deno.env.get("PATH")}` };
    for (const extra of [[], ["--dry-run"]]) {
      const r = await sweep(dir, ["--slurm", "--time", "10", ...extra], env);
      is(r.code, 2, r.stderr);
      assert(r.stderr.includes("s.sweep.yaml:4:3: axis 'model.plamm'"), r.stderr);
      assert(!/^\s+at /m.test(r.stderr), r.stderr);
    }
    assert(!(await exists(join(dir, "called"))), "sbatch was called");
    assert(!(await exists(join(dir, "runs"))), "something was written");
    // Bad --slurm options are bad input too, with the usage line.
    await writeSweep(dir, 1, "  seed: [1, 2]\n");
    for (
      const bad of [
        ["--slurm", "--time", "1h"],
        ["--slurm", "--max-parallel", "0"],
        ["--slurm", "--mem", "lots"],
        ["--slurm", "--workers", "2"],
        ["--partition", "x"],
        ["--status", "--slurm"],
      ]
    ) {
      const r = await sweep(dir, bad, env);
      assertEquals([bad, r.code], [bad, 2]);
      assert(r.stderr.includes("usage: deno task sweep"), r.stderr);
    }
    assert(!(await exists(join(dir, "called"))), "sbatch was called");
  });
});

Deno.test("SIGUSR2 (Slurm's warning) stops a run at its next epoch end without opening an inspector: exit 75, --resume finishes", async () => {
  await withTmp("lvit-usr2-", async (dir) => {
    await Deno.writeTextFile(join(dir, "e.yaml"), baseYaml(dir, 40));
    const hash = resolveExperimentText("e.yaml", baseYaml(dir, 40)).hash;
    const runDir = join(dir, "runs/tiny/default", hash);
    const file = join(runDir, "metrics.jsonl");
    const args = ["run", "-A", "--unstable-webgpu", join(ROOT, "lib/cli/run.ts"), "e.yaml"];
    const child = new Deno.Command(Deno.execPath(), {
      args: [...args, "--out", "runs"],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const output = child.output();
    const end = Date.now() + 90_000;
    while (!(await Deno.readTextFile(file).catch(() => "")).includes('"kind":"epoch"')) {
      assert(Date.now() < end, "no epoch within 90 s");
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill("SIGUSR2");
    const r = await output;
    const text = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
    is(r.code, 75, text);
    const m = /SIGUSR2 \(time limit warning\) reached after epoch (\d+) of 40/.exec(text);
    assert(m, text);
    // Deno >= 2.9.2 opens an unauthenticated V8 inspector on SIGUSR1; the warning must not.
    assert(!/Debugger listening/.test(text), text);
    const state = JSON.parse(await Deno.readTextFile(join(runDir, "state.json")));
    assertEquals([state.state, state.reason], ["paused", "time_limit"]);
    const epochs = async () =>
      (await Deno.readTextFile(file)).trim().split("\n").map((l) => JSON.parse(l))
        .filter((x) => x.kind === "epoch").map((x) => x.epoch);
    // Stopped at an epoch end: every logged epoch is whole, the checkpoint is after the last.
    assertEquals(await epochs(), Array.from({ length: Number(m[1]) }, (_, i) => i + 1));
    const again = await sh(Deno.execPath(), [...args, "--out", "runs", "--resume"], dir);
    is(again.code, 0, again.stdout + again.stderr);
    assertEquals(await epochs(), Array.from({ length: 40 }, (_, i) => i + 1));
  });
});

// ---------------------------------------------------------------------------------------------
// Against a real Slurm.

const SLURM_ARGS = ["--slurm", "--time", "5", "--max-parallel", "2", "--cpus-per-task", "1"];

slurmTest(
  "a 2x2 sweep as one array job: --status, tables equal to the local executor's",
  async () => {
    await withTmp("lvit-slurm-", async (dir) => {
      await writeSweep(dir, 2, "  train.lr: [0.01, 0.02]\n  seed: [1, 2]\n");

      // --dry-run: the script on stdout, which sbatch --test-only accepts; nothing written.
      const dry = await sweep(dir, [...SLURM_ARGS, "--dry-run"]);
      is(dry.code, 0, dry.stderr);
      assert(dry.stdout.startsWith("#!/bin/bash\n"), dry.stdout);
      assert(dry.stdout.includes("#SBATCH --array=1-4%2\n"), dry.stdout);
      assert(dry.stderr.includes("would submit 4"), dry.stderr);
      assert(!(await exists(join(dir, "runs"))), "--dry-run wrote something");
      await Deno.writeTextFile(join(dir, "dry.sbatch"), dry.stdout);
      const ok = await sh("sbatch", ["--test-only", "dry.sbatch"], dir);
      is(ok.code, 0, ok.stderr);
      // --test-only does say no (so the check above can fail): an unknown partition.
      const bad = await sweep(dir, [
        ...SLURM_ARGS,
        "--partition",
        "no-such-partition",
        "--dry-run",
      ]);
      await Deno.writeTextFile(join(dir, "bad.sbatch"), bad.stdout);
      assert((await sh("sbatch", ["--test-only", "bad.sbatch"], dir)).code !== 0, "accepted");

      // Submitted on hold, so --status sees every point queued; then released.
      const sub = await sweep(dir, [...SLURM_ARGS, "--sbatch-arg=--hold"]);
      is(sub.code, 0, sub.stdout + sub.stderr);
      const [job] = await jobsOf(dir);
      assert(sub.stdout.includes(`submitted 4 as Slurm job ${job} (array 1-4%2)`), sub.stdout);
      const held = await status(dir);
      assertEquals(held.map((r) => [r.index, r.state, r.slurm?.job, r.slurm?.state]), [
        [1, "pending", job, "PENDING"],
        [2, "pending", job, "PENDING"],
        [3, "pending", job, "PENDING"],
        [4, "pending", job, "PENDING"],
      ]);
      // Submitting again while they are queued submits nothing.
      const twice = await sweep(dir, SLURM_ARGS);
      assert(twice.stdout.includes("4 running or queued; nothing to submit"), twice.stdout);
      assertEquals((await sh("scontrol", ["release", job])).code, 0);
      const seen = await waitFinished(dir);
      for (const rows of seen) {
        for (const r of rows) {
          assert(["pending", "running", "finished"].includes(r.state), JSON.stringify(r));
          if (r.state === "running") assert(r.epochs_done <= 2, JSON.stringify(r));
        }
      }
      const after = seen.at(-1)!;
      assertEquals(
        after.map((r) => [r.state, r.epochs_done, r.last_task?.code]),
        [1, 2, 3, 4].map(() => ["finished", 2, 0]),
      );
      const again = await sweep(dir, SLURM_ARGS);
      assert(
        again.stdout.includes("4 finished, 0 running or queued; nothing to submit"),
        again.stdout,
      );
      assertEquals((await jobsOf(dir)).length, 1);

      // The tables --status wrote from the run folders are the local executor's, byte for byte.
      const sdir = join(dir, "runs/sw");
      const read = (f: string, d = sdir) => Deno.readTextFile(join(d, f));
      const [csv, svg, md] = [
        await read("sweep-summary.csv"),
        await read("sweep-summary.svg"),
        await read("sweep-summary.md"),
      ];
      is(csv.trim().split("\n").length, 3, csv);
      const local = await sweep(dir, []);
      is(local.code, 0, local.stdout + local.stderr);
      assert(local.stdout.includes("all 4 points finished"), local.stdout);
      assertEquals(await read("sweep-summary.csv"), csv);
      assertEquals(await read("sweep-summary.svg"), svg);
      // The local executor marks points finished before it started as such.
      assertEquals((await read("sweep-summary.md")).replaceAll("done (earlier)", "done"), md);

      // Independent local runs of the same points: the same numbers and weights (train time aside).
      const indep = await sweep(dir, ["--out", "local", "--workers", "2"]);
      is(indep.code, 0, indep.stdout + indep.stderr);
      const csvLocal = await read("sweep-summary.csv", join(dir, "local/sw"));
      assertEquals(
        csvWithout(csvLocal, "train_seconds_mean"),
        csvWithout(csv, "train_seconds_mean"),
      );
      for (const r of after) {
        await sameRun(join(dir, r.dir), join(dir, r.dir.replace(/^runs/, "local")));
      }
    });
  },
);

slurmTest(
  "tasks stopped by their time limit requeue themselves; weights equal uninterrupted runs",
  async () => {
    await withTmp("lvit-slurm-tl-", async (dir) => {
      await writeSweep(dir, 3, "  seed: [1, 2]\n");
      // Slurm's --time counts in minutes, far longer than these runs: the run's own limit
      // (--run-time-limit, what the script passes as --time-limit) is set below one epoch, so
      // every task stops at its first epoch end (exit 75) and requeues itself: 3 tasks per point.
      const sub = await sweep(dir, [
        "--slurm",
        "--time",
        "1",
        "--max-parallel",
        "2",
        "--cpus-per-task",
        "1",
        "--run-time-limit",
        "0.001",
      ]);
      is(sub.code, 0, sub.stdout + sub.stderr);
      const script = await Deno.readTextFile(join(dir, "runs/sw/slurm/sweep.sbatch"));
      assert(script.includes("TIME_LIMIT=0.001s\n"), script);
      const seen = await waitFinished(dir);
      for (const rows of seen) {
        for (const r of rows) {
          assert(["pending", "running", "paused", "finished"].includes(r.state), JSON.stringify(r));
          // Paused between attempts: after epoch 1 or 2, never 0 or 3.
          if (r.state === "paused") assert([1, 2].includes(r.epochs_done), JSON.stringify(r));
        }
      }
      const [job] = await jobsOf(dir);
      for (const i of [1, 2]) {
        assertEquals(
          (await tasksOf(dir, i)).map((t) => [t[1], t[2], t[4]]),
          [[`${job}_${i}`, "0", "75"], [`${job}_${i}`, "1", "75"], [`${job}_${i}`, "2", "0"]],
        );
        const log = await Deno.readTextFile(join(dir, `runs/sw/logs/default-seed${i}.log`));
        is(log.match(/requeueing slurm job/g)?.length, 2, log);
        assert(log.includes("time limit 0.001s reached after epoch 2 of 3"), log);
      }
      assertEquals((await jobsOf(dir)).length, 1); // requeued, never submitted again
      // The same points run without any limit, locally.
      const local = await sweep(dir, ["--out", "local", "--workers", "2"]);
      is(local.code, 0, local.stdout + local.stderr);
      for (const r of seen.at(-1)!) {
        assertEquals([r.state, r.epochs_done], ["finished", 3]);
        await sameRun(join(dir, r.dir), join(dir, r.dir.replace(/^runs/, "local")));
      }
    });
  },
);

slurmTest(
  "Slurm's SIGUSR2 warning stops the run at an epoch end; the task requeues and finishes",
  async () => {
    await withTmp("lvit-slurm-usr1-", async (dir) => {
      await writeSweep(dir, 40, "  seed: [3]\n");
      const sub = await sweep(dir, ["--slurm", "--time", "10", "--cpus-per-task", "1"]);
      is(sub.code, 0, sub.stdout + sub.stderr);
      const [job] = await jobsOf(dir);
      const [p] = await status(dir);
      const metrics = join(dir, p.dir, "metrics.jsonl");
      // Wait for the first epoch, then warn the way --signal=B:USR2@N does: the batch shell only.
      const end = Date.now() + 90_000;
      while (!(await Deno.readTextFile(metrics).catch(() => "")).includes('"kind":"epoch"')) {
        assert(Date.now() < end, "no epoch within 90 s");
        await new Promise((r) => setTimeout(r, 100));
      }
      const sig = await sh("scancel", ["--batch", "--signal=USR2", `${job}_1`]);
      is(sig.code, 0, sig.stderr);
      const during = await status(dir);
      assert(["running", "paused"].includes(during[0].state), JSON.stringify(during));
      const seen = await waitFinished(dir, 150);
      assert(seen.every((rows) => rows[0].state !== "pending"), "a started point showed pending");
      const tasks = await tasksOf(dir, 1);
      assertEquals(tasks.map((t) => [t[2], t[4]]), [["0", "75"], ["1", "0"]]);
      const log = await Deno.readTextFile(join(dir, "runs/sw/logs/default-seed3.log"));
      assert(/SIGUSR2 \(time limit warning\) reached after epoch \d+ of 40/.test(log), log);
      // Every epoch logged once, in order, across both tasks.
      const epochs = (await Deno.readTextFile(metrics)).trim().split("\n").map((l) => JSON.parse(l))
        .filter((m) => m.kind === "epoch").map((m) => m.epoch);
      assertEquals(epochs, Array.from({ length: 40 }, (_, i) => i + 1));
      const local = await sweep(dir, ["--out", "local"]);
      is(local.code, 0, local.stdout + local.stderr);
      await sameRun(join(dir, p.dir), join(dir, p.dir.replace(/^runs/, "local")));
    });
  },
);
