// The iSCSI topology's moving parts for tests and the failover bench, inside
// the guest (`--topology iscsi`, scripts/guest-iscsi.sh): the two LIO disks and
// their portals, multipathd started with a config that can build a map over
// LIO (measured in the VM, "multipathd in the guest"); the network faults are in
// portal-faults.ts. Every wait is bounded.
import { after, before } from 'node:test';
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync, readdirSync, realpathSync, writeFileSync, mkdirSync } from 'node:fs';
import { MultipathdClient, MultipathdError, type MultipathdPath } from '../../../lib/multipathd';
import { DeviceMapper } from '../../../lib/dm';
import { MultipathMap, type PathState } from '../../../lib/multipath';

/** One iSCSI path: the disk a session gave and the portal it goes through. */
export interface LioDisk {
  /** Kernel name, e.g. sdc. */
  name: string;
  /** major:minor. */
  devno: string;
  /** Portal address of its session, e.g. 127.0.0.2. */
  portal: string;
  /** iSCSI session number (sysfs `sessionN`). */
  session: number;
}

export const IQN = 'iqn.2026-11.org.mpath-watchdog:lun0';

async function run(cmd: string, args: string[], input?: string): Promise<string> {
  const { execa } = await import('execa');
  return (await execa(cmd, args, { timeout: 60_000, ...(input === undefined ? {} : { input }) })).stdout;
}

/** Resolves when `cond` holds; rejects naming `what` after `ms`. */
export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000, stepMs = 50): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** The LIO-ORG disks, sorted by portal; each named by its session's portal address. */
export function lioDisks(): LioDisk[] {
  const out: LioDisk[] = [];
  for (const name of readdirSync('/sys/block')) {
    const vendor = `/sys/block/${name}/device/vendor`;
    if (!existsSync(vendor) || !readFileSync(vendor, 'utf8').startsWith('LIO-ORG')) continue;
    const m = /\/session(\d+)\//.exec(realpathSync(`/sys/block/${name}/device`));
    if (!m) continue;
    const session = Number(m[1]);
    const conn = `/sys/class/iscsi_connection/connection${session}:0`;
    const addr = ['persistent_address', 'address'].map((f) => `${conn}/${f}`).find((f) => existsSync(f));
    out.push({
      name,
      devno: readFileSync(`/sys/block/${name}/dev`, 'utf8').trim(),
      portal: addr === undefined ? '?' : readFileSync(addr, 'utf8').trim(),
      session,
    });
  }
  return out.sort((a, b) => a.portal.localeCompare(b.portal));
}

/** The two LIO disks; throws when the topology is not there. */
export function twoLioDisks(): [LioDisk, LioDisk] {
  const d = lioDisks();
  if (d.length !== 2) throw new Error(`expected two LIO iSCSI disks, found ${d.length} (${d.map((x) => x.name).join(', ')}): run with --topology iscsi`);
  return d as [LioDisk, LioDisk];
}

/** multipath.conf settings that differ per run. */
export interface MultipathdConfig {
  /** `defaults` lines, e.g. ['polling_interval 2']. */
  defaults?: string[];
  /** Extra lines of the LIO-ORG `device` entry, e.g. ['path_selector "round-robin 0"']. */
  device?: string[];
}

/**
 * The multipath.conf for the guest. LIO needs its own device entry (0.9.4 has
 * none; detect_prio would pick alua, whose handler fails with ENODEV, and whose
 * prioritizer's SG_IO on a dead path holds multipathd's lock for seconds, so
 * detect_prio is off and prio const really applies); the
 * scsi_debug disks are blacklisted so that no second map is built over them;
 * find_multipaths no, so that no wwids file is needed.
 */
export function multipathConf(config: MultipathdConfig = {}): string {
  return [
    'defaults {',
    '\tuser_friendly_names no',
    '\tfind_multipaths no',
    ...(config.defaults ?? []).map((l) => `\t${l}`),
    '}',
    'blacklist {',
    '\tdevice {\n\t\tvendor "Linux"\n\t\tproduct "scsi_debug"\n\t}',
    '}',
    'devices {',
    '\tdevice {\n\t\tvendor "LIO-ORG"\n\t\tproduct ".*"\n\t\thardware_handler "0"\n\t\tdetect_prio no\n\t\tprio const\n\t\tpath_grouping_policy multibus',
    ...(config.device ?? []).map((l) => `\t\t${l}`),
    '\t}',
    '}',
    '',
  ].join('\n');
}

