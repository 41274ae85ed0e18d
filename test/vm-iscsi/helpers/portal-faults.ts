// Per-portal network faults for the iSCSI topology, one typed helper for the
// tests and the benchmarks: drop (nftables), delay and loss (netem on `lo`,
// behind a prio qdisc whose extra band only a portal's traffic is filtered
// into), and restore, which removes every rule it added, also when setting one
// up failed half way. Every command is bounded.
import { isIP } from 'node:net';

/** What can be done to one portal's traffic. */
export type PortalFault =
  /** Every packet to and from the portal is dropped: the path goes silent, the link stays up. */
  | { kind: 'drop' }
  /** `ms` added to the round trip (half each way), ± `jitterMs`: the path is slow but alive. */
  | { kind: 'delay'; ms: number; jitterMs?: number }
  /** Each packet to or from the portal is lost with probability `pct` %. */
  | { kind: 'loss'; pct: number };

/** A fault command that failed, with what it ran and what it said. */
export class PortalFaultError extends Error {
  override readonly name = 'PortalFaultError';
  constructor(message: string, readonly command: string | null = null, readonly stderr = '') {
    super(command === null ? message : `${message}: \`${command}\`${stderr ? `: ${stderr.trim()}` : ''}`);
  }
}

/** Options of {@link PortalFaults}. */
export interface PortalFaultsOptions {
  /** The iSCSI port (default 3260). */
  port?: number;
  /** The sessions' noop_out_timeout, ms (default 5000, open-iscsi's): a delay must stay under it or the session drops and the path is dead, not slow. */
  noopOutTimeoutMs?: number;
}

const NFT_TABLE = 'mpw_fault';
const DEV = 'lo';
// prio's default priomap (sch_prio.c) sends everything to bands 1..3; band 4 gets only what a filter puts there.
const PRIOMAP = '1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1'.split(' ');
// netem's default queue limit is 1000 packets; a 2 s delay at full rate holds more.
const NETEM_LIMIT = '100000';

async function sh(cmd: string, args: readonly string[], input?: string): Promise<void> {
  const { execa } = await import('execa');
  const r = await execa(cmd, args, { timeout: 30_000, reject: false, ...(input === undefined ? {} : { input }) });
  if (r.failed) {
    const why = r.timedOut ? 'timed out after 30 s' : `exit ${String(r.exitCode ?? r.signal)}`;
    throw new PortalFaultError(`${cmd} failed (${why})`, [cmd, ...args].join(' '), String(r.stderr));
  }
}

/** Netem's words for a delay or a loss fault, one direction's share of it. */
export function netemArgs(fault: Exclude<PortalFault, { kind: 'drop' }>): string[] {
  if (fault.kind === 'loss') return ['loss', `${fault.pct}%`];
  const each = (ms: number): string => `${ms / 2}ms`;
  return ['delay', each(fault.ms), ...(fault.jitterMs ? [each(fault.jitterMs)] : [])];
}

/** Refuses a fault that is malformed or that would not be what it says (a delay that kills the session). */
export function checkFault(portal: string, fault: PortalFault, noopOutTimeoutMs = 5000): void {
  if (isIP(portal) !== 4) throw new PortalFaultError(`portal must be an IPv4 address, got '${portal}'`);
  if (fault.kind === 'delay') {
    const jitter = fault.jitterMs ?? 0;
    if (!(fault.ms > 0) || !Number.isFinite(fault.ms)) throw new PortalFaultError(`delay must be a finite number of ms > 0, got ${fault.ms}`);
    if (!(jitter >= 0) || !Number.isFinite(jitter) || jitter > fault.ms) throw new PortalFaultError(`jitter must be 0..${fault.ms} ms, got ${jitter}`);
    if (fault.ms + jitter >= noopOutTimeoutMs) {
      throw new PortalFaultError(`a round trip of ${fault.ms} + ${jitter} ms reaches noop_out_timeout (${noopOutTimeoutMs} ms): the session would drop, the path would be dead, not slow`);
    }
  } else if (fault.kind === 'loss') {
    if (!(fault.pct > 0 && fault.pct <= 100)) throw new PortalFaultError(`loss must be a percentage in (0, 100], got ${fault.pct}`);
  } else if (fault.kind !== 'drop') {
    throw new PortalFaultError(`unknown fault '${String((fault as { kind: unknown }).kind)}'`);
  }
}

/** One fault at a time on one portal's traffic; restore() undoes exactly what was added. */
export class PortalFaults {
  readonly #port: number;
  readonly #noopMs: number;
  #nft = false;
  #tc = false;
  readonly #loaded = new Set<string>();
  #active: { portal: string; fault: PortalFault } | null = null;

  constructor(options: PortalFaultsOptions = {}) {
    this.#port = options.port ?? 3260;
    this.#noopMs = options.noopOutTimeoutMs ?? 5000;
  }

  /** The fault in force, or null. */
  get active(): { portal: string; fault: PortalFault } | null {
    return this.#active;
  }

  /** Loads the kernel modules every fault needs, so that a fault timed from its apply() starts at once (modprobe is slow under TCG). */
  prepare(): Promise<void> {
    return this.#modules(['nf_tables', 'sch_prio', 'sch_netem', 'cls_u32']);
  }

