// The metrics module on the host: our own registry, counters moved by
// Watchdog events, the latency histogram, and the /metrics endpoint.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { register as globalRegistry } from 'prom-client';
import { WatchdogMetrics, serveMetrics } from '../../lib/metrics';
import { Watchdog, type PathFailedEvent, type WatchdogErrorEvent } from '../../lib/index';

test('events move the counters; gauges come from stats(); nothing lands in the global registry', async () => {
  const m = new WatchdogMetrics();
  const wd = new Watchdog({ map: 'mpw-m', timeoutMs: 500 });
  const detach = m.attach(wd);
  const path = { devno: '8:16', name: 'sdb' };
  wd.emit('path-failed', { map: 'mpw-m', path } as PathFailedEvent);
  wd.emit('path-failed', { map: 'mpw-m', path } as PathFailedEvent);
  wd.emit('error', { map: 'mpw-m', during: 'fail', error: new Error('x'), fatal: false } satisfies WatchdogErrorEvent);
  m.observeIo('mpw-m', 'read', 3);
  m.observeIo('mpw-m', 'read', 1500);
  const text = await m.registry.metrics();
  assert.match(text, /^mpath_watchdog_paths_failed_total\{map="mpw-m",path="8:16",device="sdb"\} 2$/m);
  assert.match(text, /^mpath_watchdog_errors_total\{map="mpw-m",during="fail"\} 1$/m);
  assert.match(text, /^mpath_watchdog_io_latency_seconds_count\{map="mpw-m",op="read"\} 2$/m);
  assert.match(text, /^mpath_watchdog_io_latency_seconds_bucket\{le="0.005",map="mpw-m",op="read"\} 1$/m);
  assert.match(text, /^mpath_watchdog_inflight\{map="mpw-m"\} 0$/m);
  assert.deepEqual(globalRegistry.getMetricsAsArray(), []);
  detach();
  wd.emit('path-failed', { map: 'mpw-m', path } as PathFailedEvent);
  assert.match(await m.registry.metrics(), /^mpath_watchdog_paths_failed_total\{map="mpw-m",path="8:16",device="sdb"\} 2$/m, 'detached: no longer counted');
});

test('serveMetrics: /metrics in the Prometheus text format, 404 elsewhere, close() frees the port', async () => {
  const m = new WatchdogMetrics();
  const server = await serveMetrics(m.registry, '127.0.0.1', 0);
  try {
    assert.ok(server.port > 0);
    const res = await fetch(server.url);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    assert.match(await res.text(), /^# TYPE mpath_watchdog_paths_reinstated_total counter$/m);
    assert.equal((await fetch(`http://127.0.0.1:${server.port}/`)).status, 404);
  } finally {
    await server.close();
  }
  await assert.rejects(fetch(server.url));
  await assert.rejects(serveMetrics(m.registry, '256.0.0.1', 0), /ENOTFOUND|EADDRNOTAVAIL|EAI_/);
});

test('serveMetrics: a connection cap, and a client that trickles its headers is cut off', { timeout: 20_000 }, async () => {
  const { connect } = await import('node:net');
  const m = new WatchdogMetrics();
  // A long request and idle timeout, a short headers one: the trickling sockets must fall to the latter.
  const server = await serveMetrics(m.registry, '127.0.0.1', 0, { maxConnections: 2, headersTimeoutMs: 300, requestTimeoutMs: 8000 });
  const open = (): Promise<import('node:net').Socket> => new Promise((res, rej) => {
    const s = connect(server.port, '127.0.0.1', () => res(s));
    s.once('error', rej);
  });
  const closed = (s: import('node:net').Socket): Promise<string> => new Promise((res) => {
    let got = '';
    s.on('data', (d: Buffer) => { got += d.toString('latin1'); });
    s.once('close', () => res(got));
  });
  try {
    // Two sockets that never finish their headers hold the two connections.
    const slow = [await open(), await open()];
    for (const s of slow) s.write('GET /metrics HTTP/1.1\r\nHost: x\r\n');
    const ended = slow.map(closed);
    // A third is accepted by the kernel and closed at once by the server.
    const third = await open();
    assert.equal(await closed(third), '', 'the connection over the cap got nothing');
    // The trickling ones are dropped by the headers timeout (408), long before the 8 s request and idle one.
    const t0 = performance.now();
    const replies = await Promise.all(ended);
    const waited = performance.now() - t0;
    for (const r of replies) assert.match(r, /^HTTP\/1\.1 408/);
    assert.ok(waited < 6000, `dropped after ${waited.toFixed(0)} ms: by the request timeout, not the headers one`);
    // With them gone, a scrape works.
    assert.equal((await fetch(server.url)).status, 200);
  } finally {
    await server.close();
  }
});