/** A multipathd we started. */
export interface Multipathd {
  readonly pid: number;
  readonly client: MultipathdClient;
  /** Its log file. */
  readonly log: string;
  /** The tail of its log, for failure messages. */
  tail(lines?: number): string;
  /** Stops it (SIGTERM, then SIGKILL after 15 s) and waits for it to exit. */
  stop(): Promise<void>;
}

/** Writes /etc/multipath.conf and starts `multipathd -d` (foreground) with it; resolves once its socket answers (bounded). */
export async function startMultipathd(config: MultipathdConfig = {}, log = '/run/mpw-multipathd.log'): Promise<Multipathd> {
  mkdirSync('/etc/multipath', { recursive: true });
  writeFileSync('/etc/multipath.conf', multipathConf(config));
  const out = createWriteStream(log, { flags: 'a' });
  out.write(`--- multipathd start ${new Date().toISOString()} ${JSON.stringify(config)}\n`);
  const child: ChildProcess = spawn('multipathd', ['-d', '-s', '-v3'], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.pipe(out, { end: false });
  child.stderr?.pipe(out, { end: false });
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once('exit', () => { exited = true; resolve(); }));
  const client = new MultipathdClient({ timeoutMs: 10_000 });
  const tail = (n = 30): string => (existsSync(log) ? readFileSync(log, 'utf8').trimEnd().split('\n').slice(-n).join('\n') : '');
  const stop = async (): Promise<void> => {
    if (!exited) child.kill('SIGTERM');
    const timer = setTimeout(() => { if (!exited) child.kill('SIGKILL'); }, 15_000);
    await exit;
    clearTimeout(timer);
  };
  // The socket is bound at once but served only after the initial configuration
  // (uxlsnrloop waits out DAEMON_CONFIGURE, multipathd/main.c), which builds the
  // maps: about 25 s under TCG (measured in the VM), more on a loaded host.
  try {
    await waitFor('multipathd to answer on its socket', async () => {
      if (exited) throw new Error('multipathd exited at start');
      return client.isRunning({ timeoutMs: 3000 }).catch((e: unknown) => {
        if (e instanceof MultipathdError) return false;
        throw e;
      });
    }, 150_000, 500);
  } catch (e) {
    await stop();
    throw new Error(`${(e as Error).message}\n--- multipathd log:\n${tail()}`);
  }
  if (child.pid === undefined) throw new Error('multipathd has no pid');
  return { pid: child.pid, client, log, tail, stop };
}

/** Waits (bounded) until multipathd has one map over both disks with both paths active; returns the map's name. */
export async function waitForMap(mpd: Multipathd, disks: readonly LioDisk[], ms = 90_000): Promise<string> {
  let last: MultipathdPath[] = [];
  try {
    await waitFor('multipathd to build the map over the iSCSI paths', async () => {
      last = await mpd.client.showPaths().catch(() => []);
      const mine = disks.map((d) => last.find((p) => p.dev === d.name));
      const maps = new Set(mine.map((p) => p?.map));
      return mine.every((p) => p?.map !== undefined && p.dmState === 'active') && maps.size === 1;
    }, ms, 500);
  } catch (e) {
    throw new Error(`${(e as Error).message}; its paths: ${JSON.stringify(last)}\n--- multipathd log:\n${mpd.tail()}`);
  }
  return last.find((p) => p.dev === disks[0]?.name)?.map as string;
}

/** The path's state in the map's dm status (through the ioctl: cheap enough to sample every 100 ms), undefined when absent. */
export async function dmPathState(map: MultipathMap, devno: string): Promise<PathState | undefined> {
  return (await dmPath(map, devno))?.state;
}

/** The path's state and the kernel's cumulative fail count for it (dm-mpath's fail_count, which never goes back). */
export async function dmPath(map: MultipathMap, devno: string): Promise<{ state: PathState; failCount: number } | undefined> {
  const status = await map.status();
  const p = status.groups.flatMap((g) => g.paths).find((x) => x.device === devno);
  return p ? { state: p.state, failCount: p.failCount } : undefined;
}

/** open-iscsi session timers (iscsid.conf names). */
export interface IscsiTimers {
  /** node.session.timeo.replacement_timeout, s. */
  replacementTimeoutS: number;
  /** node.conn[0].timeo.noop_out_interval, s. */
  noopOutIntervalS: number;
  /** node.conn[0].timeo.noop_out_timeout, s. */
  noopOutTimeoutS: number;
}

