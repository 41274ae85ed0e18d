// The kernel command line is split at spaces and has no quoting, so a path that
// goes onto it (stage 2, the job, the modules, another root, binds) must be plain:
// a space in TMPDIR would otherwise split it, and ` mpw_stage2=…` in one would
// override stage 2.
import { VmError } from './errors';

/** Returns `path` if it is absolute and made of A-Z a-z 0-9 . _ / + - @ ~ = only (no space, quote, ':' or ','); throws VmError otherwise. */
export function checkPlainPath(path: string): string {
  // ':' and ',' separate mpw_binds=FROM:TO,…; a space separates arguments.
  if (!/^\/[A-Za-z0-9._/+@~=-]*$/.test(path)) {
    throw new VmError(`path '${path}' has characters the runner does not pass through on the kernel command line (use only A-Z a-z 0-9 . _ / + - @ ~ =)`);
  }
  return path;
}
