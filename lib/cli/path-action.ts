// `mpath-watchdog fail MAP PATH` and `reinstate MAP PATH`: one dm message
// through MultipathMap, which refuses a path that is not in the map before
// anything is sent; then the path's new state is read back and printed.
import { DeviceMapper } from '../dm/control';
import { MultipathMap } from '../multipath/map';
import { EXIT, parse, positionals } from './args';
import { COMMON_OPTIONS, JSON_OPTION, type Command } from './command';
import type { CliIo } from './output';

const OPTIONS = { ...COMMON_OPTIONS, ...JSON_OPTION } as const;
const FAIL_OPTIONS = { ...OPTIONS, force: { type: 'boolean' } } as const;

function pathCommand(name: 'fail' | 'reinstate'): Command {
  const verb = name === 'fail' ? 'Fails' : 'Reinstates';
  return {
    name,
    summary: name === 'fail' ? 'fail a path of a map (fail_path)' : 'reinstate a failed path of a map (reinstate_path)',
    help: `usage: mpath-watchdog ${name} MAP PATH${name === 'fail' ? ' [--force]' : ''} [--json]

${verb} PATH of multipath map MAP with the dm message ${name}_path. PATH is
major:minor (8:16), a device name (sdb) or a device node (/dev/sdb); a path
that is not in MAP is refused before any message is sent. Note: while
multipathd runs it may undo this on its next check; use multipathd's own
commands there.${name === 'fail' ? `

The last active path is not failed (exit 1, nothing sent) unless --force:
with no active path left, I/O fails or queues.` : ''}

options:${name === 'fail' ? `
  --force     fail it even if no other path is active` : ''}
  --json      print the path afterwards as JSON
  -h, --help  this text`,
    async run(argv, io: CliIo) {
      const { values, positionals: pos } = parse(name, argv, name === 'fail' ? FAIL_OPTIONS : OPTIONS);
      const [map, spec] = positionals(name, pos, ['MAP', 'PATH']) as [string, string];
      const mp = await MultipathMap.open(new DeviceMapper(), map);
      const devno = await mp.resolvePath(spec);
      if (name === 'fail') await mp.failPath(devno, { keepActive: 'force' in values && values.force === true ? 0 : 1 });
      else await mp.reinstatePath(devno);
      const p = (await mp.paths()).find((x) => x.devno === devno);
      const out = { map, devno, name: p?.name ?? null, state: p?.state ?? null, failCount: p?.failCount ?? null };
      if (values.json) io.stdout.write(`${JSON.stringify(out)}\n`);
      else io.stdout.write(`${map}: path ${devno}${out.name ? ` (${out.name})` : ''} is now ${out.state ?? 'unknown'}, fail count ${out.failCount ?? '?'}\n`);
      return EXIT.ok;
    },
  };
}

/** The fail subcommand. */
export const failCommand: Command = pathCommand('fail');
/** The reinstate subcommand. */
export const reinstateCommand: Command = pathCommand('reinstate');
