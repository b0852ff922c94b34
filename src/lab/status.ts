// `weir lab status`: what the lab holds and what its datapath has counted.
import { formatSelector } from '../policy/selector.js';
import type { Lab } from './lab.js';

export function formatLabStatus(lab: Lab): string {
  const s = lab.snapshot;
  const compiled = lab.compiled();
  const lines: string[] = [`lab "${s.name}" (up since ${s.createdAt}; node netns ${s.nodeNetns}; pins ${s.pinRoot})`, '', 'PODS'];
  const byKey = new Map([...compiled.endpoints.values()].map((e) => [e.key, e]));
  for (const [key, p] of Object.entries(s.pods).sort()) {
    const ep = byKey.get(key);
    const iso = ep ? [ep.flags & 2 ? 'ingress' : '', ep.flags & 4 ? 'egress' : ''].filter(Boolean).join('+') || 'none' : '?';
    lines.push(`  ${key.padEnd(28)} ${(p.ipv4 ?? '-').padEnd(15)} ${(p.ipv6 ?? '-').padEnd(22)} ${p.hostIfname}  ports ${p.ports.join(',') || '-'}  isolated: ${iso}  identity ${ep?.identity ?? '?'}`);
  }
  lines.push('', 'NETWORK POLICIES');
  const cluster = lab.cluster();
  if (cluster.policies.size === 0) lines.push('  (none)');
  for (const pol of cluster.policies.values()) {
    lines.push(`  ${`${pol.namespace}/${pol.name}`.padEnd(40)} pods: ${formatSelector(pol.podSelector)}  types: ${pol.policyTypes.join(',')}`);
  }
  lines.push('', `DATAPATH (${compiled.policy.size} policy entries, ${compiled.endpoints.size} endpoint addresses)`);
  for (const [name, v] of lab.dp.reasonStats()) {
    if (v.packets > 0n) lines.push(`  ${name.padEnd(24)} ${String(v.packets).padStart(10)} packets ${String(v.bytes).padStart(12)} bytes`);
  }
  for (const [name, v] of lab.dp.counters()) lines.push(`  ${name.padEnd(24)} ${String(v).padStart(10)}`);
  return lines.join('\n');
}
