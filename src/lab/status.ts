// `weir lab status`: what the lab holds and what its datapath has counted.
import { formatSelector } from '../policy/selector.js';
import { compareGlobalPolicies } from '../datastore/host-objects.js';
import { autoHostEndpointName } from '../datastore/auto-host-endpoints.js';
import type { Lab } from './lab.js';
import { labFailsafes, labHostEndpoints, labNodeName } from './host-protection.js';

const portList = (ports: readonly { protocol: string; port: number }[]) => ports.map((p) => `${p.protocol.toLowerCase()}:${p.port}`).join(',') || '(none)';

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
  lines.push('', `HOST PROTECTION (node ${labNodeName(s)}${s.uplink ? `; uplink ${s.uplink.ifname} ifindex ${s.uplink.ifindex} carries the host-device programs` : '; no policed uplink'})`);
  const heps = labHostEndpoints(s);
  const auto = autoHostEndpointName(labNodeName(s));
  if (heps.length === 0) lines.push('  host endpoints: (none: the node is not policed)');
  for (const h of heps) {
    const labels = Object.entries(h.labels).map(([k, v]) => `${k}=${v}`).join(',') || '-';
    const note = s.autoHostEndpoints && h.name === auto && !cluster.hostEndpoints.has(h.name) ? '  (automatic)' : '';
    lines.push(`  HostEndpoint ${h.name.padEnd(27)} node ${h.node}  interface ${h.interfaceName}  labels ${labels}  expectedIPs ${h.expectedIPs.join(',') || '-'}${note}`);
  }
  for (const g of [...cluster.globalPolicies.values()].sort(compareGlobalPolicies)) {
    lines.push(`  GlobalNetworkPolicy ${g.name.padEnd(20)} order ${g.order ?? '-'}  selector: ${formatSelector(g.selector)}  types: ${g.types.join(',')}${g.applyOnForward ? '  applyOnForward' : ''}`);
  }
  const fs = labFailsafes(s);
  lines.push(fs.enabled ? `  failsafes: inbound ${portList(fs.inbound)}; outbound ${portList(fs.outbound)}` : '  failsafes: DISABLED (a host policy can lock operators out of the node)');
  lines.push('', `DATAPATH (${compiled.policy.size} policy entries, ${compiled.endpoints.size} endpoint addresses)`);
  for (const [name, v] of lab.dp.reasonStats()) {
    if (v.packets > 0n) lines.push(`  ${name.padEnd(24)} ${String(v.packets).padStart(10)} packets ${String(v.bytes).padStart(12)} bytes`);
  }
  for (const [name, v] of lab.dp.counters()) lines.push(`  ${name.padEnd(24)} ${String(v).padStart(10)}`);
  return lines.join('\n');
}
