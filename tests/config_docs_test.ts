/**
 * README.md's table of experiment keys is generated from the schema (formatSchemaKeys); this
 * test fails when a key, default or description changes without the table being regenerated.
 * Regenerate: replace the text between the schema markers in README.md with
 * `formatSchemaKeys()` (see the failure message).
 */
import { formatSchemaKeys } from "../lib/config/schema.ts";

Deno.test("README's experiment key table matches the schema", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const a = readme.indexOf("<!-- schema:start -->\n");
  const b = readme.indexOf("<!-- schema:end -->");
  if (a < 0 || b < a) throw new Error("README.md lacks the schema markers");
  // deno fmt re-pads Markdown tables: compare cell contents, not spacing.
  const cells = (t: string) =>
    t.trim().split("\n").map((row) =>
      row.split("|").map((c) => c.trim().replace(/^:?-+:?$/, "---")).join("|")
    ).join("\n");
  const table = readme.slice(a + "<!-- schema:start -->\n".length, b);
  if (cells(table) !== cells(formatSchemaKeys())) {
    throw new Error(
      "README.md's key table is stale: paste the output of\n" +
        '  deno eval \'import {formatSchemaKeys} from "./lib/config/schema.ts"; ' +
        "console.log(formatSchemaKeys())'\nbetween the schema markers",
    );
  }
});
