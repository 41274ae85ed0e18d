// One check for every malformed-input table: the parser must throw a
// MultipathParseError that names the offending token, its index and what it expected.
import assert from 'node:assert/strict';
import { MultipathParseError } from '../../../lib/multipath';

/** [input, index of the offending token, the token (undefined: the input ended), the expectation]. */
export type MalformedCase = [string, number, string | undefined, RegExp];

/** Asserts that `parse` rejects every case with the right token, index and expectation. */
export function assertParseErrors(parse: (s: string) => unknown, cases: readonly MalformedCase[], subject: string): void {
  for (const [input, index, token, expected] of cases) {
    const label = JSON.stringify(input);
    assert.throws(
      () => parse(input),
      (err: unknown) => {
        assert.ok(err instanceof MultipathParseError, `${label}: ${String(err)}`);
        assert.equal(err.index, index, `index for ${label}: ${err.message}`);
        assert.equal(err.token, token, `token for ${label}: ${err.message}`);
        assert.match(err.expected, expected, `expectation for ${label}: ${err.message}`);
        assert.equal(err.input, input);
        assert.ok(err.message.startsWith(`${subject}: expected `), err.message);
        return true;
      },
    );
  }
}
