// The watchdog's pure pieces: clock, in-flight tracker, latency statistics
// and policy. The Watchdog class that wires them to the engine and dm builds
// on these.
export { type Clock, type TimerHandle, type SystemClockOptions, SystemClock, msFromNs } from './clock';
export { FakeClock } from './fake-clock';
export { type TrackedIo, type LateIo, type TrackerOptions, InflightTracker } from './tracker';
export { LogHistogram, HISTOGRAM_BUCKETS } from './histogram';
export {
  type MedianSample,
  type LatencyOptions,
  type PathLatencySnapshot,
  SlidingMedian,
  WindowedHistogram,
  PathLatency,
  LatencyBook,
} from './latency';
export { type PolicyOptions, type PolicyOptionsInput, resolvePolicyOptions } from './policy-options';
export {
  type PathId,
  type PathStatus,
  type PathPolicyState,
  type PolicyState,
  type LateObservation,
  type CompletedObservation,
  type LatencyWindowObservation,
  type ProbeObservation,
  type DmStatusObservation,
  type ActionFailedObservation,
  type Observation,
  type FailEvidence,
  type IgnoreReason,
  type Decision,
  type Outcome,
  createPolicyState,
  usablePaths,
  decide,
} from './policy';
export {
  type InflightCounts,
  type StatGroup,
  type BlockStat,
  type CounterSnapshot,
  type SysfsRootOption,
  SysfsFormatError,
  parseInflight,
  parseBlockStat,
  readInflight,
  readBlockStat,
  readCounters,
  completedIos,
  inflightTotal,
} from './sysfs-counters';
export {
  type PathRef,
  type CounterReader,
  type TimedSnapshot,
  type SampleError,
  type SampleRound,
  type CounterSamplerOptions,
  CounterSampler,
} from './counter-sampler';
export { usablePathDevnos, resolveUsablePaths } from './usable-paths';
export { type ProbeRead, type ProbeVerdict, type OutstandingProbe, ProbeTimeoutError, ProbeRunner, isSuspectVerdict, describeError } from './probes';
export {
  type SnapshotHistory,
  type LateIoContext,
  type SysfsView,
  type SuspectEvidence,
  type Suspect,
  type PathView,
  type MapView,
  type AttributionMethod,
  type AttributionDetails,
  type Attribution,
  type AttributorOptions,
  Attributor,
} from './attribution';
export { type PassiveEvidence, type PassiveMapWatch, type PassiveOptions, PassiveMonitor } from './passive';
export { Watchdog } from './watchdog';
export type { WatchdogOptions, WatchdogMode, WatchdogIoOptions, WatchdogIoResult, WatchdogStats, PathStats, PathAction } from './watchdog';
export type { WatchdogEvents, EventPath, LateEvidence, IoLateEvent, PathFailedEvent, PathReinstatedEvent, LastPathKeptEvent, WatchdogErrorEvent, WatchdogStoppedEvent } from './events';
export { DmMessageActions, DryRunActions, SupersededError, type PathActions, type FailRequest, type FailDone } from './actions';
export { WriteFence } from './fence';
export { PathProbeReader, type ProbeReaderOptions } from './probe-reader';
export { TimedDevice } from './timed-device';
export type { TimedDeviceOptions, TimedDeviceStats, TimedIo, TimedIoData, TimedIoOptions, TimedIoResult, TimedLateHandler } from './timed-device';
