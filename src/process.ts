// Whether a process still runs, for the files Weir names after pids (an agent's agent.json, a lab's
// pod processes, the store's staged insert blocks): kill(pid, 0) sends nothing, and EPERM means
// the process exists but belongs to someone else.

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
