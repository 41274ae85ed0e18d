// The token layer shared by the table and status parsers and builders.
//
// The kernel splits a target's parameters on whitespace and honours backslash
// escapes (dm_split_args in drivers/md/dm-table.c). The kernel's own output
// never contains either, so a token here is a non-empty run of characters that
// has no whitespace, no backslash and no NUL. Anything else is refused both when
// parsing and when building, so a value can never smuggle extra tokens into a
// table that the kernel would then read differently.

/** What a parser was reading when it failed: a table, a status, or a whole dmsetup line. */
export type MultipathParseSubject = 'multipath table' | 'multipath status' | 'target line';

/** Malformed dm-multipath text; names the offending token, its index and what was expected. */
export class MultipathParseError extends Error {
  /** The offending token, or undefined when the input ended too early. */
  readonly token: string | undefined;
  /** Zero-based index of that token among the whitespace-separated tokens. */
  readonly index: number;
  /** A short description of what the grammar wanted at that point. */
  readonly expected: string;
  /** The full text that was being parsed. */
  readonly input: string;

  constructor(subject: MultipathParseSubject, input: string, index: number, token: string | undefined, expected: string) {
    const found = token === undefined ? 'the end of the input' : JSON.stringify(token);
    // A map with hundreds of paths has a long table; the message quotes only its start.
    const quoted = input.length > 200 ? `${JSON.stringify(input.slice(0, 200))}…` : JSON.stringify(input);
    super(`${subject}: expected ${expected} at token ${index}, found ${found} in ${quoted}`);
    this.name = new.target.name;
    this.token = token;
    this.index = index;
    this.expected = expected;
    this.input = input;
  }
}

/** A value that cannot be written into a table or message safely (it would inject tokens, or is not a count). */
export class MultipathValueError extends Error {
  /** Where the value sits in the structure being formatted ('groups[0].paths[1].device'). */
  readonly field: string;
  /** The value as given. */
  readonly value: unknown;

  constructor(field: string, value: unknown, reason: string) {
    super(`${field}: ${reason} (got ${describe(value)})`);
    this.name = new.target.name;
    this.field = field;
    this.value = value;
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return String(value);
  return typeof value;
}

// isspace() in the kernel's ctype: space, \t, \n, \v, \f, \r.
const SPACE = /[ \t\n\v\f\r]+/;
const BAD_TOKEN_CHAR = /[ \t\n\v\f\r\\\0]/;
const CANONICAL_UINT = /^(0|[1-9][0-9]*)$/;

/** Whether `s` is an unsigned decimal as the kernel's %u prints it, below 2^53. */
export function isCanonicalCount(s: string): boolean {
  return CANONICAL_UINT.test(s) && Number.isSafeInteger(Number(s));
}

/** Whether `s` can stand as one token: non-empty, no whitespace, backslash or NUL. */
export function isSafeToken(s: string): boolean {
  return s.length > 0 && !BAD_TOKEN_CHAR.test(s);
}

/** Returns `value` if it is a safe token; throws MultipathValueError otherwise. */
export function checkToken(field: string, value: unknown): string {
  if (typeof value !== 'string') throw new MultipathValueError(field, value, 'expected a string');
  if (value.length === 0) throw new MultipathValueError(field, value, 'an empty string would vanish from the table');
  const bad = BAD_TOKEN_CHAR.exec(value);
  if (bad) {
    const what = bad[0] === '\\' ? 'a backslash (the kernel treats it as an escape)' : bad[0] === '\0' ? 'a NUL byte' : 'whitespace';
    throw new MultipathValueError(field, value, `contains ${what}, which would change how the kernel splits the table`);
  }
  return value;
}

/** checkToken over a list; fields are named `field[i]`. */
export function checkTokens(field: string, values: readonly unknown[]): string[] {
  return values.map((v, i) => checkToken(`${field}[${i}]`, v));
}

/** A group number (initial or current): 0 exactly when there are no groups, as multipath_ctr requires. */
export function checkGroupNumber(field: string, value: unknown, groupCount: number): string {
  const text = checkCount(field, value);
  if ((groupCount === 0) !== (value === 0)) throw new MultipathValueError(field, value, 'must be 0 exactly when there are no groups');
  return text;
}

/**
 * The per-path arg count a group states once for all its paths: the groups
 * need at least one path (parse_priority_group) and every path that many args.
 */
export function uniformArgCount<P>(field: string, paths: readonly P[], argsOf: (p: P) => readonly unknown[], argsName: string): number {
  const first = paths[0];
  if (first === undefined) throw new MultipathValueError(`${field}.paths`, paths.length, 'a group needs at least one path');
  const n = argsOf(first).length;
  paths.forEach((p, i) => {
    const len = argsOf(p).length;
    if (len !== n) throw new MultipathValueError(`${field}.paths[${i}].${argsName}`, len, `every path in a group needs the same number of ${argsName} (${n}, as path 0)`);
  });
  return n;
}

/** Returns `value` formatted as the kernel prints an unsigned count (%u); throws MultipathValueError otherwise. */
export function checkCount(field: string, value: unknown): string {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new MultipathValueError(field, value, 'expected a non-negative integer');
  }
  return String(value);
}

