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
