/** Every op in the table is owned by an op test file (tests/op_coverage.ts), and only once. */
import { allOps } from "../lib/graph/mod.ts";
import { cpuLowerings } from "../lib/backends/cpu/lower.ts";
import { OP_OWNERS } from "./op_coverage.ts";

Deno.test("coverage: every op in the table is owned by exactly one op test file", () => {
  const owner = new Map<string, string>();
  for (const [file, ops] of Object.entries(OP_OWNERS)) {
    for (const op of ops) {
      if (owner.has(op)) throw new Error(`${op} is owned by ${owner.get(op)} and ${file}`);
      owner.set(op, file);
    }
  }
  const names = allOps().map((o) => o.name);
  const orphans = names.filter((n) => !owner.has(n));
  if (orphans.length) throw new Error(`ops without an owning test file: ${orphans.join(", ")}`);
  const unknown = [...owner.keys()].filter((n) => !names.includes(n));
  if (unknown.length) throw new Error(`owned ops that do not exist: ${unknown.join(", ")}`);
});

Deno.test("coverage: every op has a cpu kernel", () => {
  const missing = allOps().filter((o) => !o.alias && !cpuLowerings.has(o)).map((o) => o.name);
  if (missing.length) throw new Error(`ops without a cpu kernel: ${missing.join(", ")}`);
});
