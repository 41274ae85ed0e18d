// Parsing the `show paths|maps raw format "…"` replies. The wildcards and their
// header names are those of multipath-tools libmultipath/print.c (pd[] and
// mpd[]); fields are joined with '|', which none of the chosen fields can
// contain, so a value with spaces ("i/o pending") stays one field.
import { MultipathdError } from './errors';

/** One column: the record key, its wildcard, and the header multipathd prints for it. */
export interface FormatField {
  /** Key in the parsed record. */
  readonly key: string;
  /** The format wildcard, e.g. `%d`. */
  readonly wildcard: string;
  /** The column header print.c uses (present when `raw` is not supported). */
  readonly header: string;
}

/** The path columns asked for (libmultipath/print.c, pd[]). */
export const PATH_FIELDS: readonly FormatField[] = [
  { key: 'dev', wildcard: '%d', header: 'dev' },
  { key: 'devno', wildcard: '%D', header: 'dev_t' },
  { key: 'map', wildcard: '%m', header: 'multipath' },
  { key: 'dmState', wildcard: '%t', header: 'dm_st' },
  { key: 'checkerState', wildcard: '%T', header: 'chk_st' },
  { key: 'deviceState', wildcard: '%o', header: 'dev_st' },
  { key: 'wwid', wildcard: '%w', header: 'uuid' },
];

/** The map columns asked for (libmultipath/print.c, mpd[]). */
export const MAP_FIELDS: readonly FormatField[] = [
  { key: 'name', wildcard: '%n', header: 'name' },
  { key: 'wwid', wildcard: '%w', header: 'uuid' },
  { key: 'sysfs', wildcard: '%d', header: 'sysfs' },
  { key: 'dmState', wildcard: '%t', header: 'dm-st' },
  { key: 'paths', wildcard: '%N', header: 'paths' },
];

/** A path as multipathd sees it. */
export interface MultipathdPath {
  /** Kernel name, e.g. `sdc`. */
  dev: string;
  /** `major:minor`. */
  devno: string;
  /** The map's name (alias), or undefined for a path in no map ("[orphan]"). */
  map: string | undefined;
  /** dm's view: 'active', 'failed' or 'undef'. */
  dmState: string;
  /** The checker's view: 'ready', 'faulty', 'shaky', 'ghost', 'i/o pending', 'delayed', 'undef', … */
  checkerState: string;
  /** The SCSI device state: 'running', 'offline', … */
  deviceState: string;
  /** The path's WWID. */
  wwid: string;
}

/** A map as multipathd sees it. */
export interface MultipathdMap {
  /** dm name (alias or WWID). */
  name: string;
  /** WWID. */
  wwid: string;
  /** Kernel name of the map device, e.g. `dm-0`. */
  sysfs: string;
  /** 'active', 'suspend', … */
  dmState: string;
  /** Number of paths. */
  paths: number;
}

/** The `format` argument for these fields. */
export function formatOf(fields: readonly FormatField[]): string {
  return fields.map((f) => f.wildcard).join('|');
}

/**
 * Splits a formatted reply into records keyed by field. Skips a header line
 * (when the daemon prints one) and a bare "ok" (the reply to an empty list).
 * Throws MultipathdError('protocol') on a line with the wrong number of fields.
 */
export function parseFormatted(reply: string, fields: readonly FormatField[], command = 'show … format'): Record<string, string>[] {
  const lines = reply.split('\n').map((l) => l.trimEnd()).filter((l) => l.trim() !== '');
  if (lines.length === 1 && lines[0]?.trim() === 'ok') return [];
  const out: Record<string, string>[] = [];
  for (const [i, line] of lines.entries()) {
    const parts = line.split('|').map((p) => p.trim());
    if (parts.length !== fields.length) {
      throw new MultipathdError('protocol', command, `line ${i + 1} of the reply to '${command}' has ${parts.length} fields, expected ${fields.length}: ${JSON.stringify(line)}`, { reply });
    }
    if (i === 0 && parts.every((p, j) => p === fields[j]?.header)) continue;
    const rec: Record<string, string> = {};
    for (const [j, f] of fields.entries()) rec[f.key] = parts[j] as string;
    out.push(rec);
  }
  return out;
}

/** A parsed `show paths` record as a MultipathdPath. */
export function toPath(rec: Record<string, string>): MultipathdPath {
  const map = rec['map'] ?? '';
  return {
    dev: rec['dev'] ?? '',
    devno: rec['devno'] ?? '',
    // snprint_path_mpp prints these for a path without a map (libmultipath/print.c).
    map: map === '' || map === '[orphan]' || map === '[unknown]' ? undefined : map,
    dmState: rec['dmState'] ?? '',
    checkerState: rec['checkerState'] ?? '',
    deviceState: rec['deviceState'] ?? '',
    wwid: rec['wwid'] ?? '',
  };
}

/** A parsed `show maps` record as a MultipathdMap. */
export function toMap(rec: Record<string, string>): MultipathdMap {
  const paths = Number(rec['paths']);
  return {
    name: rec['name'] ?? '',
    wwid: rec['wwid'] ?? '',
    sysfs: rec['sysfs'] ?? '',
    dmState: rec['dmState'] ?? '',
    paths: Number.isInteger(paths) ? paths : 0,
  };
}
