// `mpath-watchdog status [MAP]`: every multipath map (or one), its groups and
// its paths with state, fail count, block device name and WWID.
import { DeviceMapper } from '../dm/control';
import { MultipathMap } from '../multipath/map';
import { summarizeFeatures } from '../multipath/table';
import { parse, positionals, EXIT } from './args';
import { COMMON_OPTIONS, JSON_OPTION, type Command } from './command';
import { columns, type CliIo } from './output';

/** One path as `status` reports it. */
export interface StatusPathReport {
  devno: string;
  /** Block device name, or null when sysfs has none. */
  name: string | null;
  wwid: string | null;
  state: 'active' | 'failed';
  failCount: number;
}

/** One priority group as `status` reports it. */
export interface StatusGroupReport {
  /** 1-based. */
  number: number;
  state: 'active' | 'enabled' | 'disabled';
  selector: string;
  paths: StatusPathReport[];
}

/** One map as `status --json` prints it. */
export interface StatusMapReport {
  name: string;
  devno: string;
  /** Kernel name (dm-N). */
  device: string;
  sizeSectors: number;
  queueMode: string;
  queueIfNoPath: boolean;
  currentGroup: number;
  groups: StatusGroupReport[];
}

/** Names of the devices whose live table is one multipath target. */
export async function multipathMapNames(dm: DeviceMapper): Promise<string[]> {
  const names: string[] = [];
  for (const d of await dm.list()) {
    // A device removed between list and table is simply not reported.
    const table = await dm.table(d.name).catch(() => []);
    if (table.length === 1 && table[0]?.type === 'multipath') names.push(d.name);
  }
  return names.sort();
}

/** Collects the report of one map; DmError ENXIO when it is missing, MultipathValueError when not multipath. */
export async function mapReport(dm: DeviceMapper, name: string): Promise<StatusMapReport> {
  const mp = await MultipathMap.open(dm, name);
  const [info, table, status, paths, targets] = [await dm.info(name), await mp.table(), await mp.status(), await mp.paths(), await dm.table(name)];
  const features = summarizeFeatures(table.features);
  return {
    name,
    devno: `${info.major}:${info.minor}`,
    device: `dm-${info.minor}`,
    sizeSectors: targets[0]?.length ?? 0,
    queueMode: features.queueMode ?? 'rq',
    queueIfNoPath: features.queueIfNoPath,
    currentGroup: status.currentGroup,
    groups: status.groups.map((g, i) => ({
      number: i + 1,
      state: g.state,
      selector: table.groups[i]?.selector ?? '?',
      paths: paths.filter((p) => p.group === i + 1).map((p) => ({
        devno: p.devno, name: p.name ?? null, wwid: p.wwid ?? null, state: p.state, failCount: p.failCount,
      })),
    })),
  };
}

/** The human form of a map report. */
export function formatMapReport(m: StatusMapReport): string {
  const head = `${m.name} (${m.devno}, ${m.device}) ${m.sizeSectors} sectors, queue_mode ${m.queueMode}, queue_if_no_path ${m.queueIfNoPath ? 'on' : 'off'}`;
  const rows: string[][] = [];
  for (const g of m.groups) {
    for (const p of g.paths) {
      rows.push([`  ${g.number} ${g.state}${g.number === m.currentGroup ? '*' : ''}`, g.selector, p.devno, p.name ?? '-', p.state, String(p.failCount), p.wwid ?? '-']);
    }
  }
  return `${head}\n${columns([['  group', 'selector', 'devno', 'device', 'state', 'fails', 'wwid'], ...rows])}`;
}

const OPTIONS = { ...COMMON_OPTIONS, ...JSON_OPTION } as const;

/** The status subcommand. */
export const statusCommand: Command = {
  name: 'status',
  summary: 'show multipath maps, their groups and paths',
  help: `usage: mpath-watchdog status [MAP] [--json]

Shows every dm-multipath map (or only MAP): its groups, and each path with its
state (active/failed), fail count, block device name and WWID. '*' marks the
current group.

options:
  --json      print {"maps":[…]} as one JSON document
  -h, --help  this text`,
  async run(argv, io: CliIo) {
    const { values, positionals: pos } = parse('status', argv, OPTIONS);
    const [map] = positionals('status', pos, [], ['MAP']);
    const dm = new DeviceMapper();
    const names = map === undefined ? await multipathMapNames(dm) : [map];
    const maps: StatusMapReport[] = [];
    for (const n of names) maps.push(await mapReport(dm, n));
    if (values.json) io.stdout.write(`${JSON.stringify({ maps }, null, 2)}\n`);
    else if (maps.length === 0) io.stdout.write('no multipath maps\n');
    else io.stdout.write(`${maps.map(formatMapReport).join('\n\n')}\n`);
    return EXIT.ok;
  },
};
