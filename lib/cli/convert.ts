/**
 * `deno task convert MODEL.pth [--out MODEL.safetensors] [--key NAME]`: converts an official
 * PyTorch checkpoint (torch.save >= 1.6: a zip archive) into a safetensors file with the same
 * tensor names, dtypes and bytes, WITHOUT running any pickle code (lib/io/pth.ts: only the
 * globals of a tensor state_dict are accepted; `os.system`, `builtins.eval`, a pickled
 * `torch.nn.Module` and the like are refused by name). The file may be a state_dict or a dict
 * holding one (`{"state_dict": ..., "epoch": ...}`; `--key` picks one when there are several);
 * DataParallel's `module.` prefix is stripped. The output's metadata names the source file and
 * its sha256. Exit codes: 0, 2 for a file that cannot be read or is refused (one message naming
 * it, no stack trace), 1 internal error.
 */
import { basename, resolve } from "node:path";
import { InputError } from "../config/errors.ts";
import { writeAtomic } from "../io/atomic.ts";
import { fmtBytes } from "../io/bounded.ts";
import { decodePth, pthToSafetensors, readPthBytes, sha256Hex } from "../io/pth.ts";
import { cliArgs, runCli } from "./common.ts";

const USAGE = "usage: deno task convert MODEL.pth [--out MODEL.safetensors] [--key NAME]";

/** The default output: the input's name with .pth / .pt / .pth.tar / .ckpt as .safetensors. */
export function defaultOut(input: string): string {
  return input.replace(/(\.pth\.tar|\.pth|\.pt|\.ckpt)?$/i, ".safetensors");
}

/** Runs the convert command; returns the exit code. */
export async function main(argv: string[], print = (s: string) => console.log(s)) {
  const { values: v, positionals } = cliArgs(argv, {
    out: { type: "string" },
    key: { type: "string" },
  }, USAGE);
  if (positionals.length !== 1) throw new InputError(USAGE);
  const input = positionals[0];
  const out = v.out ?? defaultOut(input);
  if (resolve(out) === resolve(input)) {
    throw new InputError(`--out ${out} is the input file itself\n${USAGE}`);
  }
  const bytes = await readPthBytes(input);
  const sha256 = sha256Hex(bytes);
  const sd = decodePth(bytes, input, { key: v.key });
  print(
    `read ${input} (${fmtBytes(bytes.length)}, sha256 ${sha256.slice(0, 16)}...): torch.save ` +
      `archive '${sd.archive}', format version ${sd.version}`,
  );
  if (sd.key !== null) {
    print(
      `state_dict: the '${sd.key}' entry` +
        (sd.others.length ? ` (also in the file, not converted: ${sd.others.join("; ")})` : ""),
    );
  }
  if (sd.strippedPrefix) print(`stripped DataParallel's 'module.' prefix from every name`);
  const counts = new Map<string, number>();
  let values = 0;
  for (const t of sd.tensors.values()) {
    counts.set(t.dtype, (counts.get(t.dtype) ?? 0) + 1);
    values += t.shape.reduce((a, b) => a * b, 1);
  }
  const file = pthToSafetensors(sd, { file: input, sha256 });
  await writeAtomic(out, file);
  print(
    `wrote ${out}: ${sd.tensors.size} tensors (${
      [...counts].map(([d, n]) => `${d} ${n}`).join(", ")
    }), ${values.toLocaleString("en-US")} values, metadata source=${basename(input)}`,
  );
  return 0;
}

if (import.meta.main) await runCli(() => main(Deno.args));
