/**
 * A restricted reader of Python pickles (binary protocols 2-5) for untrusted files: it builds
 * plain values and never runs anything. Unlike Python's `pickle.load`, which imports and calls
 * whatever a `GLOBAL` + `REDUCE` pair names (`os.system`, `builtins.eval`, ...), here
 *
 * - only the opcodes that describe data are accepted (numbers, strings, bytes, tuples, lists,
 *   dicts, sets, the memo, marks, persistent ids); the object-building opcodes `INST`, `OBJ`,
 *   `NEWOBJ`, `NEWOBJ_EX`, the extension registry (`EXT1/2/4`), out-of-band buffers and the
 *   text-mode opcodes of protocol 0 are refused by name and offset;
 * - a `GLOBAL` / `STACK_GLOBAL` is looked up in the caller's allow-list the moment it is read
 *   and refused right there, naming it (`os.system`), before any argument is even parsed;
 * - `REDUCE` and `BUILD` only reach the allow-list's own handlers (pure functions of the
 *   decoded arguments), and a persistent id only the caller's `persistentLoad`;
 * - the input size, the stack, the mark nesting depth and the memo are bounded, and nothing
 *   walks the value graph recursively, so self-referencing structures cost nothing.
 *
 * Python values become: None -> null, bool -> boolean, int -> number (bigint beyond 2^53),
 * float -> number, str -> string, bytes -> Uint8Array, tuple -> {@link PyTuple}, list ->
 * {@link PyList}, dict -> {@link PyDict} (keys in a Map, never object properties), set ->
 * {@link PySet}; allowed globals -> {@link PyGlobal}; the handlers' results as they return them.
 */

/** A Python tuple. */
export class PyTuple {
  constructor(readonly items: readonly unknown[]) {}
}

/** A Python list. */
export class PyList {
  readonly items: unknown[] = [];
}

/** A Python set or frozenset. */
export class PySet {
  readonly items: unknown[] = [];
}

/** A Python dict, or a dict subclass an allowed global built (e.g. collections.OrderedDict). */
export class PyDict {
  /**
   * Entries in insertion order; str keys are strings, int keys numbers (tuple keys are objects,
   * compared by identity: nothing here looks them up).
   */
  readonly entries = new Map<unknown, unknown>();
  /** The instance attributes a BUILD set (OrderedDict's `_metadata` in a state_dict). */
  attrs: PyDict | null = null;
  /** The global that made it ("collections.OrderedDict"), or null for a plain dict. */
  constructor(readonly type: string | null = null) {}
}

/** An allowed global, as a value: a callable for REDUCE, or a class passed as data. */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

/** What the caller allows a global to do. */
export interface GlobalHandler {
  /** Called by REDUCE with the argument tuple's items; absent: calling it is refused. */
  call?: (args: readonly unknown[]) => unknown;
  /** Called by BUILD on an object this global's `call` made; absent: BUILD is refused. */
  build?: (obj: unknown, state: unknown) => void;
}

export interface PickleLimits {
  /** Deepest MARK nesting (a tuple in a tuple in a dict ... each opens one). */
  maxDepth: number;
  /** Most values on the stack at once. */
  maxStack: number;
  /** Most memo entries. */
  maxMemo: number;
}

export const DEFAULT_PICKLE_LIMITS: PickleLimits = {
  maxDepth: 100,
  maxStack: 1_000_000,
  maxMemo: 1_000_000,
};

export interface UnpickleOptions {
  /** Allowed globals by "module.name". */
  globals: ReadonlyMap<string, GlobalHandler>;
  /** Resolves a persistent id (BINPERSID); absent: persistent ids are refused. */
  persistentLoad?: (pid: unknown) => unknown;
  limits?: Partial<PickleLimits>;
}

/** Why a pickle was refused. `global` is set when a global outside the allow-list was named. */
export class PickleError extends Error {
  constructor(message: string, readonly global: string | null = null) {
    super(message);
    this.name = "PickleError";
  }
}

/** The opcodes refused on purpose, by byte, for the message (the rest are unknown bytes). */
const REFUSED: Record<number, string> = {
  0x69: "INST (builds an object of a named class)",
  0x6f: "OBJ (builds an object of a class on the stack)",
  0x81: "NEWOBJ (builds an object of a class on the stack)",
  0x92: "NEWOBJ_EX (builds an object of a class on the stack)",
  0x82: "EXT1 (a global from the extension registry)",
  0x83: "EXT2 (a global from the extension registry)",
  0x84: "EXT4 (a global from the extension registry)",
  0x50: "PERSID (a text persistent id)",
  0x97: "NEXT_BUFFER (an out-of-band buffer)",
  0x98: "READONLY_BUFFER (an out-of-band buffer)",
  0x96: "BYTEARRAY8",
  0x49: "INT (protocol 0 text)",
  0x4c: "LONG (protocol 0 text)",
  0x46: "FLOAT (protocol 0 text)",
  0x53: "STRING (protocol 0 text)",
  0x56: "UNICODE (protocol 0 text)",
  0x70: "PUT (protocol 0 text)",
  0x67: "GET (protocol 0 text)",
  0x54: "BINSTRING (a Python 2 str)",
  0x55: "SHORT_BINSTRING (a Python 2 str)",
};

