// The global tier of the policy compiler: GlobalNetworkPolicies, HostEndpoints and failsafes as
// the datapath's host-protection maps (bpf/include/weir_abi.h, "host protection"). Semantics are
// src/policy/host-reference.ts's; the design is docs/datapath.md's.
//
// - Every subject (a pod label-set identity, a host endpoint of this node) gets one list per
//   direction and variant: the rules of the global policies selecting it, policies in evaluation
//   order, rules in order, stored contiguously in weir_grules. Subjects selected by the same
//   policies share one copy of the list.
// - Rule conditions become set ids, resolved at compile time: a selector is the set of the
//   selector identities (sel_identity) it matches, nets the set of CIDR classes inside them, ports
//   a set of port blocks plus, for named ports, (identity, protocol, port) members.
// - Host endpoints have identities of their own, from their labels; an address listed in
//   expectedIPs sees, as a peer, the identity of the set of host endpoints listing it.
import type { Labels, ContainerPort, LabelSelector } from '../datastore/objects.js';
import { inAuditMode } from '../datastore/objects.js';
import type { EntityRule, GlobalNetworkPolicy, GlobalRule, HostEndpoint, PortMatch } from '../datastore/host-objects.js';
import { ALL_INTERFACES, PROTOCOL_NUMBERS, compareGlobalPolicies, protocolNumber } from '../datastore/host-objects.js';
import type { Failsafes } from './failsafe.js';
import { hostEndpointFor } from './host-reference.js';
import { matchesSelector } from './selector.js';
import type { IdAllocator } from './ids.js';
import { EndpointFlag, GlobalAction, GlobalSet, GlobalTierVariant, canonicalIp } from '../datapath/abi.js';

/** CompileOptions.host: what the compiler needs to protect this node. */
export interface HostCompileOptions {
  /** this node's name: its host endpoints are the ones with this spec.node */
  readonly node: string;
  /** every HostEndpoint (other nodes' too: their expectedIPs make peers selectable) */
  readonly hostEndpoints: readonly HostEndpoint[];
  readonly globalPolicies: readonly GlobalNetworkPolicy[];
  readonly failsafes: Failsafes;
  /** this node's policed host interfaces: name -> ifindex */
  readonly interfaces: ReadonlyMap<string, number>;
}

/** weir_host_iface: the host endpoint covering an interface (key ifindex; 0 = the "*" endpoint). */
export interface HostInterfaceEntry {
  /** endpoint id of "host:<name>" */
  readonly id: number;
  /** the host endpoint's identity: the subject of its global tier lists */
  readonly identity: number;
  /** EndpointFlag.AUDIT_ALL when the host endpoint is in audit mode */
  readonly flags: number;
  /** the HostEndpoint's name (for display) */
  readonly hostEndpoint: string;
}

/** weir_gtier: a subject's list in one direction and variant, [first, first + count) of globalRules. */
export interface GlobalTierEntry {
  readonly identity: number;
  /** 0 ingress, 1 egress */
  readonly direction: 0 | 1;
  /** GlobalTierVariant bits */
  readonly variant: number;
  readonly first: number;
  readonly count: number;
}

/** weir_grule: every condition a set id, 0 = no condition. */
export interface GlobalRuleEntry {
  readonly ruleId: number;
  /** GlobalAction */
  readonly action: number;
  /** 0 = any */
  readonly proto: number;
  readonly srcSel: number;
  readonly dstSel: number;
  readonly srcNets: number;
  readonly dstNets: number;
  readonly srcNotNets: number;
  readonly dstNotNets: number;
  readonly srcPorts: number;
  readonly dstPorts: number;
  readonly srcNotPorts: number;
  readonly dstNotPorts: number;
}

/** weir_gset: member of a set (a sel identity, a CIDR class, or 0 for failsafes). */
export interface GlobalSetEntry {
  readonly set: number;
  readonly member: number;
  /** proto << 16 | port (named ports, failsafes), else 0 */
  readonly port: number;
}

/** weir_gport: an aligned block of 2^(16-bits) ports of a port set. */
export interface GlobalPortEntry {
  readonly set: number;
  readonly port: number;
  readonly bits: number;
}

