/**
 * bench/profile.ts, the tables of `deno task bench --profile` and `--profile-nodes N`: per-node
 * medians over the profiled runs, family sums equal to the node sums, GFLOP/s from the counted
 * FLOPs, and the slowest nodes in order with their shapes.
 */
import { Graph, matmul, relu } from "../lib/graph/mod.ts";
import type { Program } from "../lib/backends/compile.ts";
import {
  type Profilable,
  profileFamilies,
  profileNodes,
  profileTable,
  slowestNodesTable,
} from "../bench/profile.ts";
import { assertEquals } from "./assert.ts";

Deno.test("bench profile: node medians, family sums and the slowest-nodes table", () => {
  const g = new Graph();
  const a = g.input("a", [4, 8]), b = g.input("b", [8, 16]);
  const m = matmul(a, b); // 2 * 4 * 8 * 16 = 1024 FLOPs
  const r = relu(m);
  // Three runs: the matmul takes 1, 5, 2 ms (median 2), relu 3, 3, 9 (median 3).
  const times = [[1, 3], [5, 3], [2, 9]];
  let run = 0;
  const exe: Profilable = {
    program: { order: [a, b, m, r] } as unknown as Program,
    profile: () => {
      const t = times[run++];
      return [{ label: `matmul#${m.id}`, ms: t[0] }, { label: `relu#${r.id}`, ms: t[1] }];
    },
  };
  const nodes = profileNodes(exe, 3);
  assertEquals(nodes.map((n) => [n.op, n.ms]), [["matmul", 2], ["relu", 3]]);
  const fams = profileFamilies(nodes);
  assertEquals(fams.map((f) => [f.family, f.nodes, f.ms]), [["activation", 1, 3], [
    "matmul",
    1,
    2,
  ]]);
  // 1024 FLOPs in 2 ms: 1024 / 2e-3 / 1e9 GFLOP/s.
  assertEquals(fams[1].gflops, 1024 / 2 / 1e6);
  const table = slowestNodesTable("nodes", nodes, 1).split("\n");
  assertEquals(table[0], "nodes: the 1 slowest of 2 nodes");
  assertEquals(table.length, 5);
  assertEquals(table[4].startsWith("| relu | 3.0 | 60.0% |  | 4x16 | 4x16 |"), true);
  const top2 = slowestNodesTable("nodes", nodes, 2).split("\n");
  assertEquals(top2[5].startsWith("| matmul | 2.0 | 40.0% | 0 | 4x16 | 4x8, 8x16 |"), true);
  assertEquals(profileTable("p", fams).split("\n")[0], "p: 5 ms summed over nodes");
  // Skipping a family lists the others, with shares of the whole.
  const noAct = slowestNodesTable("nodes", nodes, 2, ["activation"]).split("\n");
  assertEquals(noAct[0], "nodes: the 2 slowest of 1 nodes (activation left out)");
  assertEquals(noAct.length, 5);
  assertEquals(noAct[4].startsWith("| matmul | 2.0 | 40.0% |"), true);
});
