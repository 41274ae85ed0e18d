// A client for multipathd's control socket, on node:net. One connection per
// command, as libmpathcmd does (mpath_connect, mpath_process_cmd,
// mpath_disconnect in libmpathcmd/mpath_cmd.c).
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createConnection, Socket } from 'node:net';
import { errnoName } from '../errors';
import { native } from '../native';
import { encodeFrame, FrameDecoder, FramingError } from './framing';
import { MultipathdError } from './errors';
import { MAP_FIELDS, PATH_FIELDS, formatOf, parseFormatted, toMap, toPath, type MultipathdMap, type MultipathdPath } from './parse';

/** multipathd's abstract socket (DEFAULT_SOCKET in libmpathcmd/mpath_cmd.h); Node names the abstract namespace with a leading NUL. */
export const ABSTRACT_SOCKET = '\0/org/kernel/linux/storage/multipathd';
/** The file socket newer multipath-tools also listen on (PATHNAME_SOCKET). */
export const PATHNAME_SOCKET = '/run/multipathd.socket';
/** The reply timeout libmpathcmd uses by default (DEFAULT_REPLY_TIMEOUT, ms). */
export const DEFAULT_TIMEOUT_MS = 4000;

/** Options of a MultipathdClient. */
export interface MultipathdClientOptions {
  /** Sockets tried in order (default: the abstract socket, then /run/multipathd.socket). */
  sockets?: readonly string[];
  /** Per-call deadline covering connect, send and reply, ms (default 4000). */
  timeoutMs?: number;
  /**
   * When no socket answers, run the `multipathd` CLI instead: true (default,
   * `multipathd` from PATH), a binary's path, or false. Needed on Node 20,
   * whose libuv pads an abstract socket address to the full 108 bytes
   * (measured: /proc/net/unix shows `@/name@@@…`), so net.connect never
   * reaches multipathd's exact-length abstract name.
   */
  cliFallback?: boolean | string;
}

/** Per-call options. */
export interface MultipathdCallOptions {
  /** Cancels the call (rejects with code 'aborted'). */
  signal?: AbortSignal;
  /** Overrides the client's timeout for this call, ms. */
  timeoutMs?: number;
}

// A path as `fail path` takes it: a kernel name (sdc) or major:minor. Anything
// else could smuggle keywords or quotes into the command line.
const DEVICE = /^(?:[A-Za-z0-9_.+-]+|\d+:\d+)$/;

/**
 * An fd connected to the abstract socket with its exact name length, as
 * multipathd binds it; undefined when nothing listens there (then libuv's
 * padded form is tried, which is how a Node listener binds).
 */
function connectAbstract(name: string): number | undefined {
  try {
    return native.connectUnixAbstract(name);
  } catch (e) {
    const errno = (e as { errno?: unknown }).errno;
    const code = typeof errno === 'number' ? errnoName(errno) : undefined;
    if (code === 'ECONNREFUSED' || code === 'ENOENT') return undefined;
    throw e;
  }
}

function describe(sockets: readonly string[]): string {
  return sockets.map((s) => (s.startsWith('\0') ? `@${s.slice(1)}` : s)).join(' or ');
}

function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof (err as { code: unknown }).code === 'string' ? (err as { code: string }).code : undefined;
}

/**
 * The command as the CLI's argv: one word per argument, a double-quoted value
 * kept whole with its quotes. 0.9.4's CLI answers "fail" to a whole command
 * passed as one argument (measured in the guest), and joins its arguments with
 * spaces before sending them.
 */
export function cliWords(command: string): string[] {
  return command.match(/"[^"]*"|[^\s"]+/g) ?? [];
}

/** Turns a reply into text, or throws what the daemon's reply means (multipathd/uxlsnr.c, default_reply). */
export function interpretReply(command: string, reply: string): string {
  // Usage first: 0.9.4 sends the usage text alone, 0.11 puts "fail" before it (measured).
  if (reply.includes('CLI commands reference:')) {
    const first = reply.replace(/^fail\n/, '').split('\n', 1)[0] ?? '';
    throw new MultipathdError('usage', command, `multipathd did not understand '${command}'${first.startsWith('multipath-tools') ? '' : `: ${first}`}`, { reply });
  }
  if (reply === 'fail\n' || reply.startsWith('fail\n')) {
    const why = reply.slice(5).trim();
    throw new MultipathdError('failed', command, `multipathd refused '${command}'${why ? `: ${why}` : ''}`, { reply });
  }
  if (reply === 'timeout\n') throw new MultipathdError('busy', command, `multipathd timed out on '${command}' (its lock was busy)`, { reply });
  if (reply.startsWith('permission deny')) throw new MultipathdError('denied', command, `multipathd refused '${command}': root is needed`, { reply });
  return reply;
}

