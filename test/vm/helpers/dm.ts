// dmsetup as the oracle for the DeviceMapper tests, and clean-up that cannot
// leave the guest hung: resume before remove, ignore what is already gone.

/** Runs dmsetup; rejects on a non-zero exit. */
export async function dmsetup(...args: string[]): Promise<string> {
  const { execa } = await import('execa');
  return (await execa('dmsetup', args)).stdout;
}

/** `dmsetup ls` as sorted "name major:minor" lines ('No devices found' → none). */
export async function dmsetupLs(): Promise<string[]> {
  const out = await dmsetup('ls');
  const lines: string[] = [];
  for (const line of out.split('\n')) {
    const m = /^(\S+)\s+\((\d+)(?::\s*|,\s*)(\d+)\)$/.exec(line.trim());
    if (m) lines.push(`${m[1]} ${m[2]}:${m[3]}`);
  }
  return lines.sort();
}

/** Resumes then removes each device that exists, in order; never throws. */
export async function forceCleanup(...names: string[]): Promise<void> {
  for (const name of names) {
    await dmsetup('resume', name).catch(() => undefined);
    await dmsetup('remove', name).catch(() => undefined);
  }
}

/** Lines of a DmTarget list as dmsetup prints them ("%llu %llu %s %s"). */
export function asDmsetupLines(targets: ReadonlyArray<{ start: number; length: number; type: string; params: string }>): string {
  return targets.map((t) => `${t.start} ${t.length} ${t.type} ${t.params}`).join('\n');
}