  async #modules(names: readonly string[]): Promise<void> {
    for (const m of names) {
      if (this.#loaded.has(m)) continue;
      await sh('modprobe', [m]);
      this.#loaded.add(m);
    }
  }

  /** Drops every packet to and from the portal. */
  drop(portal: string): Promise<void> {
    return this.apply(portal, { kind: 'drop' });
  }

  /** Adds `ms` (± `jitterMs`) to the portal's round trip. */
  delay(portal: string, ms: number, jitterMs = 0): Promise<void> {
    return this.apply(portal, { kind: 'delay', ms, ...(jitterMs ? { jitterMs } : {}) });
  }

  /** Loses `pct` % of the portal's packets, each way. */
  loss(portal: string, pct: number): Promise<void> {
    return this.apply(portal, { kind: 'loss', pct });
  }

  /** Puts `fault` on `portal`; refuses while another fault is in force. On failure, whatever was added is removed. */
  async apply(portal: string, fault: PortalFault): Promise<void> {
    checkFault(portal, fault, this.#noopMs);
    if (this.#active) throw new PortalFaultError(`a fault is already in force (${this.#active.fault.kind} on ${this.#active.portal}): restore() first`);
    try {
      if (fault.kind === 'drop') await this.#addDrop(portal);
      else await this.#addNetem(portal, fault);
    } catch (e) {
      await this.restore().catch(() => undefined);
      throw e;
    }
    this.#active = { portal, fault };
  }

  /**
   * Removes every rule this helper added; safe to call at any time, and more
   * than once. A delay is first set to zero and the packets it holds are let
   * out (bounded by the delay), because deleting netem drops them and TCP would
   * then stall on retransmits after the fault is gone.
   */
  async restore(): Promise<void> {
    const errors: unknown[] = [];
    if (this.#nft) {
      await sh('nft', ['delete', 'table', 'inet', NFT_TABLE]).then(() => { this.#nft = false; }, (e: unknown) => errors.push(e));
    }
    if (this.#tc) {
      const held = this.#active?.fault.kind === 'delay' ? this.#active.fault : null;
      if (held) {
        const drained = await sh('tc', ['qdisc', 'change', 'dev', DEV, 'parent', '1:4', 'handle', '40:', 'netem', 'limit', NETEM_LIMIT, 'delay', '0ms'])
          .then(() => true, () => false);
        if (drained) await new Promise((r) => setTimeout(r, (held.ms + (held.jitterMs ?? 0)) / 2 + 50));
      }
      // Deleting the root qdisc takes its bands, netem child and filters with it.
      await sh('tc', ['qdisc', 'del', 'dev', DEV, 'root']).then(() => { this.#tc = false; }, (e: unknown) => errors.push(e));
    }
    if (errors.length > 0) throw errors[0];
    this.#active = null;
  }

  /** Removes this helper's table and `lo`'s root qdisc whoever added them (a run that died left them), ignoring what is not there. */
  async reset(): Promise<void> {
    await sh('nft', ['delete', 'table', 'inet', NFT_TABLE]).catch((e: unknown) => {
      if (!/No such file or directory|does not exist/.test(String((e as PortalFaultError).stderr))) throw e;
    });
    await sh('tc', ['qdisc', 'del', 'dev', DEV, 'root']).catch((e: unknown) => {
      // lo's default root is noqueue: nothing to delete.
      if (!/handle of zero|No such file or directory|Invalid handle/.test(String((e as PortalFaultError).stderr))) throw e;
    });
    this.#nft = this.#tc = false;
    this.#active = null;
  }

  async #addDrop(portal: string): Promise<void> {
    await this.#modules(['nf_tables']);
    // The output hook sees both directions on loopback.
    const rules = [
      `table inet ${NFT_TABLE} {`,
      '  chain out {',
      '    type filter hook output priority 0; policy accept;',
      `    ip daddr ${portal} tcp dport ${this.#port} drop`,
      `    ip saddr ${portal} tcp sport ${this.#port} drop`,
      '  }',
      '}',
      '',
    ].join('\n');
    // nft -f is all or nothing: on failure there is no table to remove.
    await sh('nft', ['-f', '-'], rules);
    this.#nft = true;
  }

  async #addNetem(portal: string, fault: Exclude<PortalFault, { kind: 'drop' }>): Promise<void> {
    await this.#modules(['sch_prio', 'sch_netem', 'cls_u32']);
    await sh('tc', ['qdisc', 'add', 'dev', DEV, 'root', 'handle', '1:', 'prio', 'bands', '4', 'priomap', ...PRIOMAP]);
    this.#tc = true;
    await sh('tc', ['qdisc', 'add', 'dev', DEV, 'parent', '1:4', 'handle', '40:', 'netem', 'limit', NETEM_LIMIT, ...netemArgs(fault)]);
    const port = String(this.#port);
    for (const [addr, p] of [['dst', 'dport'], ['src', 'sport']] as const) {
      await sh('tc', ['filter', 'add', 'dev', DEV, 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'u32',
        'match', 'ip', addr, `${portal}/32`, 'match', 'ip', p, port, '0xffff', 'flowid', '1:4']);
    }
  }
}