/** Talks to a running multipathd. */
export class MultipathdClient {
  /** The sockets tried, in order. */
  readonly sockets: readonly string[];
  readonly #defaultSockets: boolean;
  /** The default per-call deadline, ms. */
  readonly timeoutMs: number;
  readonly #cli: string | undefined;

  constructor(options: MultipathdClientOptions = {}) {
    this.sockets = options.sockets ?? [ABSTRACT_SOCKET, PATHNAME_SOCKET];
    this.#defaultSockets = options.sockets === undefined;
    if (this.sockets.length === 0) throw new TypeError('MultipathdClient: sockets must name at least one socket');
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isFinite(this.timeoutMs) || this.timeoutMs <= 0) throw new RangeError(`MultipathdClient: timeoutMs must be > 0, got ${String(options.timeoutMs)}`);
    const cli = options.cliFallback ?? true;
    this.#cli = cli === true ? 'multipathd' : cli === false ? undefined : cli;
  }

  /**
   * Sends one command and returns the reply text. Rejects with MultipathdError:
   * 'not-running' when no socket answers, 'failed' on a `fail` reply, 'timeout',
   * 'aborted', 'busy', 'denied', 'usage', 'protocol' or 'io'.
   */
  async command(command: string, options: MultipathdCallOptions = {}): Promise<string> {
    let frame: Buffer;
    try {
      frame = encodeFrame(command);
    } catch (e) {
      throw new MultipathdError('protocol', command, (e as Error).message, { cause: e });
    }
    if (options.signal?.aborted) throw new MultipathdError('aborted', command, `'${command}' to multipathd was aborted`, { cause: options.signal.reason });
    const deadline = Date.now() + (options.timeoutMs ?? this.timeoutMs);
    let lastRefusal: unknown;
    for (const path of this.sockets) {
      const outcome = await this.#exchange(path, command, frame, deadline, options.signal);
      if (outcome.kind === 'reply') return interpretReply(command, outcome.reply);
      lastRefusal = outcome.cause;
    }
    const absent = `nothing listens on ${describe(this.sockets)}`;
    // The CLI costs a process; skip it when the kernel lists no such socket at all.
    if (this.#cli !== undefined && (await this.#maybeListening())) return this.#viaCli(command, deadline, options.signal, absent);
    throw new MultipathdError('not-running', command, `multipathd is not running (${absent})`, { cause: lastRefusal });
  }

  // One connection: a reply, or "nobody listens here" so that the next socket is tried.
  #exchange(path: string, command: string, frame: Buffer, deadline: number, signal: AbortSignal | undefined): Promise<{ kind: 'reply'; reply: string } | { kind: 'absent'; cause: unknown }> {
    return new Promise((resolve, reject) => {
      const decoder = new FrameDecoder();
      let connected = false;
      let settled = false;
      let sock: Socket | undefined;
      const finish = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        sock?.destroy();
        fn();
      };
      const fail = (code: MultipathdError['code'], message: string, cause?: unknown): void =>
        finish(() => reject(new MultipathdError(code, command, message, cause === undefined ? {} : { cause })));
      const onAbort = (): void => fail('aborted', `'${command}' to multipathd was aborted`, signal?.reason);
      const remaining = Math.max(0, deadline - Date.now());
      const timer = setTimeout(() => fail('timeout', `no reply from multipathd to '${command}' within the deadline (${describe([path])})`), remaining);
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      let fd: number | undefined;
      try {
        fd = path.startsWith('\0') ? connectAbstract(path.slice(1)) : undefined;
      } catch (e) {
        return fail('io', `multipathd socket ${describe([path])}: ${(e as Error).message}`, e);
      }
      if (fd !== undefined) {
        sock = new Socket({ fd, readable: true, writable: true });
        connected = true;
        sock.write(frame);
      } else {
        sock = createConnection({ path });
        sock.on('connect', () => {
          connected = true;
          sock?.write(frame);
        });
      }
      sock.on('data', (chunk: Buffer) => {
        try {
          const reply = decoder.push(chunk);
          if (reply !== undefined) finish(() => resolve({ kind: 'reply', reply }));
        } catch (e) {
          fail('protocol', `bad reply from multipathd to '${command}': ${(e as FramingError).message}`, e);
        }
      });
      sock.on('end', () => {
        const { have, want } = decoder.progress();
        fail('protocol', `multipathd closed the connection after ${have} of ${want ?? 'at least 8'} reply bytes to '${command}'`);
      });
      sock.on('error', (err) => {
        const code = errnoCode(err);
        if (!connected && (code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'ENOTSOCK')) {
          finish(() => resolve({ kind: 'absent', cause: err }));
        } else {
          fail('io', `multipathd socket ${describe([path])}: ${err.message}`, err);
        }
      });
    });
  }

  // /proc/net/unix lists every bound unix socket, abstract ones as '@name'
  // (net/unix/af_unix.c, unix_seq_show). Unreadable means unknown: assume yes.
  async #maybeListening(): Promise<boolean> {
    // The CLI only knows the default sockets: with others given, nothing can be ruled out.
    if (!this.#defaultSockets) return true;
    let table: string;
    try {
      table = await readFile('/proc/net/unix', 'latin1');
    } catch {
      return true;
    }
    return this.sockets.some((p) => (p.startsWith('\0') ? table.includes(`@${p.slice(1)}`) : table.includes(` ${p}\n`) || existsSync(p)));
  }

  async #viaCli(command: string, deadline: number, signal: AbortSignal | undefined, absent: string): Promise<string> {
    const { execa } = await import('execa');
    const cli = this.#cli as string;
    // multipathd/uxclnt.c (0.9.4): prints the reply as is and exits 1 on a
    // "fail" reply; exits 1 printing nothing when it cannot connect; prints
    // "timeout receiving packet" or "error N receiving packet" otherwise.
    const r = await execa(cli, cliWords(command), {
      reject: false,
      stripFinalNewline: false,
      timeout: Math.max(1, deadline - Date.now()),
      ...(signal === undefined ? {} : { cancelSignal: signal }),
    });
    if (r.isCanceled) throw new MultipathdError('aborted', command, `'${command}' to multipathd (CLI) was aborted`, { cause: signal?.reason });
    if (r.timedOut) throw new MultipathdError('timeout', command, `no reply from multipathd to '${command}' within the deadline (CLI ${cli})`);
    if (r.exitCode === undefined) {
      throw new MultipathdError('not-running', command, `multipathd is not running (${absent}; the CLI ${cli} could not be run: ${r.shortMessage})`, { cause: r.cause });
    }
    const out = String(r.stdout);
    if (r.exitCode !== 0 && out.trim() === '') throw new MultipathdError('not-running', command, `multipathd is not running (${absent}, nor for ${cli})`);
    if (/^timeout receiving packet/.test(out)) throw new MultipathdError('timeout', command, `no reply from multipathd to '${command}' (CLI ${cli}: ${out.trim()})`);
    if (/^(cannot send packet|error -?\d+ receiving packet)/.test(out)) throw new MultipathdError('io', command, `multipathd CLI ${cli}: ${out.trim()}`);
    const reply = interpretReply(command, out);
    if (r.exitCode !== 0) throw new MultipathdError('failed', command, `multipathd refused '${command}': ${out.trim()}`, { reply: out });
    return reply;
  }

  /** True when a daemon answers on one of the sockets; false when none listens. Other errors reject. */
  async isRunning(options: MultipathdCallOptions = {}): Promise<boolean> {
    try {
      await this.command('show daemon', options);
      return true;
    } catch (e) {
      if (e instanceof MultipathdError && e.code === 'not-running') return false;
      throw e;
    }
  }

  /** `show maps raw format …`: every map the daemon manages. */
  async showMaps(options: MultipathdCallOptions = {}): Promise<MultipathdMap[]> {
    const command = `show maps raw format "${formatOf(MAP_FIELDS)}"`;
    return parseFormatted(await this.command(command, options), MAP_FIELDS, command).map(toMap);
  }

  /** `show paths raw format …`: every path the daemon knows, with its map, dm state and checker state. */
  async showPaths(options: MultipathdCallOptions = {}): Promise<MultipathdPath[]> {
    const command = `show paths raw format "${formatOf(PATH_FIELDS)}"`;
    return parseFormatted(await this.command(command, options), PATH_FIELDS, command).map(toPath);
  }

  /** `fail path <dev>`: dm fail_path plus a paused checker, so the daemon does not undo it (cli_fail in multipathd/cli_handlers.c). */
  async failPath(device: string, options: MultipathdCallOptions = {}): Promise<void> {
    await this.#pathCommand('fail', device, options);
  }

  /** `reinstate path <dev>`: dm reinstate_path and the checker resumed (cli_reinstate). */
  async reinstatePath(device: string, options: MultipathdCallOptions = {}): Promise<void> {
    await this.#pathCommand('reinstate', device, options);
  }

  async #pathCommand(verb: 'fail' | 'reinstate', device: string, options: MultipathdCallOptions): Promise<void> {
    if (typeof device !== 'string' || !DEVICE.test(device)) {
      throw new MultipathdError('protocol', `${verb} path ${String(device)}`, `'${String(device)}' is not a device name (sdc) or major:minor`);
    }
    const command = `${verb} path ${device}`;
    const reply = await this.command(command, options);
    if (reply.trim() !== 'ok') throw new MultipathdError('protocol', command, `unexpected reply from multipathd to '${command}': ${JSON.stringify(reply.slice(0, 200))}`, { reply });
  }
}
