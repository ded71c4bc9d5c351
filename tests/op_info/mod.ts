/** Every op family's sample table (tests/op_info/<family>.ts), for checks across families. */
import type { OpTable } from "../op_suite.ts";
import { CONV_TABLE } from "./conv.ts";
import { ELEMENTWISE_TABLE } from "./elementwise.ts";
import { LAYER_NORM_TABLE } from "./layer_norm.ts";
import { MISC_TABLE } from "./misc.ts";
import { NORM_TABLE } from "./norm.ts";
import { OPTIM_TABLE } from "./optim.ts";
import { POOL_TABLE } from "./pool.ts";
import { SHAPE_OPS_TABLE } from "./shape_ops.ts";
import { TRANSFORMER_TABLE } from "./transformer.ts";

export const OP_TABLES: readonly OpTable[] = [
  ELEMENTWISE_TABLE,
  SHAPE_OPS_TABLE,
  CONV_TABLE,
  POOL_TABLE,
  NORM_TABLE,
  OPTIM_TABLE,
  TRANSFORMER_TABLE,
  LAYER_NORM_TABLE,
  MISC_TABLE,
];
