// The wire format of multipathd's control socket (multipath-tools
// libmpathcmd/mpath_cmd.c, multipathd/uxlsnr.c): each side sends a length as a
// native size_t (8 bytes, little-endian on x86_64) followed by that many bytes,
// the last of which is a NUL. One command and one reply per connection.
import { endianness } from 'node:os';

/** Bytes of the length prefix: sizeof(size_t) on the 64-bit platforms Node runs on here. */
export const LENGTH_BYTES = 8;
/** The daemon refuses a command longer than this, NUL included (_MAX_CMD_LEN, libmpathutil/uxsock.h in 0.9.4). */
export const MAX_COMMAND_BYTES = 512;
/** A reply this long or longer is refused (MAX_REPLY_LEN in libmpathcmd/mpath_cmd.h). */
export const MAX_REPLY_BYTES = 32 * 1024 * 1024;

const LITTLE = endianness() === 'LE';

/** The framing was broken: a bad length, a short or extra payload, or a bad command. */
export class FramingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FramingError';
  }
}

function writeLength(buf: Buffer, n: number): void {
  if (LITTLE) buf.writeBigUInt64LE(BigInt(n), 0);
  else buf.writeBigUInt64BE(BigInt(n), 0);
}

function readLength(buf: Buffer): bigint {
  return LITTLE ? buf.readBigUInt64LE(0) : buf.readBigUInt64BE(0);
}

/**
 * One frame for `command`: length prefix, the UTF-8 bytes, a NUL. Sent in one
 * write, because the daemon reads the prefix with a single recv (uxlsnr.c).
 * Refuses an empty command, an embedded NUL and a command over MAX_COMMAND_BYTES.
 */
export function encodeFrame(command: string, maxBytes = MAX_COMMAND_BYTES): Buffer {
  if (typeof command !== 'string' || command.trim() === '') throw new FramingError('multipathd command must be a non-empty string');
  if (command.includes('\0')) throw new FramingError('multipathd command must not contain a NUL byte');
  const body = Buffer.from(command, 'utf8');
  const len = body.length + 1;
  if (len > maxBytes) throw new FramingError(`multipathd command is ${len} bytes with its NUL; the daemon takes at most ${maxBytes}`);
  const frame = Buffer.alloc(LENGTH_BYTES + len);
  writeLength(frame, len);
  body.copy(frame, LENGTH_BYTES);
  return frame;
}

/**
 * Reassembles one frame from stream chunks of any size. push() returns the
 * payload as text once it is complete (up to its first NUL, as the C client
 * reads it), undefined while more is needed, and throws FramingError on a zero
 * or oversize length, a payload without its final NUL, or bytes after the frame.
 */
export class FrameDecoder {
  readonly #max: number;
  readonly #chunks: Buffer[] = [];
  #have = 0;
  #want: number | undefined;
  #done = false;

  /** `maxBytes`: the largest payload accepted (exclusive, as mpath_recv_reply_len checks). */
  constructor(maxBytes = MAX_REPLY_BYTES) {
    this.#max = maxBytes;
  }

  /** The frame was complete. */
  get done(): boolean {
    return this.#done;
  }

  /** Feeds bytes; returns the payload text when the frame is complete. */
  push(chunk: Buffer): string | undefined {
    if (this.#done) {
      if (chunk.length > 0) throw new FramingError(`${chunk.length} unexpected bytes after the reply`);
      return undefined;
    }
    this.#chunks.push(chunk);
    this.#have += chunk.length;
    if (this.#want === undefined) {
      if (this.#have < LENGTH_BYTES) return undefined;
      const all = Buffer.concat(this.#chunks);
      const len = readLength(all);
      if (len === 0n) throw new FramingError('reply length is 0');
      if (len >= BigInt(this.#max)) throw new FramingError(`reply length ${len} is over the limit of ${this.#max} bytes`);
      this.#want = LENGTH_BYTES + Number(len);
      this.#chunks.length = 0;
      this.#chunks.push(all);
    }
    if (this.#have < this.#want) return undefined;
    if (this.#have > this.#want) throw new FramingError(`${this.#have - this.#want} unexpected bytes after the reply`);
    const all = Buffer.concat(this.#chunks);
    this.#chunks.length = 0;
    this.#done = true;
    const payload = all.subarray(LENGTH_BYTES);
    // multipathd sends strlen + 1 bytes (uxlsnr.c); the C client overwrites the
    // last byte with a NUL whatever it was, so a frame without one is not the daemon's.
    if (payload[payload.length - 1] !== 0) throw new FramingError('reply is not NUL-terminated');
    const nul = payload.indexOf(0);
    return payload.subarray(0, nul).toString('utf8');
  }

  /** Bytes received so far and, once the prefix is in, the frame's total size. */
  progress(): { have: number; want: number | undefined } {
    return { have: this.#have, want: this.#want };
  }
}
