// What the Watchdog tells its listeners. Every event names the map and the path
// both ways (maj:min and block device name) and carries the evidence behind it.
import type { Attribution } from './attribution';
import type { FailEvidence } from './policy';

/** A path as events name it. */
export interface EventPath {
  /** `major:minor`. */
  devno: string;
  /** Block device name (`sdb`, `dm-3`), or the devno when sysfs has no name for it. */
  name: string;
}

/** The evidence a late-I/O fail rests on: the attribution that named the path. */
export interface LateEvidence {
  /** How the path was found (sysfs counters or probes). */
  method: Attribution['method'];
  /** What was seen on that path. */
  seen: Attribution['suspects'][number]['evidence'] | null;
  /** The attribution's one-line reason. */
  reason: string;
}

/** An I/O of ours passed its deadline. */
export interface IoLateEvent {
  map: string;
  /** Tracker id of the I/O. */
  ioId: number;
  op: 'read' | 'write';
  /** Byte offset and length. */
  offset: number;
  length: number;
  /** How far past the deadline it was when found, ms. */
  lateByMs: number;
  /** Ms since the I/O was submitted (the fault is seen from there). */
  sinceFaultMs: number;
  /** The suspect paths attribution found (empty when it found none). */
  paths: EventPath[];
  /** The whole attribution. */
  attribution: Attribution;
}

/** The watchdog failed a path (or, with dryRun, would have). */
export interface PathFailedEvent {
  map: string;
  path: EventPath;
  /** Ms from the first sign of the fault to the fail being carried out. */
  sinceFaultMs: number;
  /** Why: late I/Os (with their attribution) or the outlier rule. */
  evidence: FailEvidence<LateEvidence>;
  /** Who carried it out ('dm-message', 'multipathd', 'dry-run'). */
  action: string;
  /** Nothing was changed. */
  dryRun: boolean;
  /** No reinstate before this many ms from now. */
  holdDownMs: number;
}

/** The watchdog reinstated a path after fast probes. */
export interface PathReinstatedEvent {
  map: string;
  path: EventPath;
  /** Ms since the path was failed (null when we did not fail it). */
  sinceFaultMs: number | null;
  /** Consecutive fast probes behind the decision. */
  evidence: { fastProbes: number };
  action: string;
  dryRun: boolean;
}

/** A fail was due but would leave fewer usable paths than allowed: the path stays. */
export interface LastPathKeptEvent {
  map: string;
  path: EventPath;
  sinceFaultMs: number;
  evidence: FailEvidence<LateEvidence>;
  /** Usable paths now. */
  usablePaths: number;
}

/** A failure inside the watchdog; it keeps running unless `fatal`. */
export interface WatchdogErrorEvent {
  map: string;
  /** What was being done ('fail', 'reinstate', 'dm-status', 'sampling', 'attribution', 'events', 'hedge', 'internal'). */
  during: string;
  error: Error;
  path?: EventPath;
  /** The watchdog stopped because of it (the map was removed). */
  fatal: boolean;
}

/** The watchdog stopped: asked to, or because its map was removed (with the error that showed it). */
export interface WatchdogStoppedEvent {
  map: string;
  reason: 'stop' | 'map-removed';
  /** For 'map-removed': the dm error that showed the map gone. */
  error?: Error;
}

/** Event names and their payloads, for typed listeners. */
export interface WatchdogEvents {
  'io-late': [IoLateEvent];
  'path-failed': [PathFailedEvent];
  'path-reinstated': [PathReinstatedEvent];
  'last-path-kept': [LastPathKeptEvent];
  error: [WatchdogErrorEvent];
  stopped: [WatchdogStoppedEvent];
}