/** Writes the timers into both node records, then logs out and in again so that the sessions use them; resolves with the new disks (bounded). */
export async function reloginWith(timers: IscsiTimers): Promise<[LioDisk, LioDisk]> {
  const set: [string, number][] = [
    ['node.session.timeo.replacement_timeout', timers.replacementTimeoutS],
    ['node.conn[0].timeo.noop_out_interval', timers.noopOutIntervalS],
    ['node.conn[0].timeo.noop_out_timeout', timers.noopOutTimeoutS],
  ];
  for (const [name, value] of set) await run('iscsiadm', ['-m', 'node', '-T', IQN, '-o', 'update', '-n', name, '-v', String(value)]);
  await run('iscsiadm', ['-m', 'node', '-T', IQN, '--logout']).catch(() => undefined);
  await waitFor('the old iSCSI disks to go', () => lioDisks().length === 0, 30_000, 200);
  await run('iscsiadm', ['-m', 'node', '-T', IQN, '--login']);
  await waitFor('two iSCSI disks after login', () => lioDisks().length === 2 && lioDisks().every((d) => existsSync(`/dev/${d.name}`)), 60_000, 200);
  await run('udevadm', ['settle', '--timeout=30']).catch(() => undefined);
  return twoLioDisks();
}

/** The session's timers as the kernel has them (sysfs), to report what a run used. */
export function sessionTimers(disk: LioDisk): { recoveryTmoS: number; noopIntervalS: number; noopTimeoutS: number } {
  const num = (f: string): number => (existsSync(f) ? Number(readFileSync(f, 'utf8').trim()) : Number.NaN);
  const conn = `/sys/class/iscsi_connection/connection${disk.session}:0`;
  return {
    recoveryTmoS: num(`/sys/class/iscsi_session/session${disk.session}/recovery_tmo`),
    // iscsi_tcp's connection params: recv_tmo is noop_out_interval, ping_tmo noop_out_timeout.
    noopIntervalS: num(`${conn}/recv_tmo`),
    noopTimeoutS: num(`${conn}/ping_tmo`),
  };
}

/** multipathd and the map it built over both iSCSI disks, for one test file. */
export interface ManagedMap {
  readonly mpd: Multipathd;
  readonly name: string;
  readonly map: MultipathMap;
  readonly disks: [LioDisk, LioDisk];
  /** Reinstates both paths in multipathd and stops it. */
  close(): Promise<void>;
}

/**
 * Starts multipathd with `polling_interval pollS` and a round-robin selector
 * that sends one request per path in turn (so a load surely meets the faulty
 * portal), and waits for its map (bounded).
 */
export async function startRoundRobinMap(dm: DeviceMapper, pollS: number): Promise<ManagedMap> {
  const disks = twoLioDisks();
  const t0 = performance.now();
  const mpd = await startMultipathd({
    defaults: [`polling_interval ${pollS}`, `max_polling_interval ${pollS}`],
    device: ['path_selector "round-robin 0"', 'rr_min_io_rq 1'],
  });
  try {
    const name = await waitForMap(mpd, disks);
    const map = await MultipathMap.open(dm, name);
    console.log(`# multipathd built ${name} over ${disks.map((d) => `${d.name} (${d.portal})`).join(', ')} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const close = async (): Promise<void> => {
      for (const d of disks) await mpd.client.reinstatePath(d.name).catch(() => undefined);
      await mpd.stop();
    };
    return { mpd, name, map, disks, close };
  } catch (e) {
    await mpd.stop();
    throw e;
  }
}

/**
 * For a test file: a before hook that starts multipathd and its round-robin
 * map, an after hook that undoes `faults` and stops it all. The returned
 * function gives the map (it throws before the hook ran).
 */
export function useRoundRobinMap(pollS: number, faults: { prepare(): Promise<void>; restore(): Promise<void> }): () => ManagedMap {
  let rig: ManagedMap | undefined;
  before(async () => {
    rig = await startRoundRobinMap(new DeviceMapper(), pollS);
    await faults.prepare();
  }, { timeout: 300_000 });
  after(async () => {
    try {
      await faults.restore();
    } finally {
      await rig?.close();
    }
  });
  return () => {
    if (!rig) throw new Error('the multipathd map is not set up (its before hook failed or has not run)');
    return rig;
  };
}
