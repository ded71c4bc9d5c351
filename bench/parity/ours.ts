// Parity check, our side: builds the registry model, loads the official .pth strictly, runs the
// eval forward on the official input, writes probabilities/logits and a JSON report.
// usage: deno run -A ours.ts <name> <size> [tag]
import { buildModel, Inference, loadWeights, selectBackend, stateDict } from "../../mod.ts";

const [name, sizeArg, tag] = Deno.args;
const S = Number(sizeArg);
const B = 2;
const outRoot = Deno.env.get("PARITY_OUT") ?? new URL("./out", import.meta.url).pathname;
const dir = `${outRoot}/${name}${tag ? `-${tag}` : ""}/`;
const official = JSON.parse(await Deno.readTextFile(`${dir}official.json`));
// deno-lint-ignore no-explicit-any
const model = buildModel(name as any, { imageSize: S } as any);

// State_dict comparison (names, order, shapes) and counts.
const sd = stateDict(model, { batch: B, channels: 3, size: S });
const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);
const ours = new Map(sd.map((e) => [e.name, e.shape]));
const theirs = new Map<string, number[]>(official.names);
const missing = [...theirs.keys()].filter((n) => !ours.has(n));
const unexpected = [...ours.keys()].filter((n) => !theirs.has(n));
const misshapen = [...theirs.entries()].filter(([n, s]) =>
  ours.has(n) && JSON.stringify(ours.get(n)) !== JSON.stringify(s)
).map(([n, s]) => ({ name: n, official: s, ours: ours.get(n) }));
const sameOrder = JSON.stringify(sd.map((e) => e.name)) ===
  JSON.stringify(official.names.map((e: [string]) => e[0]));
const report: Record<string, unknown> = {
  name,
  size: S,
  ours_entries: sd.length,
  ours_state_dict_numel: sd.reduce((a, e) => a + numel(e.shape), 0),
  ours_parameters_numel: sd.filter((e) => e.trainable).reduce((a, e) => a + numel(e.shape), 0),
  official_entries: official.state_dict_entries,
  official_state_dict_numel: official.state_dict_numel,
  official_parameters_numel: official.parameters_numel,
  name_diff: { missing, unexpected, misshapen, sameOrder },
};

const backend = await selectBackend("cpu");
const m = await Inference.create(backend, model, { size: S, batch: B, channels: 3 });
try {
  const r = await loadWeights(m, `${dir}weights.pth`, { mode: "strict" });
  report.strict = {
    ok: true,
    loaded: r.loaded.length,
    missing: r.missing,
    unexpected: r.unexpected,
    misshapen: r.misshapen,
    ignored: r.ignored,
  };
} catch (e) {
  report.strict = { ok: false, error: String(e) };
  const r = await loadWeights(m, `${dir}weights.pth`, { mode: "partial" });
  report.partial = {
    loaded: r.loaded.length,
    missing: r.missing,
    unexpected: r.unexpected,
    misshapen: r.misshapen,
  };
}
const x = new Float32Array((await Deno.readFile(`${dir}input.f32`)).slice().buffer);
if (x.length !== B * 3 * S * S) throw new Error(`input length ${x.length}`);
const t0 = performance.now();
const { logits, probabilities } = await m.forward(x);
report.forward_ms = Math.round(performance.now() - t0);
await Deno.writeFile(`${dir}ours_probs.f32`, new Uint8Array(probabilities.buffer));
if (logits) await Deno.writeFile(`${dir}ours_logits.f32`, new Uint8Array(logits.buffer));
report.has_logits = logits !== null;
m.destroy();
await Deno.writeTextFile(`${dir}ours.json`, JSON.stringify(report, null, 1));
console.log(JSON.stringify(report, null, 1));
