// The dm-multipath constructor table: the params string that follows
// `<start> <length> multipath` in a table line. The grammar is the one
// multipath_ctr, parse_features, parse_hw_handler and parse_priority_group read
// in the kernel's drivers/md/dm-mpath.c:
//
//   <#features> <feature>*  <#hw args> [<hw name> <hw arg>*]
//   <#groups> <initial group>
//   ( <selector> <#selector args> <selector arg>* <#paths> <#path args>
//     ( <device> <path arg>{#path args} ){#paths} ){#groups}
//
// The kernel prints the live table (STATUSTYPE_TABLE in multipath_status) in the
// same grammar but in its own normal form: features in a fixed order,
// `queue_mode rq|mq` left out, the hardware handler's args left out, devices as
// major:minor, selector args with the selector's defaults filled in. Parsing
// and formatting here keep whatever order and spelling they are given, so
// both the kernel's form and a hand-written table round-trip.
import {
  TokenReader,
  MultipathValueError,
  checkCount,
  checkToken,
  checkTokens,
  checkGroupNumber,
  uniformArgCount,
  isCanonicalCount,
  joinTokens,
} from './tokens';

/** The I/O path dm-multipath uses: bio-based, or request-based (`mq` is the kernel's old alias of `rq`). */
export type QueueMode = 'bio' | 'rq' | 'mq';

/** One entry of the table's feature args, in the order given. */
export type MultipathFeature =
  | { readonly kind: 'queue_if_no_path' }
  | { readonly kind: 'retain_attached_hw_handler' }
  | { readonly kind: 'queue_mode'; readonly mode: QueueMode }
  /** The kernel accepts 1..50. */
  | { readonly kind: 'pg_init_retries'; readonly value: number }
  /** The kernel accepts 0..60000. */
  | { readonly kind: 'pg_init_delay_msecs'; readonly value: number }
  /** A token this model does not know; kept as one token so that it round-trips. */
  | { readonly kind: 'unknown'; readonly token: string };

/** The hardware handler (scsi_dh) and its args; the kernel never prints the args back. */
export interface HardwareHandler {
  /** scsi_dh name, e.g. `alua`, `emc`, `rdac`. */
  readonly name: string;
  /** Args passed to the handler after its name. */
  readonly args: readonly string[];
}

/** One path in a table: the device as given and its path-selector args. */
export interface TablePath {
  /** `major:minor` (the kernel's form) or a device path as written, e.g. `/dev/sdb`. */
  readonly device: string;
  /** Per-path selector args (round-robin: repeat_count; service-time: repeat_count relative_throughput). */
  readonly args: readonly string[];
}

/** One priority group of a table. */
export interface TablePathGroup {
  /** Path selector name: `round-robin`, `queue-length`, `service-time`, … */
  readonly selector: string;
  /** Args for the selector itself (not per path). */
  readonly selectorArgs: readonly string[];
  /** At least one path; every path has the same number of args (the table states it once per group). */
  readonly paths: readonly TablePath[];
}

/** The params of a `multipath` target line, parsed. */
export interface MultipathTable {
  /** Feature args in order. */
  readonly features: readonly MultipathFeature[];
  /** The hardware handler, or null for none (`0`). */
  readonly hardwareHandler: HardwareHandler | null;
  /** 1-based number of the group to start with; 0 exactly when there are no groups. */
  readonly initialGroup: number;
  /** The priority groups, numbered from 1 in this order. */
  readonly groups: readonly TablePathGroup[];
}

/** Formatting options shared by the table and status builders. */
export interface FormatOptions {
  /** End the text with a space, as the kernel does (default true). */
  readonly trailingSpace?: boolean;
}

const KNOWN_FEATURES = ['queue_if_no_path', 'retain_attached_hw_handler', 'queue_mode', 'pg_init_retries', 'pg_init_delay_msecs'] as const;
const QUEUE_MODES: readonly QueueMode[] = ['bio', 'rq', 'mq'];

// The kernel compares feature names with strcasecmp; a differently cased known
// name would be read by the kernel as that feature (with its value), but here
// as an unknown token, so it is refused rather than silently misread.
function isKnownNameInOtherCase(token: string): boolean {
  const lower = token.toLowerCase();
  return lower !== token && (KNOWN_FEATURES as readonly string[]).includes(lower);
}

/** Parses the params of a multipath table (the text after `multipath`). Throws MultipathParseError. */
export function parseMultipathTable(params: string): MultipathTable {
  const r = new TokenReader('multipath table', params);

  const featureStart = r.index + 1;
  const featureTokens = r.group('feature args');
  const features = parseFeatures(featureTokens, (i, expected) => r.fail(featureStart + i, expected));

  const [hwName, ...hwArgs] = r.group('hardware handler args');
  const hardwareHandler = hwName === undefined ? null : { name: hwName, args: hwArgs };

  const groupCount = r.count('the number of priority groups');
  const initialGroup = r.groupNumber('the initial priority group number', groupCount);

  const groups: TablePathGroup[] = [];
  for (let g = 1; g <= groupCount; g++) {
    const selector = r.word(`the path selector name of group ${g}`);
    const selectorArgs = r.group(`selector args of group ${g}`);
    // parse_priority_group: 1..1024 paths.
    const pathCount = r.count(`the number of paths in group ${g}`, 1);
    const argCount = r.count(`the number of per-path args in group ${g}`);
    const paths: TablePath[] = [];
    for (let p = 1; p <= pathCount; p++) {
      const device = r.word(`the device of path ${p} in group ${g}`);
      paths.push({ device, args: r.words(argCount, `arg of path ${p} in group ${g}`) });
    }
    groups.push({ selector, selectorArgs, paths });
  }
  r.end();
  return { features, hardwareHandler, initialGroup, groups };
}

