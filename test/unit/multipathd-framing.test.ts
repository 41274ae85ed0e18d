// The multipathd wire format: an 8-byte native size_t length (counting the
// NUL), then the bytes and their NUL (libmpathcmd/mpath_cmd.c).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encodeFrame, FrameDecoder, FramingError, LENGTH_BYTES, MAX_COMMAND_BYTES } from '../../lib/multipathd';
import { replyFrame } from './helpers/fake-multipathd';

test('encodeFrame: length prefix counts the NUL, little-endian size_t, command then NUL', () => {
  const f = encodeFrame('show maps');
  assert.equal(LENGTH_BYTES, 8);
  assert.equal(f.length, 8 + 10);
  assert.equal(f.readBigUInt64LE(0), 10n);
  assert.equal(f.subarray(8, 17).toString(), 'show maps');
  assert.equal(f[17], 0);
});

test('encodeFrame: counts UTF-8 bytes and refuses what the daemon would drop', () => {
  assert.equal(encodeFrame('é').readBigUInt64LE(0), 3n);
  assert.equal(encodeFrame('x'.repeat(MAX_COMMAND_BYTES - 1)).length, 8 + MAX_COMMAND_BYTES);
  assert.throws(() => encodeFrame('x'.repeat(MAX_COMMAND_BYTES)), (e: unknown) => e instanceof FramingError && /513 bytes .* at most 512/.test(e.message));
  assert.throws(() => encodeFrame(''), /non-empty/);
  assert.throws(() => encodeFrame('   '), /non-empty/);
  assert.throws(() => encodeFrame('show\0maps'), /NUL/);
});

test('FrameDecoder: one whole frame', () => {
  const d = new FrameDecoder();
  assert.equal(d.push(replyFrame('ok\n')), 'ok\n');
  assert.equal(d.done, true);
  assert.equal(d.push(Buffer.alloc(0)), undefined);
});

test('FrameDecoder: a frame fed byte by byte gives the payload only at the last byte', () => {
  const frame = replyFrame('sdc|8:32');
  const d = new FrameDecoder();
  for (let i = 0; i < frame.length - 1; i++) assert.equal(d.push(frame.subarray(i, i + 1)), undefined, `byte ${i}`);
  assert.deepEqual(d.progress(), { have: frame.length - 1, want: frame.length });
  assert.equal(d.push(frame.subarray(frame.length - 1)), 'sdc|8:32');
});

test('FrameDecoder: any split of a frame gives the same payload (property)', () => {
  fc.assert(
    fc.property(fc.string({ minLength: 0, maxLength: 300 }).filter((s) => !s.includes('\0')), fc.array(fc.nat(400), { maxLength: 6 }), (text, cuts) => {
      const frame = replyFrame(text);
      const points = [...new Set(cuts.map((c) => c % (frame.length + 1)))].sort((a, b) => a - b);
      const d = new FrameDecoder();
      let out: string | undefined;
      let prev = 0;
      for (const p of [...points, frame.length]) {
        const r = d.push(frame.subarray(prev, p));
        if (r !== undefined) out = r;
        prev = p;
      }
      assert.equal(out, text);
    }),
  );
});

test('FrameDecoder: bytes after the frame (two frames joined) are refused', () => {
  const d = new FrameDecoder();
  assert.throws(() => d.push(Buffer.concat([replyFrame('ok\n'), replyFrame('ok\n')])), (e: unknown) => e instanceof FramingError && /12 unexpected bytes/.test(e.message));
  const d2 = new FrameDecoder();
  assert.equal(d2.push(replyFrame('a')), 'a');
  assert.throws(() => d2.push(Buffer.from([1])), /unexpected bytes/);
});

test('FrameDecoder: zero and oversize lengths are refused from the prefix alone', () => {
  const zero = Buffer.alloc(8);
  assert.throws(() => new FrameDecoder().push(zero), /length is 0/);
  const d = new FrameDecoder(16);
  const big = Buffer.alloc(8);
  big.writeBigUInt64LE(16n, 0);
  assert.throws(() => d.push(big), (e: unknown) => e instanceof FramingError && /16 is over the limit of 16/.test(e.message));
  const huge = Buffer.alloc(8);
  huge.writeBigUInt64LE(0xffffffffffffffffn, 0);
  assert.throws(() => new FrameDecoder().push(huge), /over the limit/);
  const ok = new FrameDecoder(16);
  assert.equal(ok.push(replyFrame('x'.repeat(14))), 'x'.repeat(14));
});

test('FrameDecoder: the payload ends at its first NUL and must end with one', () => {
  const inner = Buffer.alloc(8 + 8);
  inner.writeBigUInt64LE(8n, 0);
  Buffer.from('ok\0junk\0').copy(inner, 8);
  assert.equal(new FrameDecoder().push(inner), 'ok');
  const unterminated = Buffer.alloc(8 + 2);
  unterminated.writeBigUInt64LE(2n, 0);
  Buffer.from('ok').copy(unterminated, 8);
  assert.throws(() => new FrameDecoder().push(unterminated), /not NUL-terminated/);
  assert.equal(new FrameDecoder().push(replyFrame('')), '');
});

test('FrameDecoder reads what encodeFrame writes', () => {
  assert.equal(new FrameDecoder(MAX_COMMAND_BYTES + 1).push(encodeFrame('fail path sdc')), 'fail path sdc');
});
