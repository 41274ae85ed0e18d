// Errors of the multipathd client: a person reads the message; code reads `code`.

/** Why a multipathd call failed. */
export type MultipathdErrorCode =
  /** No daemon listens on any of the sockets tried. */
  | 'not-running'
  /** No (complete) reply within the timeout. */
  | 'timeout'
  /** The caller's AbortSignal fired. */
  | 'aborted'
  /** The daemon answered `fail` (the command was understood and refused or failed). */
  | 'failed'
  /** The daemon answered `timeout` (it could not take its lock in time, multipathd/uxlsnr.c). */
  | 'busy'
  /** The daemon wants root for this command ("permission deny"). */
  | 'denied'
  /** The daemon did not understand the command and sent its usage text. */
  | 'usage'
  /** The bytes on the socket did not follow the framing, or the reply could not be parsed. */
  | 'protocol'
  /** The socket failed in another way (errno in `cause`). */
  | 'io';

/** A failed call to multipathd, with the command and the daemon's reply text when there was one. */
export class MultipathdError extends Error {
  /** What went wrong. */
  readonly code: MultipathdErrorCode;
  /** The command sent. */
  readonly command: string;
  /** The daemon's reply, when it sent one. */
  readonly reply: string | undefined;

  constructor(code: MultipathdErrorCode, command: string, message: string, options: { reply?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MultipathdError';
    this.code = code;
    this.command = command;
    this.reply = options.reply;
  }
}