export const globalTierKey = (e: Pick<GlobalTierEntry, 'identity' | 'direction' | 'variant'>): string => `${e.identity}|${e.direction}|${e.variant}`;
export const globalSetKey = (e: GlobalSetEntry): string => `${e.set}|${e.member}|${e.port}`;
export const globalPortKey = (e: GlobalPortEntry): string => `${e.set}|${e.port}/${e.bits}`;

/** A pod label-set identity, as the compiler knows it. */
export interface PodIdentity {
  readonly id: number;
  readonly namespaceLabels: Labels;
  readonly podLabels: Labels;
  readonly ports: readonly ContainerPort[];
}

export interface CompiledGlobal {
  readonly hostInterfaces: Map<number, HostInterfaceEntry>;
  readonly globalTiers: Map<string, GlobalTierEntry>;
  readonly globalRules: GlobalRuleEntry[];
  readonly globalSets: Map<string, GlobalSetEntry>;
  readonly globalPorts: Map<string, GlobalPortEntry>;
  /** EndpointFlag.GLOBAL_* / GAUDIT_* per pod identity that has lists */
  readonly podFlags: Map<number, number>;
  /** every address some HostEndpoint lists (canonical form, canonicalIp) */
  readonly hostAddresses: Map<string, { readonly selIdentity: number; readonly endpointId: number; readonly hostEndpoint: string }>;
}

/** The endpoint-id key of a host endpoint. */
export const hostEndpointKey = (name: string): string => `host:${name}`;

/** An address in one spelling per address (IPv4 dotted, IPv6 RFC 5952). */

/** Every prefix the global policies' rules name (nets, notNets): CIDR classes of their own. */
export function globalPrefixes(policies: readonly GlobalNetworkPolicy[]): string[] {
  return policies.flatMap((p) => [...p.ingress, ...p.egress]).flatMap((r) => [r.source, r.destination]).flatMap((e) => [...e.nets, ...e.notNets]);
}

