// `weir policy check`: offline validation of Kubernetes manifests (host protection objects
// included, with warnings about failsafe ports) and, when pods are known, who may talk to whom,
// as the reference evaluator (reference.ts) says. No cluster, lab or privileges.
import { ClusterState } from '../datastore/cluster.js';
import { loadManifests } from '../datastore/manifest.js';
import type { KubeObject, L4Protocol, NetworkPolicy, Pod } from '../datastore/objects.js';
import { describeObject, isNamespaced } from '../datastore/objects.js';
import type { GlobalNetworkPolicy } from '../datastore/host-objects.js';
import { failsafesFrom, shadowedFailsafes, type FailsafeSettings, type Failsafes } from './failsafe.js';
import { assignAddresses } from '../lab/addresses.js';
import { formatProbeTable, type ProbeResult } from '../lab/probe.js';
import { evaluate, type Decision } from './reference.js';

export interface PolicyCheckOptions {
  /** manifests: Namespaces, Pods, NetworkPolicies */
  readonly files: readonly string[];
  /** more manifests, usually the Pods (status.podIP(s) used when given, else lab addresses) */
  readonly pods?: readonly string[];
  /** one port instead of every port the policies name */
  readonly port?: number;
  /** with `port`, its protocol (default TCP); without, only the policies' ports of this protocol */
  readonly protocol?: L4Protocol;
  readonly family?: 4 | 6;
  /** failsafe ports the host protection warnings assume (default: the default lists) */
  readonly failsafes?: FailsafeSettings;
}

export interface CheckProbeResult extends ProbeResult {
  readonly egress: Decision;
  readonly ingress: Decision;
}

export interface CheckReport {
  readonly port: number;
  readonly protocol: L4Protocol;
  readonly results: CheckProbeResult[];
}

export interface PolicyCheckResult {
  readonly objects: number;
  readonly policies: number;
  readonly pods: number;
  readonly hostEndpoints: number;
  readonly globalPolicies: number;
  /** not errors, but likely surprises: Deny rules that failsafes override, failsafes disabled */
  readonly warnings: string[];
  /** not errors: things worth knowing (e.g. namespaces assumed to exist) */
  readonly notes: string[];
  /** pod -> the addresses the matrix used */
  readonly addresses: Record<string, string[]>;
  /** one reachability matrix per port, when there are pods */
  readonly reports: CheckReport[];
}

/** The (protocol, port) pairs the policies name: numbers, both ends of ranges, and named ports
 * resolved against the pods' container ports. Protocol-only ports name no number. */
export function policyPorts(policies: readonly NetworkPolicy[], pods: readonly Pod[]): { protocol: L4Protocol; port: number }[] {
  const seen = new Map<string, { protocol: L4Protocol; port: number }>();
  const add = (protocol: L4Protocol, port: number) => seen.set(`${protocol}/${port}`, { protocol, port });
  for (const pol of policies) {
    for (const rule of [...pol.ingress, ...pol.egress]) {
      for (const p of rule.ports ?? []) {
        if (typeof p.port === 'number') {
          add(p.protocol, p.port);
          if (p.endPort !== undefined) add(p.protocol, p.endPort);
        } else if (typeof p.port === 'string') {
          for (const pod of pods) for (const c of pod.ports) if (c.name === p.port && c.protocol === p.protocol) add(c.protocol, c.port);
        }
      }
    }
  }
  const order = ['TCP', 'UDP', 'SCTP'];
  return [...seen.values()].sort((a, b) => order.indexOf(a.protocol) - order.indexOf(b.protocol) || a.port - b.port);
}

const DEFAULT_PORT = { protocol: 'TCP' as const, port: 80 };

/** Validates every object (throws ManifestError or ClusterStateError listing every problem) and,
 * with pods, evaluates every pod to every pod (itself included) on each port. */
