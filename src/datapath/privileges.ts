// What the lab and the agent need from the machine, checked up front so a missing piece is
// explained instead of surfacing as EPERM from deep inside libbpf or iproute2.
import { execFileSync } from 'node:child_process';

export class PrivilegeError extends Error {
  override name = 'PrivilegeError';
}

function haveCommand(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Throws a PrivilegeError saying what is missing for `what` (e.g. "weir lab up"). */
export function requirePrivileges(what: string, euid: number | undefined = process.geteuid?.()): void {
  const missing: string[] = [];
  if (euid !== undefined && euid !== 0) {
    missing.push('root: it creates network namespaces and veths (CAP_NET_ADMIN, CAP_SYS_ADMIN) and loads BPF programs (CAP_BPF, CAP_PERFMON); run it as root, e.g. `sudo weir ...`');
  }
  if (!haveCommand('ip')) missing.push('the `ip` command (Debian package iproute2; `npm run setup` installs it)');
  if (missing.length > 0) throw new PrivilegeError(`${what} needs ${missing.join('; and ')}`);
}

/** Turns the kernel's refusals into an explanation (EPERM/ENOSYS from the bpf() syscall). */
export function explainBpfFailure(err: unknown): string | undefined {
  const code = (err as { code?: string }).code;
  if (code === 'EPERM' || code === 'EACCES') {
    return 'the kernel refused a BPF operation: run as root (CAP_BPF and CAP_NET_ADMIN), and check that kernel.unprivileged_bpf_disabled or a security module does not forbid it';
  }
  if (code === 'ENOSYS' || code === 'EOPNOTSUPP') {
    return 'this kernel lacks BPF support Weir needs (CONFIG_BPF_SYSCALL, tc/clsact, BTF, ring buffers: Linux 5.8 or later)';
  }
  return undefined;
}
