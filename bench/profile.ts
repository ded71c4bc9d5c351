/**
 * `deno task bench --profile`: where a CPU training step spends its time, by op family. Each
 * node of the compiled program is timed on its own (CpuExecutable.profile) over a few steps and
 * the per-node medians are summed per family, so one slow outlier step does not move a family.
 */
import type { Program } from "../lib/backends/compile.ts";
import type { Tensor } from "../lib/graph/graph.ts";
import { exactMacs } from "../lib/models/count.ts";

/**
 * Op family of each op name: the same families as the op modules and kernel folders (conv,
 * matmul, batch_norm, ...). Ops not listed are their own family.
 */
const FAMILY: Record<string, string> = {
  conv2d: "conv",
  conv2d_bwd_data: "conv_bwd_data",
  conv2d_bwd_weight: "conv_bwd_weight",
  conv_transpose: "conv",
  conv_transpose_bwd_data: "conv_bwd_data",
  conv_transpose_bwd_weight: "conv_bwd_weight",
  matmul: "matmul",
  bn_stats: "batch_norm",
  bn_apply: "batch_norm",
  bn_bwd_sums: "batch_norm",
  bn_bwd_data: "batch_norm",
  bn_running_update: "batch_norm",
  ln_stats: "layer_norm",
  ln_apply: "layer_norm",
  ln_bwd_data: "layer_norm",
  ln_bwd_params: "layer_norm",
  softmax: "softmax",
  softmax_grad: "softmax",
  maxpool2d: "pool",
  maxpool2d_bwd: "pool",
  pool_sum: "pool",
  upsample_nearest: "pool",
  max_axis: "reduce",
  max_axis_grad: "reduce",
  sum: "reduce",
  relu: "activation",
  relu_grad: "activation",
  gelu: "activation",
  gelu_grad: "activation",
  sigmoid: "activation",
  sigmoid_grad: "activation",
  dropout: "dropout",
  adam: "optim",
  assign: "optim",
  bce: "loss",
  bce_grad: "loss",
  slice: "copy",
  pad: "copy",
  concat: "copy",
  permute: "copy",
  expand: "copy",
};

/** The family of an op name (elementwise arithmetic by default). */
export function familyOf(op: string): string {
  return FAMILY[op] ?? "elementwise";
}

/** One family's share of a step. */
export interface FamilyTime {
  family: string;
  nodes: number;
  ms: number;
  /** Achieved GFLOP/s where the family does counted FLOPs (conv, matmul). */
  gflops?: number;
}

/** Something that can time each node of one run (the CPU executable). */
export interface Profilable {
  readonly program: Program;
  profile(): { label: string; ms: number }[];
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** One node's median time over the profiled runs, with the tensor it computes (if known). */
export interface NodeTime {
  op: string;
  ms: number;
  tensor?: Tensor;
}

/** Times every node over `runs` runs (inputs as last written): per-node medians, in order. */
export function profileNodes(exe: Profilable, runs = 3): NodeTime[] {
  const samples = Array.from({ length: runs }, () => exe.profile());
  const byId = new Map(exe.program.order.map((t) => [t.id, t]));
  return samples[0].map((s, i) => {
    const [op, id] = s.label.split("#");
    return { op, ms: median(samples.map((r) => r[i].ms)), tensor: byId.get(Number(id)) };
  });
}

/** FLOPs a node does where counted (conv, matmul), else 0. */
const flopsOf = (n: NodeTime) => (n.tensor ? 2 * exactMacs(n.tensor) : 0);

/** Per-node times summed by family, slowest family first. */
export function profileFamilies(nodes: NodeTime[]): FamilyTime[] {
  const fams = new Map<string, { nodes: number; ms: number; flops: number }>();
  for (const n of nodes) {
    const f = familyOf(n.op);
    const e = fams.get(f) ?? { nodes: 0, ms: 0, flops: 0 };
    e.nodes++;
    e.ms += n.ms;
    e.flops += flopsOf(n);
    fams.set(f, e);
  }
  return [...fams.entries()]
    .map(([family, e]) => ({
      family,
      nodes: e.nodes,
      ms: e.ms,
      ...(e.flops > 0 && e.ms > 0 ? { gflops: e.flops / e.ms / 1e6 } : {}),
    }))
    .sort((a, b) => b.ms - a.ms);
}

/**
 * A Markdown table of the `top` slowest nodes: op, median ms, share of the summed time (of all
 * nodes), GFLOP/s where counted, output and input shapes, attributes. Nodes of the families in
 * `skip` are left out of the list (`--profile-skip conv,matmul` finds what else is slow).
 */
export function slowestNodesTable(
  title: string,
  nodes: NodeTime[],
  top: number,
  skip: readonly string[] = [],
): string {
  const total = nodes.reduce((s, n) => s + n.ms, 0);
  const shape = (t: Tensor) => t.shape.join("x");
  const listed = nodes.filter((n) => !skip.includes(familyOf(n.op)));
  const without = skip.length ? ` (${skip.join(", ")} left out)` : "";
  const lines = [
    `${title}: the ${top} slowest of ${listed.length} nodes${without}`,
    "",
    "| op | ms | share | GFLOP/s | output | inputs | attributes |",
    "|---|---:|---:|---:|---|---|---|",
  ];
  for (const n of [...listed].sort((a, b) => b.ms - a.ms).slice(0, top)) {
    const f = flopsOf(n), t = n.tensor;
    lines.push(
      `| ${n.op} | ${n.ms.toFixed(1)} | ${(100 * n.ms / total).toFixed(1)}% | ${
        f > 0 && n.ms > 0 ? (f / n.ms / 1e6).toFixed(0) : ""
      } | ${t ? shape(t) : ""} | ${t ? t.inputs.map(shape).join(", ") : ""} | ${
        t ? JSON.stringify(t.attrs).replaceAll("|", "\\|") : ""
      } |`,
    );
  }
  return lines.join("\n");
}

/** A Markdown table of a profile, with each family's share of the summed time. */
export function profileTable(title: string, rows: FamilyTime[]): string {
  const total = rows.reduce((s, r) => s + r.ms, 0);
  const lines = [
    `${title}: ${total.toFixed(0)} ms summed over nodes`,
    "",
    "| family | nodes | ms | share | GFLOP/s |",
    "|---|---:|---:|---:|---:|",
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.family} | ${r.nodes} | ${r.ms.toFixed(1)} | ${(100 * r.ms / total).toFixed(1)}% | ${
        r.gflops === undefined ? "" : r.gflops.toFixed(0)
      } |`,
    );
  }
  return lines.join("\n");
}
