/**
 * BERT by hub id (lib/data/hub.ts): a tiny BERT written by tiny_bert.ts is served from 127.0.0.1
 * in the hub's `<id>/resolve/<revision>/<file>` layout as a stand-in for huggingface.co. The
 * first open downloads it into the cache; with the server stopped, the next open runs from the
 * cache; its features and encoder id equal those of the same model given as a local folder.
 */
import { join } from "node:path";
import { parseHubId, resolveBertModel } from "../lib/data/hub.ts";
import { openTextEncoder } from "../lib/data/text.ts";
import { writeTinyBert } from "../lib/data/tiny_bert.ts";
import { DataError } from "../lib/data/errors.ts";
import { assert, assertEquals, expectRejection } from "./assert.ts";
import { withTmp } from "./process.ts";

const HIDDEN = 32;
const TEXT =
  "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung.";

/** Serves `root` (a folder of model folders) as `/<id>/resolve/<rev>/<file>`; counts requests. */
function hubStandIn(models: Record<string, string>, opts: { failOnnx?: boolean } = {}) {
  const requests: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const path = decodeURIComponent(new URL(req.url).pathname);
    requests.push(path);
    const m = /^\/(.+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    const dir = m ? models[m[1]] : undefined;
    if (!m || !dir || m[2] !== "main" || m[3].includes("..")) {
      return new Response("not found", { status: 404 });
    }
    if (opts.failOnnx && m[3] === "onnx/model.onnx") {
      return new Response("server error", { status: 500 });
    }
    try {
      return new Response(await Deno.readFile(join(dir, m[3])));
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  return { server, requests, endpoint: `http://127.0.0.1:${server.addr.port}` };
}

Deno.test("hub ids: owner/name[@revision] parse, paths and URLs do not", () => {
  assertEquals(parseHubId("bert-base-uncased"), { repo: "bert-base-uncased", revision: "main" });
  assertEquals(parseHubId("Xenova/bert-base-uncased@v1.0"), {
    repo: "Xenova/bert-base-uncased",
    revision: "v1.0",
  });
  for (
    const bad of ["./models/bert", "/abs/bert", "a/b/c", "../x", "https://x.org/a", "a/..", ""]
  ) {
    assert(parseHubId(bad) === null, `${bad} is not an id`);
  }
});

Deno.test("bert by hub id: downloads once, then runs offline with the local folder's features", async () => {
  await withTmp("hub-", async (tmp) => {
    const local = join(tmp, "local-bert");
    await writeTinyBert(local, { seed: 5, hidden: HIDDEN, layers: 1, heads: 2 });
    const cache = join(tmp, "cache");
    const hub = hubStandIn({ "tiny-org/tiny-bert": local });
    Deno.env.set("HF_ENDPOINT", hub.endpoint);
    const lines: string[] = [];
    const config = {
      encoder: "bert" as const,
      model_dir: null,
      model: "tiny-org/tiny-bert",
      cacheDir: cache,
      tokens: 10,
      dim: HIDDEN,
      seed: 1,
    };
    let first: Float32Array, id: string;
    try {
      const enc = await openTextEncoder(config, (l) => lines.push(l));
      first = await enc.encode(TEXT);
      id = enc.id;
      await enc.close?.();
    } finally {
      await hub.server.shutdown();
    }
    const downloads = hub.requests.length;
    assert(downloads >= 3, `config, model and a tokenizer file were fetched: ${hub.requests}`);
    assert(lines.some((l) => l.includes("onnx/model.onnx")), `progress lines: ${lines}`);
    const dir = join(cache, "hub", "tiny-org", "tiny-bert", "main");
    assert((await Deno.stat(join(dir, "onnx", "model.onnx"))).isFile, "laid out as a folder");

    // The server is gone: a second open must come from the cache alone.
    const again = await openTextEncoder(config);
    try {
      assert(hub.requests.length === downloads, "no request after the first download");
      assertEquals(again.id, id);
      assertEquals(await again.encode(TEXT), first);
    } finally {
      await again.close?.();
    }

    // Same model from its local folder: the same id (so the same text-cache keys) and features.
    const fromFolder = await openTextEncoder({ ...config, model: null, model_dir: local });
    try {
      assertEquals(fromFolder.id, id);
      assertEquals(await fromFolder.encode(TEXT), first);
    } finally {
      await fromFolder.close?.();
      Deno.env.delete("HF_ENDPOINT");
    }
  });
});

Deno.test("bert by hub id: unknown ids and cut downloads are DataErrors, and retried", async () => {
  await withTmp("hub-", async (tmp) => {
    const local = join(tmp, "local-bert");
    await writeTinyBert(local, { seed: 5, hidden: HIDDEN, layers: 1, heads: 2 });
    const cache = join(tmp, "cache");
    const broken = hubStandIn({ "org/m": local }, { failOnnx: true });
    try {
      await expectRejection(
        "an id the hub does not have",
        DataError,
        () => resolveBertModel("org/missing", cache, { endpoint: broken.endpoint }),
        "/org/missing/resolve/main/config.json",
        "HTTP 404",
      );
      await expectRejection(
        "a server error on the model file",
        DataError,
        () => resolveBertModel("org/m", cache, { endpoint: broken.endpoint }),
        "onnx/model.onnx",
        "HTTP 500",
      );
      await expectRejection(
        "neither a folder nor an id",
        DataError,
        () => resolveBertModel("not a/valid id", cache, { endpoint: broken.endpoint }),
        "neither a model folder nor a hub model id",
      );
    } finally {
      await broken.server.shutdown();
    }
    // The failed attempt left no complete marker: a working hub completes the download.
    const ok = hubStandIn({ "org/m": local });
    try {
      const dir = await resolveBertModel("org/m", cache, { endpoint: ok.endpoint });
      assert(ok.requests.some((r) => r.endsWith("onnx/model.onnx")), "downloaded again");
      assertEquals(
        await Deno.readFile(join(dir, "onnx", "model.onnx")),
        await Deno.readFile(join(local, "onnx", "model.onnx")),
      );
    } finally {
      await ok.server.shutdown();
    }
  });
});
