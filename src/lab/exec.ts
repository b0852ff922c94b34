// Running the lab's commands (ip, sysctl): execFile without a shell, so arguments never need
// quoting, and failures that quote the command line and its stderr.
import { execFile } from 'node:child_process';

export interface RunResult { stdout: string; stderr: string }

export interface RunOptions {
  /** Kill the command after this long; 0 means never. */
  timeoutMs?: number;
}

/** Commands in the lab are short (ip, sysctl); one that hangs this long is stuck. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 30_000;

/** An Error from a failed command, carrying what was run and what it said. */
export class CommandError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
    readonly signal: string | null,
  ) {
    const how = signal ? `killed by ${signal}` : `exit ${exitCode ?? '?'}`;
    const said = stderr.trim() || '(no stderr)';
    super(`command failed (${how}): ${formatArgv(argv)}: ${said}`);
    this.name = 'CommandError';
  }
}

/** Shell-like rendering of a command line for messages only (never executed). */
export function formatArgv(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`)).join(' ');
}

/** Runs `file args...` and resolves with its output; rejects with a CommandError on failure. */
export function run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const argv = [file, ...args];
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { timeout: opts.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (!err) {
          resolve({ stdout, stderr });
          return;
        }
        const e = err as NodeJS.ErrnoException & { code?: number | string; signal?: string | null };
        if (typeof e.code === 'string') {
          // Spawn failure (ENOENT: the tool is not installed, EACCES, ...).
          reject(new CommandError(argv, null, `${e.code}: ${e.message}`, null));
          return;
        }
        reject(new CommandError(argv, typeof e.code === 'number' ? e.code : null, stderr, e.signal ?? null));
      },
    );
  });
}

/**
 * What `ip` and friends print when the thing to delete is already gone. Teardown treats these as
 * success, so it can run twice, or after a half-finished setup.
 */
const ABSENT_PATTERNS: readonly RegExp[] = [
  /does not exist/i,
  /no such file or directory/i,
  /no such device/i,
  /no such process/i,
  /cannot find device/i,
  /cannot open network namespace/i,
  /invalid netns name/i,
  /not found/i,
];

export function isAbsentError(err: unknown): boolean {
  if (!(err instanceof CommandError)) return false;
  return ABSENT_PATTERNS.some((re) => re.test(err.stderr));
}

/**
 * Like run(), for teardown: a failure saying the object does not exist resolves with
 * `{ absent: true }`; any other failure still rejects.
 */
export async function runIdempotent(
  file: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<RunResult & { absent: boolean }> {
  try {
    return { ...(await run(file, args, opts)), absent: false };
  } catch (err) {
    if (isAbsentError(err)) return { stdout: '', stderr: (err as CommandError).stderr, absent: true };
    throw err;
  }
}