/** Splits on the kernel's whitespace; leading and trailing whitespace yield no empty tokens. */
export function splitTokens(s: string): string[] {
  const trimmed = s.replace(/^[ \t\n\v\f\r]+/, '').replace(/[ \t\n\v\f\r]+$/, '');
  return trimmed === '' ? [] : trimmed.split(SPACE);
}

/**
 * Joins tokens the way the kernel emits them (DMEMIT("%s ") per field in
 * drivers/md/dm-mpath.c): each token followed by one space, so the text ends
 * in a space. `trailingSpace: false` drops that last space.
 */
export function joinTokens(tokens: readonly string[], trailingSpace: boolean): string {
  if (tokens.length === 0) return '';
  const joined = tokens.join(' ');
  return trailingSpace ? `${joined} ` : joined;
}

/** A cursor over the tokens of one string; every read names what it expects, for the error. */
export class TokenReader {
  private readonly tokens: string[];
  private pos = 0;

  constructor(
    private readonly subject: MultipathParseSubject,
    private readonly input: string,
  ) {
    if (typeof input !== 'string') throw new TypeError(`${subject}: expected a string, got ${typeof input}`);
    this.tokens = splitTokens(input);
    const bad = this.tokens.findIndex((t) => !isSafeToken(t));
    if (bad >= 0) this.fail(bad, 'a token without a backslash or NUL byte');
  }

  /** Index of the next token. */
  get index(): number {
    return this.pos;
  }

  /** Throws a MultipathParseError about the token at `index` (default: the next one). */
  fail(index: number, expected: string): never {
    throw new MultipathParseError(this.subject, this.input, index, this.tokens[index], expected);
  }

  /** The next token, whatever it is. */
  word(expected: string): string {
    const t = this.tokens[this.pos];
    if (t === undefined) this.fail(this.pos, expected);
    this.pos++;
    return t;
  }

  /** The next token, which must be one of `choices`. */
  oneOf<T extends string>(choices: readonly T[], expected: string): T {
    const t = this.tokens[this.pos];
    if (t === undefined || !(choices as readonly string[]).includes(t)) this.fail(this.pos, expected);
    this.pos++;
    return t as T;
  }

  /**
   * The next token as an unsigned decimal, written as the kernel's %u writes it
   * (no sign, no leading zeros), so that formatting it again gives the same text.
   */
  count(expected: string, min = 0): number {
    const t = this.tokens[this.pos];
    if (t === undefined || !isCanonicalCount(t)) this.fail(this.pos, `${expected} (an unsigned decimal below 2^53)`);
    const n = Number(t);
    if (n < min) this.fail(this.pos, `${expected} (at least ${min})`);
    this.pos++;
    return n;
  }

  /** A group number (initial or current): 0 exactly when there are no groups, as multipath_ctr requires. */
  groupNumber(expected: string, groupCount: number): number {
    const at = this.pos;
    const n = this.count(expected);
    if ((groupCount === 0) !== (n === 0)) {
      this.fail(at, groupCount === 0 ? `${expected} 0 (there are no groups)` : `${expected} of at least 1`);
    }
    return n;
  }

  /** A count followed by that many tokens, as in the kernel's dm_read_arg_group. */
  group(expected: string): string[] {
    const n = this.count(`the number of ${expected}`);
    return this.words(n, expected);
  }

  /** `n` tokens of any content. */
  words(n: number, expected: string): string[] {
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push(this.word(`${expected} ${i + 1} of ${n}`));
    return out;
  }

  /** Whether any tokens are left. */
  get more(): boolean {
    return this.pos < this.tokens.length;
  }

  /** Throws unless every token has been read. */
  end(): void {
    if (this.more) this.fail(this.pos, 'the end of the input');
  }
}
