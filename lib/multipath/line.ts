// Whole target lines, `<start> <length> <target type> <params>`, as dmsetup
// prints them (dmsetup table/status) and as the dm ioctls carry them (struct
// dm_target_spec plus the params string). The params keep every byte after the
// single space that follows the target type, the kernel's trailing space
// included, so a line formats back to exactly what was parsed.
import { MultipathParseError, MultipathValueError, checkCount, checkToken, isCanonicalCount, isSafeToken } from './tokens';
import { parseMultipathTable, formatMultipathTable, type MultipathTable, type FormatOptions } from './table';
import { parseMultipathStatus, formatMultipathStatus, type MultipathStatus } from './status';

/** One target line with its params left as text. */
export interface TargetLine {
  /** First sector the target covers. */
  readonly start: number;
  /** Number of sectors it covers. */
  readonly length: number;
  /** Target type, e.g. `multipath`. */
  readonly targetType: string;
  /** The target's params, byte for byte. */
  readonly params: string;
}

/** A multipath target line with its params parsed by `P`. */
export interface MultipathLine<P> {
  /** First sector. */
  readonly start: number;
  /** Number of sectors. */
  readonly length: number;
  /** The parsed params. */
  readonly params: P;
}

/** Splits one target line; a final newline (as dmsetup prints) is dropped. Throws MultipathParseError. */
export function parseTargetLine(line: string): TargetLine {
  const text = line.endsWith('\n') ? line.slice(0, -1) : line;
  // Token indexes in errors count single-space separated fields, as dmsetup writes them.
  const parts = text.split(' ');
  const fail = (index: number, expected: string): never => {
    throw new MultipathParseError('target line', line, index, parts[index], expected);
  };
  const [start, length, targetType] = parts;
  if (start === undefined || !isCanonicalCount(start)) fail(0, 'the start sector (an unsigned decimal)');
  if (length === undefined || !isCanonicalCount(length)) fail(1, 'the length in sectors (an unsigned decimal)');
  if (targetType === undefined || !isSafeToken(targetType)) fail(2, 'the target type');
  const newline = parts.findIndex((p) => p.includes('\n'));
  if (newline >= 0) fail(newline, 'one line (a multipath table has a single target)');
  return { start: Number(start), length: Number(length), targetType: targetType as string, params: parts.slice(3).join(' ') };
}

/** Joins a target line (no final newline). Throws MultipathValueError on unsafe values. */
export function formatTargetLine(t: TargetLine): string {
  const start = checkCount('start', t.start);
  const length = checkCount('length', t.length);
  const type = checkToken('targetType', t.targetType);
  if (/\n/.test(t.params)) throw new MultipathValueError('params', t.params, 'a newline would start another table line');
  return `${start} ${length} ${type} ${t.params}`;
}

function multipathParams(line: string): TargetLine {
  const t = parseTargetLine(line);
  if (t.targetType !== 'multipath') {
    throw new MultipathParseError('target line', line, 2, t.targetType, 'the target type multipath');
  }
  return t;
}

/** Parses a `start length multipath <table params>` line. Throws MultipathParseError. */
export function parseMultipathTableLine(line: string): MultipathLine<MultipathTable> {
  const t = multipathParams(line);
  return { start: t.start, length: t.length, params: parseMultipathTable(t.params) };
}

/** Formats a `start length multipath <table params>` line. Throws MultipathValueError. */
export function formatMultipathTableLine(line: MultipathLine<MultipathTable>, options: FormatOptions = {}): string {
  return formatTargetLine({ start: line.start, length: line.length, targetType: 'multipath', params: formatMultipathTable(line.params, options) });
}

/** Parses a `start length multipath <status params>` line. Throws MultipathParseError. */
export function parseMultipathStatusLine(line: string): MultipathLine<MultipathStatus> {
  const t = multipathParams(line);
  return { start: t.start, length: t.length, params: parseMultipathStatus(t.params) };
}

/** Formats a `start length multipath <status params>` line. Throws MultipathValueError. */
export function formatMultipathStatusLine(line: MultipathLine<MultipathStatus>, options: FormatOptions = {}): string {
  return formatTargetLine({ start: line.start, length: line.length, targetType: 'multipath', params: formatMultipathStatus(line.params, options) });
}