function parseFeatures(tokens: readonly string[], fail: (i: number, expected: string) => never): MultipathFeature[] {
  const out: MultipathFeature[] = [];
  const uint = (i: number, what: string): number => {
    const t = tokens[i];
    if (t === undefined || !isCanonicalCount(t)) fail(i, `the ${what} value (an unsigned decimal) inside the feature args`);
    return Number(t);
  };
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i] as string;
    switch (t) {
      case 'queue_if_no_path':
      case 'retain_attached_hw_handler':
        out.push({ kind: t });
        break;
      case 'queue_mode': {
        const mode = tokens[i + 1];
        if (mode === undefined || !(QUEUE_MODES as readonly string[]).includes(mode)) {
          fail(i + 1, 'bio, rq or mq after queue_mode inside the feature args');
        }
        out.push({ kind: 'queue_mode', mode: mode as QueueMode });
        i++;
        break;
      }
      case 'pg_init_retries':
      case 'pg_init_delay_msecs':
        out.push({ kind: t, value: uint(i + 1, t) });
        i++;
        break;
      default:
        if (isKnownNameInOtherCase(t)) fail(i, `a feature name in lower case (${t.toLowerCase()})`);
        out.push({ kind: 'unknown', token: t });
    }
  }
  return out;
}

/** The feature args as tokens, without the leading count. Throws MultipathValueError. */
function featureTokens(features: readonly MultipathFeature[], field = 'features'): string[] {
  const out: string[] = [];
  features.forEach((f, i) => {
    const at = `${field}[${i}]`;
    switch (f.kind) {
      case 'queue_if_no_path':
      case 'retain_attached_hw_handler':
        out.push(f.kind);
        break;
      case 'queue_mode':
        if (!QUEUE_MODES.includes(f.mode)) throw new MultipathValueError(`${at}.mode`, f.mode, 'expected bio, rq or mq');
        out.push('queue_mode', f.mode);
        break;
      case 'pg_init_retries':
      case 'pg_init_delay_msecs':
        out.push(f.kind, checkCount(`${at}.value`, f.value));
        break;
      case 'unknown': {
        const token = checkToken(`${at}.token`, f.token);
        if ((KNOWN_FEATURES as readonly string[]).includes(token.toLowerCase())) {
          throw new MultipathValueError(`${at}.token`, token, `is a known feature; use { kind: '${token.toLowerCase()}' }`);
        }
        out.push(token);
        break;
      }
      default:
        throw new MultipathValueError(`${at}.kind`, (f as { kind: unknown }).kind, 'is not a multipath feature kind');
    }
  });
  return out;
}

/** Formats a table's params (the text after `multipath`). Throws MultipathValueError on unsafe or inconsistent values. */
export function formatMultipathTable(table: MultipathTable, options: FormatOptions = {}): string {
  const out: string[] = [];
  const features = featureTokens(table.features);
  out.push(String(features.length), ...features);

  const hw = table.hardwareHandler;
  if (hw === null) {
    out.push('0');
  } else {
    const name = checkToken('hardwareHandler.name', hw.name);
    const args = checkTokens('hardwareHandler.args', hw.args);
    out.push(String(1 + args.length), name, ...args);
  }

  out.push(String(table.groups.length), checkGroupNumber('initialGroup', table.initialGroup, table.groups.length));
  table.groups.forEach((g, gi) => {
    const at = `groups[${gi}]`;
    const selectorArgs = checkTokens(`${at}.selectorArgs`, g.selectorArgs);
    out.push(checkToken(`${at}.selector`, g.selector), String(selectorArgs.length), ...selectorArgs);
    out.push(String(g.paths.length), String(uniformArgCount(at, g.paths, (p) => p.args, 'args')));
    g.paths.forEach((p, pi) => {
      out.push(checkToken(`${at}.paths[${pi}].device`, p.device), ...checkTokens(`${at}.paths[${pi}].args`, p.args));
    });
  });
  return joinTokens(out, options.trailingSpace ?? true);
}

/** The table's features folded into one object (the last occurrence wins, as in the kernel's parse_features). */
export interface FeatureSummary {
  /** queue_if_no_path is set. */
  readonly queueIfNoPath: boolean;
  /** retain_attached_hw_handler is set. */
  readonly retainAttachedHwHandler: boolean;
  /** The queue_mode given, if any. */
  readonly queueMode: QueueMode | undefined;
  /** pg_init_retries, if given. */
  readonly pgInitRetries: number | undefined;
  /** pg_init_delay_msecs, if given. */
  readonly pgInitDelayMsecs: number | undefined;
  /** Tokens the model does not know, in order. */
  readonly unknown: readonly string[];
}

/** Folds a feature list into a FeatureSummary. */
export function summarizeFeatures(features: readonly MultipathFeature[]): FeatureSummary {
  let queueIfNoPath = false;
  let retainAttachedHwHandler = false;
  let queueMode: QueueMode | undefined;
  let pgInitRetries: number | undefined;
  let pgInitDelayMsecs: number | undefined;
  const unknown: string[] = [];
  for (const f of features) {
    if (f.kind === 'queue_if_no_path') queueIfNoPath = true;
    else if (f.kind === 'retain_attached_hw_handler') retainAttachedHwHandler = true;
    else if (f.kind === 'queue_mode') queueMode = f.mode;
    else if (f.kind === 'pg_init_retries') pgInitRetries = f.value;
    else if (f.kind === 'pg_init_delay_msecs') pgInitDelayMsecs = f.value;
    else unknown.push(f.token);
  }
  return { queueIfNoPath, retainAttachedHwHandler, queueMode, pgInitRetries, pgInitDelayMsecs, unknown };
}
