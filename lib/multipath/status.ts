// The dm-multipath status (STATUSTYPE_INFO in multipath_status,
// drivers/md/dm-mpath.c), i.e. what `dmsetup status` prints after
// `<start> <length> multipath`:
//
//   2 <queue_io 0|1> <pg_init_count>   <#hw status args> <hw status arg>*
//   <#groups> <current group>
//   ( <A|E|D> <#selector status args> <selector status arg>* <#paths> <#path info args>
//     ( <device> <A|F> <fail count> <path info arg>{#path info args} ){#paths} ){#groups}
//
// Every field is followed by one space, so the kernel's text ends in a space.
import { TokenReader, MultipathValueError, checkCount, checkToken, checkTokens, checkGroupNumber, uniformArgCount, joinTokens } from './tokens';
import type { FormatOptions } from './table';

/** A priority group's state: A (current), E (enabled, may be used), D (disabled, bypassed). */
export type GroupState = 'active' | 'enabled' | 'disabled';

/** A path's state: A (usable) or F (failed). */
export type PathState = 'active' | 'failed';

/** One path in the status. */
export interface StatusPath {
  /** `major:minor`, as the kernel prints every path. */
  readonly device: string;
  /** A or F. */
  readonly state: PathState;
  /** How many times this path has failed since the table was loaded. */
  readonly failCount: number;
  /** The selector's per-path info (queue-length: in-flight count; service-time: in-flight bytes, relative throughput). */
  readonly selectorArgs: readonly string[];
}

/** One priority group in the status. */
export interface StatusPathGroup {
  /** A, E or D. */
  readonly state: GroupState;
  /** The selector's group-level status args. */
  readonly selectorArgs: readonly string[];
  /** At least one path; all with the same number of selector args. */
  readonly paths: readonly StatusPath[];
}

/** The params of a multipath target's status, parsed. */
export interface MultipathStatus {
  /** I/O is being queued inside the target (MPATHF_QUEUE_IO: no path chosen yet, or pg_init pending). */
  readonly queueIO: boolean;
  /** How many times pg_init ran for the current group. */
  readonly pgInitCount: number;
  /** The hardware handler's status args (the kernel prints none). */
  readonly hardwareHandlerArgs: readonly string[];
  /** 1-based number of the current group (or the next one, or 1 before any I/O); 0 exactly when there are no groups. */
  readonly currentGroup: number;
  /** The priority groups, numbered from 1 in this order. */
  readonly groups: readonly StatusPathGroup[];
}

const GROUP_STATE: Readonly<Record<string, GroupState>> = { A: 'active', E: 'enabled', D: 'disabled' };
const GROUP_CHAR: Readonly<Record<GroupState, string>> = { active: 'A', enabled: 'E', disabled: 'D' };
const PATH_STATE: Readonly<Record<string, PathState>> = { A: 'active', F: 'failed' };
const PATH_CHAR: Readonly<Record<PathState, string>> = { active: 'A', failed: 'F' };

/** Parses the params of a multipath status (the text after `multipath`). Throws MultipathParseError. */
export function parseMultipathStatus(params: string): MultipathStatus {
  const r = new TokenReader('multipath status', params);

  // multipath_status always prints exactly two feature fields for INFO.
  const featureCountAt = r.index;
  if (r.count('the number of feature fields') !== 2) r.fail(featureCountAt, 'the number of feature fields, 2 (queue_io and pg_init_count)');
  const queueIO = r.oneOf(['0', '1'], 'the queue_io flag (0 or 1)') === '1';
  const pgInitCount = r.count('pg_init_count');
  const hardwareHandlerArgs = r.group('hardware handler status args');

  const groupCount = r.count('the number of priority groups');
  const currentGroup = r.groupNumber('the current priority group number', groupCount);

  const groups: StatusPathGroup[] = [];
  for (let g = 1; g <= groupCount; g++) {
    const state = GROUP_STATE[r.oneOf(['A', 'E', 'D'], `the state of group ${g} (A, E or D)`)] as GroupState;
    const selectorArgs = r.group(`selector status args of group ${g}`);
    const pathCount = r.count(`the number of paths in group ${g}`, 1);
    const infoCount = r.count(`the number of per-path selector info args in group ${g}`);
    const paths: StatusPath[] = [];
    for (let p = 1; p <= pathCount; p++) {
      const device = r.word(`the device of path ${p} in group ${g}`);
      const pathState = PATH_STATE[r.oneOf(['A', 'F'], `the state of path ${p} in group ${g} (A or F)`)] as PathState;
      const failCount = r.count(`the fail count of path ${p} in group ${g}`);
      paths.push({ device, state: pathState, failCount, selectorArgs: r.words(infoCount, `selector info arg of path ${p} in group ${g}`) });
    }
    groups.push({ state, selectorArgs, paths });
  }
  r.end();
  return { queueIO, pgInitCount, hardwareHandlerArgs, currentGroup, groups };
}

/** Formats a status as the kernel prints it. Throws MultipathValueError on unsafe or inconsistent values. */
export function formatMultipathStatus(status: MultipathStatus, options: FormatOptions = {}): string {
  const out: string[] = ['2', status.queueIO ? '1' : '0', checkCount('pgInitCount', status.pgInitCount)];
  const hwArgs = checkTokens('hardwareHandlerArgs', status.hardwareHandlerArgs);
  out.push(String(hwArgs.length), ...hwArgs);
  out.push(String(status.groups.length), checkGroupNumber('currentGroup', status.currentGroup, status.groups.length));
  status.groups.forEach((g, gi) => {
    const at = `groups[${gi}]`;
    const state = GROUP_CHAR[g.state];
    if (state === undefined) throw new MultipathValueError(`${at}.state`, g.state, 'expected active, enabled or disabled');
    const selectorArgs = checkTokens(`${at}.selectorArgs`, g.selectorArgs);
    out.push(state, String(selectorArgs.length), ...selectorArgs);
    out.push(String(g.paths.length), String(uniformArgCount(at, g.paths, (p) => p.selectorArgs, 'selectorArgs')));
    g.paths.forEach((p, pi) => {
      const pat = `${at}.paths[${pi}]`;
      const pstate = PATH_CHAR[p.state];
      if (pstate === undefined) throw new MultipathValueError(`${pat}.state`, p.state, 'expected active or failed');
      out.push(checkToken(`${pat}.device`, p.device), pstate, checkCount(`${pat}.failCount`, p.failCount));
      out.push(...checkTokens(`${pat}.selectorArgs`, p.selectorArgs));
    });
  });
  return joinTokens(out, options.trailingSpace ?? true);
}
