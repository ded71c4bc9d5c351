/**
 * README.md's table of experiment keys is generated from the schema (formatSchemaKeys), whose
 * `model.*` rows come from the models' option declarations (lib/models/options.ts); these tests
 * fail when a key, default or description changes without the table being regenerated, and
 * when a declared model option has no row of its own words. Regenerate: replace the text
 * between the schema markers in README.md with `formatSchemaKeys()` (see the failure message).
 */
import { expectsOf, formatSchemaKeys } from "../lib/config/schema.ts";
import { MODELS } from "../lib/models/registry.ts";

/** README.md's generated key table (between the schema markers). */
async function readmeTable(): Promise<string> {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const a = readme.indexOf("<!-- schema:start -->\n");
  const b = readme.indexOf("<!-- schema:end -->");
  if (a < 0 || b < a) throw new Error("README.md lacks the schema markers");
  return readme.slice(a + "<!-- schema:start -->\n".length, b);
}

// deno fmt re-pads Markdown tables: compare cell contents, not spacing.
const cells = (t: string) =>
  t.trim().split("\n").map((row) =>
    row.split("|").map((c) => c.trim().replace(/^:?-+:?$/, "---")).join("|")
  ).join("\n");

Deno.test("README's experiment key table matches the schema", async () => {
  const table = await readmeTable();
  if (cells(table) !== cells(formatSchemaKeys())) {
    throw new Error(
      "README.md's key table is stale: paste the output of\n" +
        '  deno eval \'import {formatSchemaKeys} from "./lib/config/schema.ts"; ' +
        "console.log(formatSchemaKeys())'\nbetween the schema markers",
    );
  }
});

Deno.test("README's model rows carry every registered model's declared options", async () => {
  const rows = new Map(
    cells(await readmeTable()).split("\n").map((r) => r.split("|")).map((
      c,
    ) => [c[1], { takes: c[2], fallback: c[3], description: c[4] }]),
  );
  for (const m of Object.values(MODELS)) {
    for (const o of m.options.list) {
      const row = rows.get(`\`model.${o.key}\``);
      const where = `README row of model.${o.key} (${m.name})`;
      if (!row) throw new Error(`${where} is missing`);
      for (
        const [what, cell, want] of [
          ["takes", row.takes, expectsOf(o.schema)],
          ["default", row.fallback, JSON.stringify(o.default)],
          ["description", row.description, o.doc],
        ]
      ) {
        if (!cell.includes(want)) throw new Error(`${where}: ${what} lacks ${want}: ${cell}`);
      }
      if (!row.description.includes(m.name)) throw new Error(`${where} does not name the model`);
    }
  }
});