function sortedLabels(labels: Labels): [string, string][] {
  return Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** What a selector sees: a pod identity, or host endpoints (one, or every one listing an address). */
type Selectable =
  | { readonly kind: 'pod'; readonly namespaceLabels: Labels; readonly podLabels: Labels }
  | { readonly kind: 'host'; readonly labels: readonly Labels[] };

/** host-reference.ts `selects`: namespaceSelector set = pods of those namespaces only; host
 * endpoints match when one of them has matching labels. */
function selects(sel: { readonly selector?: LabelSelector; readonly namespaceSelector?: LabelSelector }, s: Selectable): boolean {
  if (sel.namespaceSelector && (s.kind !== 'pod' || !matchesSelector(sel.namespaceSelector, s.namespaceLabels))) return false;
  const selector = sel.selector;
  if (!selector) return true;
  return s.kind === 'pod' ? matchesSelector(selector, s.podLabels) : s.labels.some((l) => matchesSelector(selector, l));
}

const ACTIONS = { Allow: GlobalAction.ALLOW, Deny: GlobalAction.DENY, Pass: GlobalAction.PASS, Log: GlobalAction.LOG } as const;
const DIRECTIONS = [{ dir: 0, type: 'Ingress', rules: 'ingress' }, { dir: 1, type: 'Egress', rules: 'egress' }] as const;

/** lo..hi as aligned power-of-two blocks (compile.ts portBlocks). */
type PortBlocks = (lo: number, hi: number) => { port: number; bits: number }[];

export function compileGlobal(
  host: HostCompileOptions, pods: readonly PodIdentity[], ids: IdAllocator,
  classesIn: (nets: readonly string[]) => number[], portBlocks: PortBlocks,
): CompiledGlobal {
  const policies = [...host.globalPolicies].sort(compareGlobalPolicies);
  const hepIdentity = (labelSets: readonly Labels[]): number => {
    const parts = [...new Set(labelSets.map((l) => JSON.stringify(sortedLabels(l))))].sort();
    return ids.identity(JSON.stringify(['host', ...parts.map((p) => JSON.parse(p) as unknown)]));
  };

  // 1. Selector identities of addresses: the set of host endpoints (any node) listing each.
  const byAddress = new Map<string, HostEndpoint[]>();
  for (const hep of [...host.hostEndpoints].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    for (const ip of new Set(hep.expectedIPs.map(canonicalIp))) {
      let list = byAddress.get(ip);
      if (!list) byAddress.set(ip, (list = []));
      list.push(hep);
    }
  }
  const hostAddresses: CompiledGlobal['hostAddresses'] = new Map();
  const hostSelectables = new Map<number, Selectable>();
  for (const [ip, heps] of byAddress) {
    const labels = heps.map((h) => h.labels);
    const selIdentity = hepIdentity(labels);
    hostSelectables.set(selIdentity, { kind: 'host', labels });
    hostAddresses.set(ip, { selIdentity, endpointId: ids.endpoint(hostEndpointKey(heps[0]!.name)), hostEndpoint: heps[0]!.name });
  }
  const selectables: [number, Selectable][] = [
    ...pods.map((p): [number, Selectable] => [p.id, { kind: 'pod', namespaceLabels: p.namespaceLabels, podLabels: p.podLabels }]),
    ...hostSelectables,
  ];

  // 2. Sets, one id per distinct content.
  const globalSets: CompiledGlobal['globalSets'] = new Map();
  const globalPorts: CompiledGlobal['globalPorts'] = new Map();
  const addMember = (e: GlobalSetEntry): void => { globalSets.set(globalSetKey(e), e); };
  if (host.failsafes.enabled) {
    for (const f of host.failsafes.inbound) addMember({ set: GlobalSet.FAILSAFE_IN, member: 0, port: (PROTOCOL_NUMBERS[f.protocol] << 16) | f.port });
    for (const f of host.failsafes.outbound) addMember({ set: GlobalSet.FAILSAFE_OUT, member: 0, port: (PROTOCOL_NUMBERS[f.protocol] << 16) | f.port });
  }
  const setIds = new Map<string, number>();
  let nextSet: number = GlobalSet.FIRST_DYNAMIC;
  const setFor = (content: string, fill: (set: number) => void): number => {
    let id = setIds.get(content);
    if (id === undefined) {
      setIds.set(content, (id = nextSet++));
      fill(id);
    }
    return id;
  };
  const selectorSet = (side: EntityRule): number => {
    if (!side.selector && !side.namespaceSelector) return 0;
    return setFor(`sel|${JSON.stringify([side.selector ?? null, side.namespaceSelector ?? null])}`, (set) => {
      for (const [member, s] of selectables) if (selects(side, s)) addMember({ set, member, port: 0 });
    });
  };
  const netSet = (nets: readonly string[]): number => {
    if (nets.length === 0) return 0;
    return setFor(`nets|${JSON.stringify([...nets].sort())}`, (set) => {
      for (const member of new Set(classesIn(nets))) addMember({ set, member, port: 0 });
    });
  };
  // Numbers are port blocks (any protocol: the rule's protocol is checked on its own); a name is
  // every container port of that name (and the rule's protocol) of the pod identity on that side.
  const portSet = (ports: readonly PortMatch[], proto: number | undefined): number => {
    if (ports.length === 0) return 0;
    return setFor(`ports|${proto ?? ''}|${JSON.stringify(ports)}`, (set) => {
      for (const p of ports) {
        if ('name' in p) {
          for (const pod of pods) {
            for (const c of pod.ports) {
              if (c.name !== p.name || (proto !== undefined && PROTOCOL_NUMBERS[c.protocol] !== proto)) continue;
              addMember({ set, member: pod.id, port: (PROTOCOL_NUMBERS[c.protocol] << 16) | c.port });
            }
          }
        } else {
          for (const b of portBlocks(p.from, p.to)) {
            const e = { set, port: b.port, bits: b.bits };
            globalPorts.set(globalPortKey(e), e);
          }
        }
      }
    });
  };

  // 3. Rules, each compiled once; lists copied contiguously, shared by subjects selected alike.
  const compiledRules = new Map<string, GlobalRuleEntry>();
  const compileRule = (pol: GlobalNetworkPolicy, type: 'Ingress' | 'Egress', index: number, rule: GlobalRule): GlobalRuleEntry => {
    const key = JSON.stringify([pol.name, type, index]);
    let r = compiledRules.get(key);
    if (r) return r;
    const proto = rule.protocol === undefined ? undefined : protocolNumber(rule.protocol);
    const { source: src, destination: dst } = rule;
    r = {
      ruleId: ids.rule({ kind: 'GlobalNetworkPolicy', policy: pol.name, direction: type, index, action: rule.action }),
      action: ACTIONS[rule.action], proto: proto ?? 0,
      srcSel: selectorSet(src), dstSel: selectorSet(dst),
      srcNets: netSet(src.nets), dstNets: netSet(dst.nets), srcNotNets: netSet(src.notNets), dstNotNets: netSet(dst.notNets),
      srcPorts: portSet(src.ports, proto), dstPorts: portSet(dst.ports, proto),
      srcNotPorts: portSet(src.notPorts, proto), dstNotPorts: portSet(dst.notPorts, proto),
    };
    compiledRules.set(key, r);
    return r;
  };
  const globalRules: GlobalRuleEntry[] = [];
  const lists = new Map<string, { first: number; count: number }>();
  const listOf = (d: (typeof DIRECTIONS)[number], pols: readonly GlobalNetworkPolicy[]): { first: number; count: number } => {
    const key = JSON.stringify([d.dir, ...pols.map((p) => p.name)]);
    let l = lists.get(key);
    if (!l) {
      const first = globalRules.length;
      for (const pol of pols) pol[d.rules].forEach((rule, index) => globalRules.push(compileRule(pol, d.type, index, rule)));
      lists.set(key, (l = { first, count: globalRules.length - first }));
    }
    return l;
  };

  // 4. Each subject's lists: enforced (audit-mode policies left out) when an enforcing policy
  // selects it, WITH_AUDIT when an audit-mode one does; host endpoints also for forwarded traffic.
  const globalTiers: CompiledGlobal['globalTiers'] = new Map();
  const tiersOf = (identity: number, s: Selectable, forwarded: boolean): number => {
    let flags = 0;
    for (const d of DIRECTIONS) {
      const selecting = policies.filter((p) => p.types.includes(d.type) && selects(p, s));
      for (const fwd of forwarded ? [false, true] : [false]) {
        const all = fwd ? selecting.filter((p) => p.applyOnForward) : selecting;
        const enforced = all.filter((p) => !inAuditMode(p));
        const base = fwd ? GlobalTierVariant.FORWARDED : 0;
        const put = (variant: number, pols: readonly GlobalNetworkPolicy[]): void => {
          const e: GlobalTierEntry = { identity, direction: d.dir, variant, ...listOf(d, pols) };
          globalTiers.set(globalTierKey(e), e);
        };
        if (enforced.length > 0) {
          put(base, enforced);
          flags |= d.dir === 0 ? EndpointFlag.GLOBAL_INGRESS : EndpointFlag.GLOBAL_EGRESS;
        }
        if (enforced.length < all.length) {
          put(base | GlobalTierVariant.WITH_AUDIT, all);
          flags |= d.dir === 0 ? EndpointFlag.GAUDIT_INGRESS : EndpointFlag.GAUDIT_EGRESS;
        }
      }
    }
    return flags;
  };
  const podFlags = new Map<number, number>();
  for (const p of pods) {
    const flags = tiersOf(p.id, { kind: 'pod', namespaceLabels: p.namespaceLabels, podLabels: p.podLabels }, false);
    if (flags !== 0) podFlags.set(p.id, flags);
  }

  // 5. This node's host endpoints: the "*" one under key 0, each policed interface under its
  // ifindex (the endpoint naming it, else "*").
  const hostInterfaces: CompiledGlobal['hostInterfaces'] = new Map();
  const done = new Set<number>();
  const entryOf = (hep: HostEndpoint): HostInterfaceEntry => {
    const identity = hepIdentity([hep.labels]);
    if (!done.has(identity)) {
      done.add(identity);
      tiersOf(identity, { kind: 'host', labels: [hep.labels] }, true);
    }
    return { id: ids.endpoint(hostEndpointKey(hep.name)), identity, flags: inAuditMode(hep) ? EndpointFlag.AUDIT_ALL : 0, hostEndpoint: hep.name };
  };
  const star = hostEndpointFor(host.hostEndpoints, host.node, ALL_INTERFACES);
  if (star) hostInterfaces.set(0, entryOf(star));
  for (const [name, ifindex] of host.interfaces) {
    const hep = hostEndpointFor(host.hostEndpoints, host.node, name);
    if (hep) hostInterfaces.set(ifindex, entryOf(hep));
  }

  return { hostInterfaces, globalTiers, globalRules, globalSets, globalPorts, podFlags, hostAddresses };
}
