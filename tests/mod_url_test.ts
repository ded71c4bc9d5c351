/**
 * `mod.ts` is importable by URL (issue 6 item 7): the repository is served over HTTP on
 * 127.0.0.1 and a script in another directory, with no deno.json and no import map, imports
 * `mod.ts` from that URL and runs a tiny experiment programmatically.
 */
import { join } from "node:path";

const ROOT = new URL("../", import.meta.url).pathname;

const TYPES: Record<string, string> = {
  ".ts": "application/typescript",
  ".js": "application/javascript",
  ".json": "application/json",
};

Deno.test("mod.ts imported by URL from another directory runs a tiny experiment", async () => {
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    async (req) => {
      const path = decodeURIComponent(new URL(req.url).pathname);
      if (path.includes("..")) return new Response("no", { status: 403 });
      try {
        const body = await Deno.readFile(join(ROOT, path));
        const ext = path.slice(path.lastIndexOf("."));
        return new Response(body, {
          headers: { "content-type": TYPES[ext] ?? "application/octet-stream" },
        });
      } catch {
        return new Response("not found", { status: 404 });
      }
    },
  );
  const base = `http://127.0.0.1:${server.addr.port}`;
  const dir = await Deno.makeTempDir({ prefix: "lvit-url-" });
  try {
    await Deno.writeTextFile(
      join(dir, "main.ts"),
      `import { resolveExperimentText, runExperiment } from "${base}/mod.ts";
const yaml = [
  "name: url-demo",
  "seed: 3",
  "backend: cpu",
  "data: { dataset: synth, synth: { train: 4, val: 2, test: 2 } }",
  "model: { name: unet-small, widths: [4, 8], image_size: 32 }",
  "train: { epochs: 1, batch: 2, lr: 0.01, min_save_epoch: 1 }",
  "eval: { overlays: 2 }",
].join("\\n");
const exp = resolveExperimentText("inline.yaml", yaml);
const r = await runExperiment(exp, { out: "runs", progress: false, signals: false, log: () => {} });
console.log(JSON.stringify({ dir: r.dir, dice: r.summary?.test.dice }));
`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-read",
        "--allow-write",
        "--allow-env",
        "--allow-ffi",
        "--unstable-webgpu",
        "--no-config",
        `--allow-import=127.0.0.1:${server.addr.port}`,
        "main.ts",
      ],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
      env: { XDG_RUNTIME_DIR: "/tmp" },
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    if (out.code !== 0) throw new Error(`exit ${out.code}\n${stdout}\n${stderr}`);
    const res = JSON.parse(stdout.trim().split("\n").pop()!);
    if (!(res.dice >= 0 && res.dice <= 1)) throw new Error(`bad test dice ${res.dice}`);
    for (const f of ["config.yaml", "env.json", "metrics.jsonl", "summary.json", "report.md"]) {
      await Deno.stat(join(dir, res.dir, f));
    }
    console.log(`imported ${base}/mod.ts from ${dir}; test dice ${res.dice.toFixed(4)}`);
  } finally {
    ac.abort();
    await server.finished;
    await Deno.remove(dir, { recursive: true });
  }
});
