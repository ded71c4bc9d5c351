import { checkOp, fdCheck } from "/work/main/tests/harness.ts";
import { add, conv2d, relu, sum } from "/work/main/lib/graph/mod.ts";
Deno.test("smoke", async () => {
  const c = { name: "add", inputs: { a: { shape: [3, 5] }, b: { shape: [1, 5] } }, build: (x: any) => relu(add(x.a, x.b)) };
  fdCheck(c);
  await checkOp(c);
  const s = { name: "sum", inputs: { a: { shape: [2, 3, 37, 41] } }, build: (x: any) => sum(x.a, [0, 2, 3]) };
  await checkOp(s);
  const cv = { name: "conv", inputs: { x: { shape: [2, 3, 9, 7] }, w: { shape: [5, 3, 3, 3] }, b: { shape: [5] } }, build: (x: any) => conv2d(x.x, x.w, x.b, { padding: 1 }) };
  fdCheck(cv);
  await checkOp(cv);
});
