// Failsafe ports: traffic to and from a host's own processes that no host policy can close, so a
// wrong policy never locks operators out of a node (SSH), breaks DHCP or DNS, or cuts the node
// from the control plane (BGP 179, etcd 2379/2380, Typha 5473, the API server 6443, 6666/6667).
// They apply to host endpoints only, to traffic of the host itself (not forwarded traffic), and
// they are checked before any policy. Only disabling them explicitly turns them off.
import type { GlobalNetworkPolicy, GlobalRule } from '../datastore/host-objects.js';
import { PROTOCOL_NUMBERS, protocolNumber } from '../datastore/host-objects.js';
import type { L4Protocol, PolicyType } from '../datastore/objects.js';

export interface FailsafePort {
  readonly protocol: L4Protocol;
  readonly port: number;
}

export interface Failsafes {
  /** false: failsafes explicitly disabled; policy alone decides (the CLI must warn) */
  readonly enabled: boolean;
  /** to the host (its ingress), by destination port */
  readonly inbound: readonly FailsafePort[];
  /** from the host (its egress), by destination port */
  readonly outbound: readonly FailsafePort[];
}

/** The defaults, as a config string (Calico's failsafeInboundHostPorts/-Outbound values). */
export const DEFAULT_FAILSAFE_INBOUND = 'tcp:22,udp:68,tcp:179,tcp:2379,tcp:2380,tcp:5473,tcp:6443,tcp:6666,tcp:6667';
export const DEFAULT_FAILSAFE_OUTBOUND = 'udp:53,udp:67,tcp:179,tcp:2379,tcp:2380,tcp:5473,tcp:6443,tcp:6666,tcp:6667';

export class FailsafeConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FailsafeConfigError';
  }
}

const PROTOCOLS: Readonly<Record<string, L4Protocol>> = { tcp: 'TCP', udp: 'UDP', sctp: 'SCTP' };

/**
 * Parses "tcp:22,udp:68" (protocol case-insensitive, spaces around entries allowed, duplicates
 * dropped). The empty string is an empty list: no failsafe ports that way, though failsafes stay
 * enabled. `field` names the setting in errors: `failsafeInbound: entry 2 "tcp:99999": port must
 * be 1-65535`.
 */
export function parseFailsafePorts(text: string, field: string): FailsafePort[] {
  const out: FailsafePort[] = [];
  const seen = new Set<string>();
  if (text.trim() === '') return out;
  text.split(',').forEach((raw, i) => {
    const entry = raw.trim();
    const where = `${field}: entry ${i + 1} ${JSON.stringify(entry)}`;
    const m = /^([A-Za-z]+):(\d+)$/.exec(entry);
    if (!m) throw new FailsafeConfigError(`${where}: must be protocol:port, e.g. "tcp:22" (comma-separated)`);
    const protocol = PROTOCOLS[m[1]!.toLowerCase()];
    if (!protocol) throw new FailsafeConfigError(`${where}: protocol must be tcp, udp or sctp`);
    const port = Number(m[2]);
    if (!/^[1-9]\d*$/.test(m[2]!) || port > 65535) throw new FailsafeConfigError(`${where}: port must be 1-65535`);
    const key = `${protocol}:${port}`;
    if (seen.has(key)) return;
    seen.add(key);
    out.push({ protocol, port });
  });
  return out;
}

export const DEFAULT_FAILSAFES: Failsafes = {
  enabled: true,
  inbound: parseFailsafePorts(DEFAULT_FAILSAFE_INBOUND, 'failsafeInbound'),
  outbound: parseFailsafePorts(DEFAULT_FAILSAFE_OUTBOUND, 'failsafeOutbound'),
};

/** Failsafes off: no port is exempt from host policy. */
export const FAILSAFES_DISABLED: Failsafes = { enabled: false, inbound: [], outbound: [] };

export interface FailsafeSettings {
  /** a config string; undefined = the default list */
  readonly inbound?: string;
  readonly outbound?: string;
  /** true turns failsafes off whatever the lists say */
  readonly disabled?: boolean;
}

export function failsafesFrom(settings: FailsafeSettings = {}): Failsafes {
  if (settings.disabled) return FAILSAFES_DISABLED;
  return {
    enabled: true,
    inbound: settings.inbound === undefined ? DEFAULT_FAILSAFES.inbound : parseFailsafePorts(settings.inbound, 'failsafeInbound'),
    outbound: settings.outbound === undefined ? DEFAULT_FAILSAFES.outbound : parseFailsafePorts(settings.outbound, 'failsafeOutbound'),
  };
}

/** Does a failsafe exempt host traffic in `direction` (Ingress: to the host, Egress: from it)? */
export function matchFailsafe(failsafes: Failsafes, direction: PolicyType, protocol: string | number, dstPort: number | undefined): FailsafePort | undefined {
  if (!failsafes.enabled || dstPort === undefined) return undefined;
  const proto = typeof protocol === 'number' ? protocol : PROTOCOL_NUMBERS[protocol as keyof typeof PROTOCOL_NUMBERS];
  const list = direction === 'Ingress' ? failsafes.inbound : failsafes.outbound;
  return list.find((f) => PROTOCOL_NUMBERS[f.protocol] === proto && f.port === dstPort);
}

export interface ShadowedFailsafe {
  readonly direction: PolicyType;
  /** index in spec.ingress / spec.egress */
  readonly index: number;
  readonly failsafe: FailsafePort;
}

/**
 * Failsafe ports a policy's Deny rules would close if failsafes were not there, judged by
 * protocol and destination port alone (peers are ignored: a Deny from anyone might be the one
 * that locks an operator out). Such a policy is accepted, and failsafes still win; the CLI uses
 * this to say so.
 */
export function shadowedFailsafes(policy: GlobalNetworkPolicy, failsafes: Failsafes): ShadowedFailsafe[] {
  if (!failsafes.enabled) return [];
  const out: ShadowedFailsafe[] = [];
  for (const direction of policy.types) {
    const rules = direction === 'Ingress' ? policy.ingress : policy.egress;
    const list = direction === 'Ingress' ? failsafes.inbound : failsafes.outbound;
    rules.forEach((rule, index) => {
      if (rule.action !== 'Deny') return;
      for (const failsafe of list) if (ruleCoversPort(rule, failsafe)) out.push({ direction, index, failsafe });
    });
  }
  return out;
}

function ruleCoversPort(rule: GlobalRule, f: FailsafePort): boolean {
  if (rule.protocol !== undefined && protocolNumber(rule.protocol) !== PROTOCOL_NUMBERS[f.protocol]) return false;
  const d = rule.destination;
  const inList = (list: typeof d.ports) => list.some((p) => ('name' in p ? true : f.port >= p.from && f.port <= p.to));
  if (d.ports.length > 0 && !inList(d.ports)) return false;
  // a named notPort might or might not be this port: assume it is not excluded
  return !d.notPorts.some((p) => !('name' in p) && f.port >= p.from && f.port <= p.to);
}
