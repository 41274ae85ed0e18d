// A stand-in for multipathd's control socket that speaks the same framing
// (an 8-byte native length, then the bytes with their NUL), so that the client
// is tested over a real unix socket. Each handler decides what bytes go back,
// and how: whole, in pieces, late, or not at all.
import { createServer, type Server, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FrameDecoder, LENGTH_BYTES, MAX_COMMAND_BYTES } from '../../../lib/multipathd';

/** A reply frame: length prefix (counting the NUL) + text + NUL. */
export function replyFrame(text: string): Buffer {
  const body = Buffer.from(text, 'utf8');
  const frame = Buffer.alloc(LENGTH_BYTES + body.length + 1);
  frame.writeBigUInt64LE(BigInt(body.length + 1), 0);
  body.copy(frame, LENGTH_BYTES);
  return frame;
}

/** What a handler sees and can do. */
export interface FakeCall {
  /** The command as received (without its NUL). */
  command: string;
  socket: Socket;
  /** Sends a whole reply frame for `text`. */
  reply(text: string): void;
}

/** A running stand-in. */
export interface FakeDaemon {
  /** The socket path (a file in a temp dir, or an abstract name starting with NUL). */
  path: string;
  /** Commands received, in order. */
  commands: string[];
  close(): Promise<void>;
}

/** Starts a stand-in on a fresh socket; `handler` answers each command. */
export async function fakeMultipathd(handler: (call: FakeCall) => void, options: { abstract?: boolean } = {}): Promise<FakeDaemon> {
  const dir = options.abstract ? undefined : mkdtempSync(join(tmpdir(), 'mpw-mpathd-'));
  const path = dir === undefined ? `\0/mpw-test/multipathd-${process.pid}-${Math.random().toString(36).slice(2)}` : join(dir, 'multipathd.socket');
  const commands: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const decoder = new FrameDecoder(MAX_COMMAND_BYTES + 1);
    socket.on('data', (chunk: Buffer) => {
      let command: string | undefined;
      try {
        command = decoder.push(chunk);
      } catch {
        socket.destroy();
        return;
      }
      if (command === undefined) return;
      commands.push(command);
      handler({ command, socket, reply: (text) => socket.end(replyFrame(text)) });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  return {
    path,
    commands,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A socket path in a fresh temp dir where nothing listens. */
export function deadSocketPath(): { path: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'mpw-mpathd-dead-'));
  return { path: join(dir, 'none.socket'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
