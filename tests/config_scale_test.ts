/**
 * Issue 15, class 8: experiment loading scales linearly and is strict about its bytes. The
 * issue's cases first: many keys (16,000 took 14.7 s and 200,000 more than 300 s: the YAML
 * library's duplicate-key check and the loader's position bookkeeping were both quadratic) and
 * bytes that are not UTF-8 (decoded lossily into the config, hence the run folder's hash). Then
 * more of the class: extends chains that name a file twice per level (read 2^depth times
 * before), duplicate keys still refused with their position, invalid UTF-8 in an extends target,
 * overlong forms and surrogates, a byte-order mark, and the UTF-8 scanner against TextDecoder.
 */
import { join } from "node:path";
import { InputError } from "../lib/config/errors.ts";
import { loadExperiment, MAX_PROBLEMS, resolveExperimentText } from "../lib/config/load.ts";
import { firstInvalidUtf8 } from "../lib/io/bounded.ts";
import { assert, expectError, expectRejection } from "./assert.ts";
import { assertNoStackTrace, denoRun, withTmp } from "./process.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const MIN = "name: t\ndata: { dataset: synth }\nmodel: { name: lvit-t }\n";

Deno.test("config scale: 100,000 keys load in linear time, the message lists 50 problems", () => {
  // The case, scaled: 16,000 keys took 14.7 s, 200,000 over 300 s. Quadratic, 100,000
  // would take minutes; linear, a few seconds (the bound leaves room for a loaded machine).
  const n = 100_000;
  const text = MIN + Array.from({ length: n }, (_, i) => `k${i}: ${i}\n`).join("");
  const t = performance.now();
  const e = expectError("many keys", InputError, () => resolveExperimentText("big.yaml", text));
  const secs = (performance.now() - t) / 1000;
  assert(secs < 60, `${n} keys took ${secs.toFixed(1)} s`);
  const lines = e.message.split("\n");
  assert(lines.length === MAX_PROBLEMS + 1, `${lines.length} lines`);
  assert(lines[0].startsWith("big.yaml:4:1: unknown key 'k0'"), lines[0]);
  assert(lines[MAX_PROBLEMS] === `... and ${n - MAX_PROBLEMS} more problems`, lines.at(-1));
  // A repeated key among them is still refused, at its position, before the schema runs.
  const dup = expectError(
    "duplicate",
    InputError,
    () => resolveExperimentText("dup.yaml", `${text}k77: again\n`),
  );
  assert(dup.message === `dup.yaml:${n + 4}:1: invalid YAML: Map keys must be unique`, dup.message);
});

Deno.test("config scale: an extends chain naming each file twice reads each once", () => {
  // Each file extends the next one twice: 2^22 reads and merges before, 23 now.
  const depth = 22;
  const files = new Map<string, string>();
  for (let i = 0; i < depth; i++) {
    files.set(`/x/f${i}.yaml`, `extends: [f${i + 1}.yaml, f${i + 1}.yaml]\ndescription: f${i}\n`);
  }
  files.set(`/x/f${depth}.yaml`, "seed: 3\n");
  let reads = 0;
  const read = (p: string) => {
    reads++;
    const t = files.get(p);
    if (t === undefined) throw new Deno.errors.NotFound(p);
    return t;
  };
  const t = performance.now();
  const r = resolveExperimentText("/x/e.yaml", `extends: f0.yaml\n${MIN}`, [], read);
  const ms = performance.now() - t;
  assert(r.config.seed === 3 && r.config.description === "f0", JSON.stringify(r.config));
  assert(reads === depth + 1, `${reads} reads`);
  assert(r.files.length === depth + 2, `${r.files.length} files`);
  assert(ms < 10_000, `${ms} ms`);
});

Deno.test("config strict: bytes that are not UTF-8 are refused with their offset, exit 2", async () => {
  await withTmp("lvit-utf8-", async (dir) => {
    // The case: a Latin-1 'é' (0xE9) in a description, decoded as U+FFFD before.
    const e = join(dir, "e.yaml");
    const head = new TextEncoder().encode(`${MIN}description: "caf`);
    await Deno.writeFile(e, new Uint8Array([...head, 0xe9, 0x22, 0x0a]));
    const err = await expectRejection("latin1", InputError, () => loadExperiment(e));
    assert(
      err.message === `${e}:4:18: not valid UTF-8 text: byte 0xE9 at byte offset ` +
          `${head.length} does not start or continue a UTF-8 character (save the file as UTF-8)`,
      err.message,
    );
    const r = await denoRun([join(ROOT, "lib/cli/run.ts"), e, "--out", join(dir, "runs")]);
    assert(r.code === 2, `exit ${r.code}: ${r.text}`);
    assert(r.text.includes(`byte 0xE9 at byte offset ${head.length}`), r.text);
    assertNoStackTrace(r.text);
    // One more: an extends target with a lone continuation byte, named at the extends entry.
    await Deno.writeFile(
      join(dir, "base.yaml"),
      new Uint8Array([0x73, 0x65, 0x65, 0x64, 0x3a, 0x20, 0x80]),
    );
    await Deno.writeTextFile(join(dir, "x.yaml"), `extends: base.yaml\n${MIN}`);
    await expectRejection(
      "extends",
      InputError,
      () => loadExperiment(join(dir, "x.yaml")),
      `x.yaml:1:10: extends target 'base.yaml': ${join(dir, "base.yaml")}:1:7: not valid UTF-8`,
      "byte 0x80 at byte offset 6",
    );
    // A byte-order mark is UTF-8 and is dropped, as before.
    await Deno.writeFile(join(dir, "bom.yaml"), new Uint8Array([0xef, 0xbb, 0xbf, ...head, 0x22]));
    assert((await loadExperiment(join(dir, "bom.yaml"))).config.description === "caf", "BOM");
  });
});

Deno.test("config strict: the UTF-8 scanner agrees with TextDecoder (overlongs, surrogates)", () => {
  const fatal = new TextDecoder("utf-8", { fatal: true });
  const valid = (b: Uint8Array) => {
    try {
      fatal.decode(b);
      return true;
    } catch {
      return false;
    }
  };
  const cases = [
    [0xc0, 0xaf], // overlong '/'
    [0xe0, 0x80, 0xaf], // overlong
    [0xed, 0xa0, 0x80], // surrogate U+D800
    [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
    [0xf0, 0x9f, 0x98], // cut short
    [0xe2, 0x82, 0xac], // '€', valid
    [0xf0, 0x9f, 0x98, 0x80], // emoji, valid
  ].map((c) => new Uint8Array([0x61, ...c, 0x62]));
  let state = 15;
  const rand = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32;
  for (let k = 0; k < 3000; k++) {
    const n = 1 + Math.floor(rand() * 12);
    // Mostly bytes near the multi-byte boundaries, where the rules are.
    const pick = [0x41, 0x7f, 0x80, 0xbf, 0xc0, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5];
    cases.push(Uint8Array.from({ length: n }, () => pick[Math.floor(rand() * pick.length)]));
  }
  for (const b of cases) {
    const at = firstInvalidUtf8(b);
    assert((at < 0) === valid(b), `[${b}]: scanner ${at}, TextDecoder ${valid(b)}`);
    if (at >= 0) assert(valid(b.subarray(0, at)), `[${b}]: prefix before ${at} must be valid`);
  }
});
