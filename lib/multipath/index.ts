// Public API of the multipath model: table and status grammar, whole lines, path naming.
export { MultipathParseError, MultipathValueError, isSafeToken } from './tokens';
export type { MultipathParseSubject } from './tokens';
export { parseMultipathTable, formatMultipathTable, summarizeFeatures } from './table';
export type {
  QueueMode,
  MultipathFeature,
  HardwareHandler,
  TablePath,
  TablePathGroup,
  MultipathTable,
  FormatOptions,
  FeatureSummary,
} from './table';
export { parseMultipathStatus, formatMultipathStatus } from './status';
export type { GroupState, PathState, StatusPath, StatusPathGroup, MultipathStatus } from './status';
export {
  parseTargetLine,
  formatTargetLine,
  parseMultipathTableLine,
  formatMultipathTableLine,
  parseMultipathStatusLine,
  formatMultipathStatusLine,
} from './line';
export type { TargetLine, MultipathLine } from './line';
export { resolveBlockDevice, readWwid, identifyPath } from './paths';
export type { BlockDevice, PathIdentity, SysfsOptions } from './paths';
export { MultipathMap, LastPathError } from './map';
export type { MultipathPath, MultipathMapOptions, FailPathOptions } from './map';