export function checkPolicies(opts: PolicyCheckOptions): PolicyCheckResult {
  const failsafes = failsafesFrom(opts.failsafes); // throws FailsafeConfigError
  const loaded = loadManifests([...opts.files, ...(opts.pods ?? [])]).map((o) => o.object);
  const notes: string[] = [];

  // Offline, a namespace without a manifest is assumed to exist (with only the label the API
  // server sets), so a policy file can be checked on its own.
  const declared = new Set(loaded.filter((o) => o.kind === 'Namespace').map((o) => o.name));
  const implicit = [...new Set(loaded.flatMap((o) => (isNamespaced(o) ? [o.namespace] : [])))]
    .filter((ns) => ns !== 'default' && !declared.has(ns)).sort();
  const objects: KubeObject[] = [
    ...implicit.map((name): KubeObject => ({ kind: 'Namespace', name, labels: { 'kubernetes.io/metadata.name': name } })),
    ...loaded,
  ];
  for (const ns of implicit) notes.push(`Namespace ${ns} has no manifest: assumed to exist with only the label kubernetes.io/metadata.name=${ns}`);
  const cluster = new ClusterState(objects); // references and duplicate addresses

  const policies = [...cluster.policies.values()];
  const globalPolicies = [...cluster.globalPolicies.values()];
  const warnings = hostWarnings(globalPolicies, failsafes, opts.failsafes?.disabled === true);

  const pods = [...cluster.pods.values()].sort((a, b) => (`${a.namespace}/${a.name}` < `${b.namespace}/${b.name}` ? -1 : 1));
  // Addresses as the lab assigns them: the manifest's, else the lowest free pool address.
  const inUse = new Set(pods.flatMap((p) => p.ips));
  const addresses: Record<string, string[]> = {};
  for (const pod of pods) {
    const a = assignAddresses(pod.ips, inUse);
    inUse.add(a.ipv4);
    inUse.add(a.ipv6);
    addresses[`${pod.namespace}/${pod.name}`] = [a.ipv4, a.ipv6];
  }
  const placement = new Map(Object.entries(addresses));

  let ports: { protocol: L4Protocol; port: number }[];
  if (opts.port !== undefined) {
    ports = [{ protocol: opts.protocol ?? 'TCP', port: opts.port }];
  } else {
    ports = policyPorts(policies, pods).filter((p) => !opts.protocol || p.protocol === opts.protocol);
    if (ports.length === 0) {
      ports = [opts.protocol ? { protocol: opts.protocol, port: 80 } : DEFAULT_PORT];
      if (pods.length > 0) notes.push(`the policies name no port${opts.protocol ? ` of ${opts.protocol}` : ''}: showing ${ports[0]!.protocol}/${ports[0]!.port}`);
    }
  }

  const family = opts.family ?? 4;
  const ipOf = (key: string) => addresses[key]![family === 4 ? 0 : 1]!;
  const reports: CheckReport[] = pods.length === 0 ? [] : ports.map(({ protocol, port }) => ({
    port,
    protocol,
    results: pods.flatMap((from) => pods.map((to): CheckProbeResult => {
      const f = `${from.namespace}/${from.name}`;
      const t = `${to.namespace}/${to.name}`;
      const e = evaluate(cluster, placement, { src: ipOf(f), dst: ipOf(t), protocol, dstPort: port });
      return { from: f, to: t, connected: e.verdict !== 'deny', egress: e.egress, ingress: e.ingress };
    })),
  }));

  if (globalPolicies.length > 0 && reports.length > 0) {
    notes.push('the matrix is pod to pod by NetworkPolicies; GlobalNetworkPolicies are validated but not evaluated in it');
  }

  return {
    objects: loaded.length, policies: policies.length, pods: pods.length,
    hostEndpoints: cluster.hostEndpoints.size, globalPolicies: globalPolicies.length,
    warnings, notes, addresses, reports,
  };
}

/** What a user of host protection should hear before enforcing: failsafes disabled (a policy can
 * then lock operators out of the node), and every Deny rule that failsafes override. */
export function hostWarnings(globalPolicies: readonly GlobalNetworkPolicy[], failsafes: Failsafes, disabled: boolean): string[] {
  const warnings: string[] = [];
  if (disabled || !failsafes.enabled) warnings.push('failsafe ports are disabled: a host policy can lock you out of the node');
  const sorted = [...globalPolicies].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const policy of sorted) {
    const byRule = new Map<string, string[]>();
    for (const s of shadowedFailsafes(policy, failsafes)) {
      const field = `spec.${s.direction === 'Ingress' ? 'ingress' : 'egress'}[${s.index}]`;
      const list = byRule.get(field) ?? [];
      list.push(`${s.failsafe.protocol} ${s.failsafe.port}`);
      byRule.set(field, list);
    }
    for (const [field, ports] of byRule) {
      warnings.push(`${describeObject(policy)}: ${field}: this Deny rule would close failsafe${ports.length === 1 ? '' : 's'} ${ports.join(', ')}; failsafe ports stay open unless failsafes are disabled`);
    }
  }
  return warnings;
}

export function formatCheck(r: PolicyCheckResult): string {
  const n = (count: number, what: string) => `${count} ${what}${count === 1 ? '' : what.endsWith('y') ? 'ies' : 's'}`.replace(/yies$/, 'ies');
  const host = r.hostEndpoints + r.globalPolicies > 0 ? `, ${n(r.globalPolicies, 'GlobalNetworkPolicy')}, ${n(r.hostEndpoints, 'HostEndpoint')}` : '';
  const lines = [`${n(r.objects, 'object')} valid (${n(r.policies, 'NetworkPolicy')}, ${n(r.pods, 'Pod')}${host})`];
  for (const w of r.warnings) lines.push(`warning: ${w}`);
  for (const n of r.notes) lines.push(`note: ${n}`);
  for (const report of r.reports) {
    lines.push('');
    // ProbeResult's matrix, computed by the reference evaluator instead of real traffic.
    lines.push(formatProbeTable(report).replace('X blocked)', 'X denied; by the reference evaluator)'));
  }
  return lines.join('\n');
}
