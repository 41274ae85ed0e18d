// Range checks of numeric options, shared by every folder that takes them.

/** `v` if it is an integer >= `min`; throws RangeError naming `name` otherwise. */
export function checkInteger(name: string, v: number, min: number): number {
  if (!Number.isInteger(v) || v < min) throw new RangeError(`${name} must be an integer >= ${min}, got ${v}`);
  return v;
}
