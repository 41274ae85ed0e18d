// `mpath-watchdog create NAME --path … ` and `remove NAME`: a one-group
// multipath map built with formatMultipathTable, sized from the first path.
import { readFile } from 'node:fs/promises';
import { DeviceMapper } from '../dm/control';
import { MultipathMap } from '../multipath/map';
import { identifyPath, type PathIdentity } from '../multipath/paths';
import { formatMultipathTable, type MultipathFeature, type QueueMode } from '../multipath/table';
import { EXIT, UsageError, parse, parseChoice, positionals } from './args';
import { COMMON_OPTIONS, JSON_OPTION, type Command } from './command';
import { CliError, type CliIo } from './output';

/** Path selectors `create` offers, with the per-path args it gives each (repeat_count [, relative_throughput]). */
export const SELECTORS = { 'round-robin': ['1'], 'queue-length': ['1'], 'service-time': ['1', '1'] } as const;
/** A selector name `create` accepts. */
export type SelectorName = keyof typeof SELECTORS;

/** What `create` builds a table from. */
export interface CreateSpec {
  paths: readonly string[];
  selector: SelectorName;
  queueIfNoPath: boolean;
  mode: Exclude<QueueMode, 'mq'>;
}

/** The multipath table params for `spec` over resolved devnos. */
export function createTableParams(spec: CreateSpec, devnos: readonly string[]): string {
  const features: MultipathFeature[] = [];
  if (spec.queueIfNoPath) features.push({ kind: 'queue_if_no_path' });
  features.push({ kind: 'queue_mode', mode: spec.mode });
  return formatMultipathTable({
    features,
    hardwareHandler: null,
    initialGroup: 1,
    groups: [{ selector: spec.selector, selectorArgs: [], paths: devnos.map((device) => ({ device, args: SELECTORS[spec.selector] })) }],
  }, { trailingSpace: false });
}

async function sizeSectors(p: PathIdentity): Promise<number> {
  return Number((await readFile(`/sys/class/block/${p.name}/size`, 'utf8')).trim());
}

const CREATE_OPTIONS = {
  ...COMMON_OPTIONS,
  ...JSON_OPTION,
  path: { type: 'string', multiple: true },
  selector: { type: 'string', default: 'round-robin' },
  'queue-if-no-path': { type: 'boolean' },
  mode: { type: 'string', default: 'rq' },
  force: { type: 'boolean' },
} as const;

/** The create subcommand. */
export const createCommand: Command = {
  name: 'create',
  summary: 'create a multipath map over paths',
  help: `usage: mpath-watchdog create NAME --path PATH --path PATH … [options]

Creates multipath map NAME with one priority group holding every --path
(8:16, sdb or /dev/sdb). Its size is the first path's size from sysfs. Paths of
different sizes, or with different WWIDs, are refused (--force accepts
different WWIDs).

options:
  --path PATH            a path (repeat for each; at least one)
  --selector NAME        round-robin (default), queue-length or service-time
  --queue-if-no-path     queue I/O while no path is usable (default: fail it)
  --mode bio|rq          bio-based or request-based (default rq)
  --force                accept paths whose WWIDs differ
  --json                 print the created map as JSON
  -h, --help             this text`,
  async run(argv, io: CliIo) {
    const { values, positionals: pos } = parse('create', argv, CREATE_OPTIONS);
    const [name] = positionals('create', pos, ['NAME']) as [string];
    const specs = values.path ?? [];
    if (specs.length === 0) throw new UsageError('create', 'missing --path (give one per path)');
    const spec: CreateSpec = {
      paths: specs,
      selector: parseChoice(values.selector, 'selector', Object.keys(SELECTORS) as SelectorName[], 'create'),
      queueIfNoPath: values['queue-if-no-path'] ?? false,
      mode: parseChoice(values.mode, 'mode', ['bio', 'rq'] as const, 'create'),
    };
    const ids: PathIdentity[] = [];
    for (const s of specs) ids.push(await identifyPath(s));
    const first = ids[0] as PathIdentity;
    const size = await sizeSectors(first);
    if (!(size > 0)) throw new CliError(`path ${first.name} has size 0`);
    for (const p of ids.slice(1)) {
      if (ids.filter((q) => q.devno === p.devno).length > 1) throw new CliError(`path ${p.name} (${p.devno}) is given twice`);
      const s = await sizeSectors(p);
      if (s !== size) throw new CliError(`path ${p.name} has ${s} sectors but ${first.name} has ${size}: not paths to one LUN`);
      if (!values.force && p.wwid !== undefined && first.wwid !== undefined && p.wwid !== first.wwid) {
        throw new CliError(`path ${p.name} has WWID ${p.wwid} but ${first.name} has ${first.wwid}: not paths to one LUN (--force to create anyway)`);
      }
    }
    const params = createTableParams(spec, ids.map((p) => p.devno));
    const dm = new DeviceMapper();
    const info = await dm.create(name, { table: [{ start: 0, length: size, type: 'multipath', params }] });
    const out = { name, devno: `${info.major}:${info.minor}`, device: await dm.devicePath(name), sizeSectors: size, table: `0 ${size} multipath ${params}` };
    if (values.json) io.stdout.write(`${JSON.stringify(out)}\n`);
    else io.stdout.write(`created ${name} (${out.devno}, ${out.device}): ${out.table}\n`);
    return EXIT.ok;
  },
};

const REMOVE_OPTIONS = { ...COMMON_OPTIONS, deferred: { type: 'boolean' } } as const;

/** The remove subcommand. */
export const removeCommand: Command = {
  name: 'remove',
  summary: 'remove a multipath map',
  help: `usage: mpath-watchdog remove NAME [--deferred]

Removes multipath map NAME. A device that is not a multipath map is refused, so
this never removes another kind of dm device.

options:
  --deferred  if the map is open, remove it when its last user closes it
  -h, --help  this text`,
  async run(argv, io: CliIo) {
    const { values, positionals: pos } = parse('remove', argv, REMOVE_OPTIONS);
    const [name] = positionals('remove', pos, ['NAME']) as [string];
    const dm = new DeviceMapper();
    await MultipathMap.open(dm, name);
    const info = await dm.remove(name, values.deferred ? { deferred: true } : {});
    io.stdout.write(info.deferredRemove ? `${name}: removal deferred until it is closed\n` : `removed ${name}\n`);
    return EXIT.ok;
  },
};
