// The demo's view: the sparkline's scale, the live panel redrawn in place, the
// plain narrative elsewhere, and when the live panel is wanted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DemoView, sparkline } from '../../lib/cli/demo-view';
import { wantLive } from '../../lib/cli/demo';

test('sparkline: log scale from 1 ms to 2 s, a gap where nothing completed, clamped at both ends', () => {
  assert.equal(sparkline([0.1, 1, 2000, 99_999]), '▁▁██');
  assert.equal(sparkline([5, null, 5]), `${sparkline([5])} ${sparkline([5])}`);
  const rising = sparkline([1, 5, 25, 125, 600]);
  assert.deepEqual([...rising].map((c) => '▁▂▃▄▅▆▇█'.indexOf(c)), [...rising].map((c) => '▁▂▃▄▅▆▇█'.indexOf(c)).sort((a, b) => a - b), 'monotone');
  assert.equal(sparkline([]), '');
});

function sink(): { out: { write(s: string): void }; text: () => string } {
  let buf = '';
  return { out: { write: (s: string) => { buf += s; } }, text: () => buf };
}

test('plain: narrative lines only, the panel is never drawn', () => {
  const s = sink();
  const v = new DemoView(s.out, false);
  v.panel(['p1', 'p2']);
  v.say('hello');
  v.close();
  assert.equal(s.text(), 'hello\n');
});

test('live: the panel is redrawn in place, and a narrative line goes above it', () => {
  const s = sink();
  const v = new DemoView(s.out, true);
  v.panel(['a', 'b']);
  assert.equal(s.text(), 'a\nb\n');
  v.panel(['c', 'd', 'e']);
  // Up two lines (the panel drawn), clear, draw the new one.
  assert.equal(s.text(), 'a\nb\n\x1b[2F\x1b[Jc\nd\ne\n');
  v.say('line');
  assert.ok(s.text().endsWith('\x1b[3F\x1b[Jline\nc\nd\ne\n'));
  v.close();
  v.panel(['late refresh']);
  v.say('after');
  assert.ok(s.text().endsWith('e\nafter\n'), 'after close the last panel stays, is not erased, and a late refresh draws nothing');
});

test('wantLive: a terminal at the far end, not CI, not dumb, not --plain', () => {
  assert.equal(wantLive(true, { MPW_HOST_TTY: '1', TERM: 'xterm' }, false), true);
  assert.equal(wantLive(true, {}, false), true);
  assert.equal(wantLive(false, {}, false), false);
  assert.equal(wantLive(undefined, {}, false), false);
  assert.equal(wantLive(true, { MPW_HOST_TTY: '0' }, false), false);
  assert.equal(wantLive(true, { TERM: 'dumb' }, false), false);
  assert.equal(wantLive(true, { CI: 'true' }, false), false);
  assert.equal(wantLive(true, {}, true), false);
});