/**
 * Decodes one pickle from `bytes` (which must end right after its STOP opcode) with the
 * restrictions of the module comment.
 * @throws PickleError naming the offset and the opcode or global refused
 */
export function unpickle(bytes: Uint8Array, o: UnpickleOptions): unknown {
  const lim = { ...DEFAULT_PICKLE_LIMITS, ...o.limits };
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  let pos = 0;
  let op = 0;
  let opAt = 0;
  const fail = (why: string, global: string | null = null): never => {
    throw new PickleError(`pickle byte ${opAt}: ${why}`, global);
  };
  const need = (n: number): number => {
    if (n > bytes.length - pos) {
      fail(`opcode 0x${op.toString(16)} needs ${n} bytes, the pickle ends first (truncated)`);
    }
    const at = pos;
    pos += n;
    return at;
  };
  const u8 = () => bytes[need(1)];
  const u32 = () => dv.getUint32(need(4), true);
  const u64 = () => {
    const v = dv.getBigUint64(need(8), true);
    if (v > BigInt(bytes.length)) fail(`a length of ${v} bytes runs past the pickle`);
    return Number(v);
  };
  const text = (n: number): string => {
    const at = need(n);
    try {
      return utf8.decode(bytes.subarray(at, at + n));
    } catch {
      return fail("a string is not valid UTF-8");
    }
  };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) fail("a GLOBAL name has no end of line (truncated)");
    const s = text(end - pos);
    pos++;
    return s;
  };

  let stack: unknown[] = [];
  const marks: unknown[][] = [];
  const memo = new Map<number, unknown>();
  /** Objects an allowed global's `call` made, with that global's handler (for BUILD). */
  const madeBy = new WeakMap<object, GlobalHandler>();

  const push = (v: unknown) => {
    if (stack.length >= lim.maxStack) fail(`more than ${lim.maxStack} values on the stack`);
    stack.push(v);
  };
  const pop = (): unknown => {
    if (stack.length === 0) fail("the stack is empty (a malformed pickle)");
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) fail("the stack is empty (a malformed pickle)");
    return stack[stack.length - 1];
  };
  /** The values pushed since the last MARK, which is popped. */
  const popMark = (): unknown[] => {
    const items = stack;
    const prev = marks.pop();
    if (prev === undefined) fail("no MARK to close (a malformed pickle)");
    stack = prev!;
    return items;
  };
  const put = (i: number) => {
    if (!memo.has(i) && memo.size >= lim.maxMemo) fail(`more than ${lim.maxMemo} memo entries`);
    memo.set(i, top());
  };
  const get = (i: number) => {
    if (!memo.has(i)) fail(`memo entry ${i} read before it was written`);
    push(memo.get(i));
  };
  const global = (module: string, name: string) => {
    const q = `${module}.${name}`;
    if (!o.globals.has(q)) fail(`refused global ${q}`, q);
    push(new PyGlobal(module, name));
  };
  const setItems = (d: unknown, kv: unknown[]) => {
    if (!(d instanceof PyDict)) fail("SETITEM(S) on something that is not a dict");
    if (kv.length % 2) fail("SETITEMS with an odd number of values");
    for (let i = 0; i < kv.length; i += 2) (d as PyDict).entries.set(kv[i], kv[i + 1]);
  };
  const appendItems = (l: unknown, vs: unknown[]) => {
    if (!(l instanceof PyList)) fail("APPEND(S) on something that is not a list");
    for (const v of vs) (l as PyList).items.push(v);
  };
  const int = (v: bigint): number | bigint =>
    v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  const long = (n: number): number | bigint => {
    if (n > 64) fail(`an integer of ${n} bytes (more than 64 are not read)`);
    const at = need(n);
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[at + i]);
    if (n > 0 && bytes[at + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
    return int(v);
  };

  for (;;) {
    opAt = pos;
    if (pos >= bytes.length) fail("the pickle ends before its STOP opcode (truncated)");
    op = bytes[pos++];
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail(`pickle protocol ${bytes[pos - 1]} (at most 5 is read)`);
        break;
      case 0x95: // FRAME: a length hint only
        u64();
        break;
      case 0x2e: { // STOP
        if (marks.length) fail("STOP inside an open MARK (a malformed pickle)");
        if (stack.length !== 1) fail(`STOP with ${stack.length} values on the stack`);
        if (pos !== bytes.length) fail(`${bytes.length - pos} bytes after STOP`);
        return stack[0];
      }
      case 0x28: // MARK
        if (marks.length >= lim.maxDepth) fail(`nested deeper than ${lim.maxDepth} levels`);
        marks.push(stack);
        stack = [];
        break;
      case 0x30: // POP (of an empty stack: the MARK under it, as Python does)
        if (stack.length === 0 && marks.length) popMark();
        else pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        push(top());
        break;
      case 0x4e: // NONE
        push(null);
        break;
      case 0x88: // NEWTRUE
        push(true);
        break;
      case 0x89: // NEWFALSE
        push(false);
        break;
      case 0x4a: // BININT
        push(dv.getInt32(need(4), true));
        break;
      case 0x4b: // BININT1
        push(u8());
        break;
      case 0x4d: // BININT2
        push(dv.getUint16(need(2), true));
        break;
      case 0x8a: // LONG1
        push(long(u8()));
        break;
      case 0x8b: // LONG4
        push(long(u32()));
        break;
      case 0x47: // BINFLOAT (big-endian)
        push(dv.getFloat64(need(8), false));
        break;
      case 0x58: // BINUNICODE
        push(text(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        push(text(u8()));
        break;
      case 0x8d: // BINUNICODE8
        push(text(u64()));
        break;
      case 0x42: { // BINBYTES
        const n = u32();
        const at = need(n);
        push(bytes.slice(at, at + n));
        break;
      }
      case 0x43: { // SHORT_BINBYTES
        const n = u8();
        const at = need(n);
        push(bytes.slice(at, at + n));
        break;
      }
      case 0x8e: { // BINBYTES8
        const n = u64();
        const at = need(n);
        push(bytes.slice(at, at + n));
        break;
      }
      case 0x29: // EMPTY_TUPLE
        push(new PyTuple([]));
        break;
      case 0x74: // TUPLE
        push(new PyTuple(popMark()));
        break;
      case 0x85: // TUPLE1
        push(new PyTuple([pop()]));
        break;
      case 0x86: { // TUPLE2
        const b = pop(), a = pop();
        push(new PyTuple([a, b]));
        break;
      }
      case 0x87: { // TUPLE3
        const c = pop(), b = pop(), a = pop();
        push(new PyTuple([a, b, c]));
        break;
      }
      case 0x5d: // EMPTY_LIST
        push(new PyList());
        break;
      case 0x6c: { // LIST
        const l = new PyList();
        appendItems(l, popMark());
        push(l);
        break;
      }
      case 0x61: { // APPEND
        const v = pop();
        appendItems(top(), [v]);
        break;
      }
      case 0x65: { // APPENDS
        const vs = popMark();
        appendItems(top(), vs);
        break;
      }
      case 0x7d: // EMPTY_DICT
        push(new PyDict());
        break;
      case 0x64: { // DICT
        const d = new PyDict();
        setItems(d, popMark());
        push(d);
        break;
      }
      case 0x73: { // SETITEM
        const v = pop(), k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: { // SETITEMS
        const kv = popMark();
        setItems(top(), kv);
        break;
      }
      case 0x8f: // EMPTY_SET
        push(new PySet());
        break;
      case 0x90: { // ADDITEMS
        const vs = popMark();
        const s = top();
        if (!(s instanceof PySet)) fail("ADDITEMS on something that is not a set");
        (s as PySet).items.push(...vs);
        break;
      }
      case 0x91: { // FROZENSET
        const s = new PySet();
        s.items.push(...popMark());
        push(s);
        break;
      }
      case 0x71: // BINPUT
        put(u8());
        break;
      case 0x72: // LONG_BINPUT
        put(u32());
        break;
      case 0x94: // MEMOIZE
        put(memo.size);
        break;
      case 0x68: // BINGET
        get(u8());
        break;
      case 0x6a: // LONG_BINGET
        get(u32());
        break;
      case 0x63: { // GLOBAL "module\nname\n"
        const module = line();
        global(module, line());
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop(), module = pop();
        if (typeof module !== "string" || typeof name !== "string") {
          fail("STACK_GLOBAL with a module or name that is not a str");
        }
        global(module as string, name as string);
        break;
      }
      case 0x52: { // REDUCE
        const args = pop(), f = pop();
        if (!(f instanceof PyGlobal)) fail("REDUCE of something that is not a global");
        const g = f as PyGlobal;
        const h = o.globals.get(g.qualified)!;
        if (!h.call) fail(`${g.qualified} is not callable here`, g.qualified);
        if (!(args instanceof PyTuple)) fail(`${g.qualified} called without an argument tuple`);
        const v = h.call!((args as PyTuple).items);
        if (typeof v === "object" && v !== null) madeBy.set(v, h);
        push(v);
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        const obj = top();
        const h = typeof obj === "object" && obj !== null ? madeBy.get(obj) : undefined;
        if (!h?.build) fail("BUILD (sets an object's state) on an object that does not take it");
        h!.build!(obj, state);
        break;
      }
      case 0x51: { // BINPERSID
        const pid = pop();
        if (!o.persistentLoad) fail("a persistent id, and none is expected here");
        push(o.persistentLoad!(pid));
        break;
      }
      default:
        fail(
          REFUSED[op] !== undefined
            ? `opcode ${REFUSED[op]} is refused`
            : `unknown opcode 0x${op.toString(16).padStart(2, "0")}`,
        );
    }
  }
}
