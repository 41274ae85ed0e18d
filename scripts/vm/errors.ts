/** A failure of the VM runner itself (not of the guest command), with an exit code of its own. */
export class VmError extends Error {
  /** The process exit status the runner uses for this failure. */
  readonly exitCode: number;
  constructor(message: string, exitCode = EXIT_RUNNER_FAILURE) {
    super(message);
    this.name = 'VmError';
    this.exitCode = exitCode;
  }
}

/** Exit status when the hard deadline killed the guest (same as timeout(1)). */
export const EXIT_DEADLINE = 124;
/** Exit status when the VM could not be prepared, booted or set up. */
export const EXIT_RUNNER_FAILURE = 125;

/** Runs a runner command's main: its resolved status becomes the exit code; a VmError prints one line with its own status, anything else its stack. */
export function runMain(prefix: string, main: (argv: string[]) => Promise<number>): void {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (err: unknown) => {
      const vmErr = err instanceof VmError ? err : undefined;
      process.stderr.write(`${prefix}: error: ${vmErr ? vmErr.message : (err as Error)?.stack ?? String(err)}\n`);
      process.exitCode = vmErr?.exitCode ?? EXIT_RUNNER_FAILURE;
    },
  );
}
