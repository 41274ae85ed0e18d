// A bound on any wait in the tests: the promise, or a rejection that names what was awaited.

/** `p`, or a rejection naming `what` after `ms` (the timer is cleared either way). */
export async function within<T>(what: string, p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms); });
  try {
    return await Promise.race([p, bound]);
  } finally {
    clearTimeout(timer);
  }
}

/** Marks a promise that had not settled in time (settledWithin). */
export const PENDING: unique symbol = Symbol('pending');

/** The promise's value, or PENDING if it has not settled within `ms`: for asserting that a wait is still blocked. */
export async function settledWithin<T>(p: Promise<T>, ms: number): Promise<T | typeof PENDING> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<typeof PENDING>((r) => (timer = setTimeout(() => r(PENDING), ms)));
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}
