// Which of the host's variables reach a command run in the VM or in another root.
import { VmError } from './errors';

/** Host variables that reach the guest command unchanged. */
const PASSED_ENV = /^(CI|MPW_[A-Z0-9_]+|NODE_OPTIONS|NO_COLOR|FORCE_COLOR|DEBUG)$/;

/** The host's passed variables, then `defaults` where the host set none, then `extra` (NAME=VALUE words, --env). */
export function passedEnv(extra: readonly string[], defaults: Record<string, string> = {}): Record<string, string> {
  // The guest console is a tty: without this, reporters colour their output.
  const env: Record<string, string> = process.env.FORCE_COLOR ? {} : { NO_COLOR: '1' };
  for (const [k, v] of Object.entries(process.env)) if (PASSED_ENV.test(k) && v !== undefined) env[k] = v;
  for (const [k, v] of Object.entries(defaults)) env[k] ??= v;
  for (const kv of extra) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new VmError(`--env wants NAME=VALUE, got '${kv}'`, 2);
    env[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return env;
}
