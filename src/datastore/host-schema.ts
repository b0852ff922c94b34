// Validation of raw HostEndpoint and GlobalNetworkPolicy objects (as a user writes them in YAML)
// with zod, then normalization into the models of host-objects.ts. Same conventions as schema.ts:
// kubectl-style field paths (spec.ingress[0].source.ports[1]) and the reason, quoting the value.
// Label keys, values, selectors and the audit annotation are checked by schema.ts's own rules
// (reached through the NetworkPolicy schema's shape), so the two never disagree.
import { z } from 'zod';
import { isIP } from 'node:net';
import { networkPolicySchema, isIanaSvcName } from './schema.js';
import { parseCidr, parseIp } from './cidr.js';
import { fieldPath } from './field-path.js';
import type { LabelSelector, PolicyType } from './objects.js';
import { HOST_API_VERSION, PROTOCOL_NUMBERS } from './host-objects.js';
import type { EntityRule, GlobalNetworkPolicy, GlobalRule, HostEndpoint, HostObject, PortMatch, RuleProtocol } from './host-objects.js';

const labelSelector = networkPolicySchema.shape.spec.shape.podSelector;
const namespacedMetadata = networkPolicySchema.shape.metadata;

/** Both kinds are cluster-scoped: a namespace would suggest a scoping that does not exist. */
const clusterMetadata = (kind: string) => namespacedMetadata.superRefine((m, ctx) => {
  if (m.namespace !== undefined) ctx.addIssue({ code: 'custom', path: ['namespace'], message: `must not be set: ${kind} is cluster-scoped` });
});

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const dnsSubdomain = z.string({ error: 'must be a string' }).max(253).regex(DNS_SUBDOMAIN, { error: 'must be a lowercase RFC 1123 subdomain' });

/** What Linux accepts as an interface name (dev_valid_name): 1-15 bytes, not "." or "..", no
 * "/", ":" or whitespace. */
function isInterfaceName(s: string): boolean {
  return s.length >= 1 && s.length <= 15 && s !== '.' && s !== '..' && !/[/:\s]/.test(s);
}

// parseIp, not node's isIP: isIP takes a zone (fe80::1%eth0), which names no address of a node
// (and the CRD's ipv6 format, Go's ParseIP, refuses it too)
const ipAddress = z.string({ error: 'must be an IPv4 or IPv6 address' }).refine((s) => parseIp(s) !== undefined, { error: 'must be an IPv4 or IPv6 address' });

export const hostEndpointSchema = z.looseObject({
  apiVersion: z.literal(HOST_API_VERSION, { error: `must be ${HOST_API_VERSION}` }),
  kind: z.literal('HostEndpoint'),
  metadata: clusterMetadata('HostEndpoint'),
  spec: z.strictObject({
    node: dnsSubdomain,
    interfaceName: z.string({ error: 'is required: an interface name, or "*" for all of the node\'s interfaces' })
      .refine((s) => s === '*' || isInterfaceName(s), { error: 'must be "*" or an interface name (1-15 characters, no "/", ":" or whitespace)' }),
    expectedIPs: z.array(ipAddress).nullish(),
  }, { error: (iss) => (iss.input === undefined ? 'is required (spec.node and spec.interfaceName)' : undefined) }),
});

const PORT_RULE = 'must be a port number, a range "lo:hi", {port, endPort} or a port name';

const portEntry = z.union([
  z.int(),
  z.string(),
  z.strictObject({ port: z.int(), endPort: z.int().optional() }),
], { error: PORT_RULE }).superRefine((p, ctx) => {
  const inRange = (n: number) => n >= 1 && n <= 65535;
  if (typeof p === 'number') {
    if (!inRange(p)) ctx.addIssue({ code: 'custom', message: 'must be 1-65535' });
  } else if (typeof p === 'string') {
    const range = /^(\d+):(\d+)$/.exec(p);
    if (range) {
      const lo = Number(range[1]);
      const hi = Number(range[2]);
      if (!inRange(lo) || !inRange(hi)) ctx.addIssue({ code: 'custom', message: 'range bounds must be 1-65535' });
      else if (hi < lo) ctx.addIssue({ code: 'custom', message: `range end must be greater than or equal to its start (${lo})` });
    } else if (/^\d+$/.test(p)) {
      ctx.addIssue({ code: 'custom', message: 'is a quoted number; write it as a number' });
    } else if (!isIanaSvcName(p)) {
      ctx.addIssue({ code: 'custom', message: `${PORT_RULE}; a port name must be an IANA_SVC_NAME (1-15 characters [a-z0-9-], a letter, no leading, trailing or double "-")` });
    }
  } else {
    if (!inRange(p.port)) ctx.addIssue({ code: 'custom', path: ['port'], message: 'must be 1-65535' });
    if (p.endPort !== undefined) {
      if (!inRange(p.endPort)) ctx.addIssue({ code: 'custom', path: ['endPort'], message: 'must be 1-65535' });
      else if (p.endPort < p.port) ctx.addIssue({ code: 'custom', path: ['endPort'], message: `must be greater than or equal to port (${p.port})` });
    }
  }
});

/** nets: a CIDR, or a bare address meaning just it (as Calico reads them). */
const netString = z.string({ error: 'must be a CIDR (a.b.c.d/n or x:x::/n) or an address' })
  .refine((s) => parseCidr(s) !== undefined || parseIp(s) !== undefined, { error: 'must be a CIDR (a.b.c.d/n or x:x::/n) or an address' });

const entityRule = z.strictObject({
  selector: labelSelector.optional(),
  namespaceSelector: labelSelector.optional(),
  nets: z.array(netString).nullish(),
  notNets: z.array(netString).nullish(),
  ports: z.array(portEntry).nullish(),
  notPorts: z.array(portEntry).nullish(),
});

const PROTOCOL_RULE = 'must be TCP, UDP, SCTP, ICMP, ICMPv6 or a protocol number 1-255';
const ruleProtocol = z.union([z.enum(['TCP', 'UDP', 'SCTP', 'ICMP', 'ICMPv6']), z.int()], { error: PROTOCOL_RULE })
  .refine((p) => typeof p === 'string' || (p >= 1 && p <= 255), { error: PROTOCOL_RULE });

/** Protocols that have ports. */
const PORTED = new Set([PROTOCOL_NUMBERS.TCP, PROTOCOL_NUMBERS.UDP, PROTOCOL_NUMBERS.SCTP]);

const globalRule = z.strictObject({
  action: z.enum(['Allow', 'Deny', 'Pass', 'Log'], { error: 'must be Allow, Deny, Pass or Log' }),
  protocol: ruleProtocol.optional(),
  source: entityRule.optional(),
  destination: entityRule.optional(),
}).superRefine((r, ctx) => {
  // A port means nothing without a protocol that has ports: say so instead of never matching.
  const proto = r.protocol === undefined ? undefined : typeof r.protocol === 'number' ? r.protocol : PROTOCOL_NUMBERS[r.protocol];
  for (const side of ['source', 'destination'] as const) {
    for (const list of ['ports', 'notPorts'] as const) {
      if ((r[side]?.[list]?.length ?? 0) === 0) continue;
      if (proto === undefined) ctx.addIssue({ code: 'custom', path: [side, list], message: 'requires the rule\'s protocol to be TCP, UDP or SCTP (protocol is not set)' });
      else if (!PORTED.has(proto)) ctx.addIssue({ code: 'custom', path: [side, list], message: `requires the rule's protocol to be TCP, UDP or SCTP (it is ${JSON.stringify(r.protocol)})` });
    }
  }
});

export const globalNetworkPolicySchema = z.looseObject({
  apiVersion: z.literal(HOST_API_VERSION, { error: `must be ${HOST_API_VERSION}` }),
  kind: z.literal('GlobalNetworkPolicy'),
  metadata: clusterMetadata('GlobalNetworkPolicy'),
  spec: z.strictObject({
    order: z.number({ error: 'must be a number (lower is evaluated first)' }).optional(),
    selector: labelSelector,
    namespaceSelector: labelSelector.optional(),
    types: z.array(z.enum(['Ingress', 'Egress'], { error: 'must be Ingress or Egress' })).nullish(),
    ingress: z.array(globalRule).nullish(),
    egress: z.array(globalRule).nullish(),
    applyOnForward: z.boolean({ error: 'must be true or false' }).optional(),
  }, { error: (iss) => (iss.input === undefined ? 'is required (spec.selector must be given; {} selects every host endpoint and pod)' : undefined) }).superRefine((s, ctx) => {
    if (!s.types || s.types.length === 0) return;
    for (const [list, type] of [['ingress', 'Ingress'], ['egress', 'Egress']] as const) {
      if ((s[list]?.length ?? 0) > 0 && !s.types.includes(type)) {
        ctx.addIssue({ code: 'custom', path: [list], message: `has rules but spec.types does not include ${type}; add it or remove the rules` });
      }
    }
  }),
});

function toSelector(raw: z.infer<typeof labelSelector>): LabelSelector {
  return {
    matchLabels: { ...(raw.matchLabels ?? {}) },
    matchExpressions: (raw.matchExpressions ?? []).map((e) => ({ key: e.key, operator: e.operator, values: [...(e.values ?? [])] })),
  };
}

function toPort(p: z.infer<typeof portEntry>): PortMatch {
  if (typeof p === 'number') return { from: p, to: p };
  if (typeof p === 'string') {
    const range = /^(\d+):(\d+)$/.exec(p);
    return range ? { from: Number(range[1]), to: Number(range[2]) } : { name: p };
  }
  return { from: p.port, to: p.endPort ?? p.port };
}

function toNet(s: string): string {
  if (parseCidr(s)) return s;
  return isIP(s) === 4 ? `${s}/32` : `${s}/128`;
}

function toEntity(raw: z.infer<typeof entityRule> | undefined): EntityRule {
  return {
    ...(raw?.selector ? { selector: toSelector(raw.selector) } : {}),
    ...(raw?.namespaceSelector ? { namespaceSelector: toSelector(raw.namespaceSelector) } : {}),
    nets: (raw?.nets ?? []).map(toNet),
    notNets: (raw?.notNets ?? []).map(toNet),
    ports: (raw?.ports ?? []).map(toPort),
    notPorts: (raw?.notPorts ?? []).map(toPort),
  };
}

function toRule(raw: z.infer<typeof globalRule>): GlobalRule {
  return {
    action: raw.action,
    ...(raw.protocol !== undefined ? { protocol: raw.protocol as RuleProtocol } : {}),
    source: toEntity(raw.source),
    destination: toEntity(raw.destination),
  };
}

export function normalizeHostEndpoint(raw: z.infer<typeof hostEndpointSchema>): HostEndpoint {
  return {
    kind: 'HostEndpoint',
    name: raw.metadata.name,
    labels: { ...(raw.metadata.labels ?? {}) },
    annotations: { ...(raw.metadata.annotations ?? {}) },
    node: raw.spec.node,
    interfaceName: raw.spec.interfaceName,
    expectedIPs: [...new Set(raw.spec.expectedIPs ?? [])],
  };
}

export function normalizeGlobalNetworkPolicy(raw: z.infer<typeof globalNetworkPolicySchema>): GlobalNetworkPolicy {
  const spec = raw.spec;
  const hasIngress = (spec.ingress?.length ?? 0) > 0;
  const hasEgress = (spec.egress?.length ?? 0) > 0;
  // Calico's defaulting: [Ingress] without egress rules (no rules at all included), [Egress] with
  // only egress rules, both with both.
  const types: PolicyType[] = spec.types && spec.types.length > 0
    ? [...new Set(spec.types)]
    : hasEgress ? (hasIngress ? ['Ingress', 'Egress'] : ['Egress']) : ['Ingress'];
  return {
    kind: 'GlobalNetworkPolicy',
    name: raw.metadata.name,
    annotations: { ...(raw.metadata.annotations ?? {}) },
    ...(spec.order !== undefined ? { order: spec.order } : {}),
    selector: toSelector(spec.selector),
    ...(spec.namespaceSelector ? { namespaceSelector: toSelector(spec.namespaceSelector) } : {}),
    types,
    ingress: (spec.ingress ?? []).map(toRule),
    egress: (spec.egress ?? []).map(toRule),
    applyOnForward: spec.applyOnForward ?? false,
  };
}

export interface HostObjectProblem {
  /** kubectl-style path, e.g. spec.ingress[0].source.ports[1]; '' for the whole object */
  readonly field: string;
  readonly message: string;
}

const HOST_KINDS = {
  HostEndpoint: { schema: hostEndpointSchema, normalize: (raw: unknown) => normalizeHostEndpoint(raw as z.infer<typeof hostEndpointSchema>) },
  GlobalNetworkPolicy: { schema: globalNetworkPolicySchema, normalize: (raw: unknown) => normalizeGlobalNetworkPolicy(raw as z.infer<typeof globalNetworkPolicySchema>) },
} as const;

export const HOST_KIND_NAMES: readonly string[] = Object.keys(HOST_KINDS);

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let cur: unknown = root;
  for (const seg of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[seg];
  }
  return cur;
}

/** Validates one parsed object of either kind. Problems read like manifest.ts's: the field, and
 * the reason after the quoted bad value (scalars only; lists and objects are not quoted). */
export function parseHostObject(raw: unknown): { object?: HostObject; problems: HostObjectProblem[] } {
  const kind = (raw as { kind?: unknown } | null)?.kind;
  if (typeof kind !== 'string' || !(kind in HOST_KINDS)) {
    return { problems: [{ field: 'kind', message: `${JSON.stringify(kind) ?? 'missing'}: not a host protection kind; expected ${HOST_KIND_NAMES.join(' or ')}` }] };
  }
  const spec = HOST_KINDS[kind as keyof typeof HOST_KINDS];
  const result = spec.schema.safeParse(raw);
  if (!result.success) {
    return {
      problems: result.error.issues.map((issue) => {
        const v = issue.code === 'unrecognized_keys' ? undefined : valueAt(raw, issue.path);
        const got = v !== undefined && (v === null || typeof v !== 'object') ? JSON.stringify(v) : undefined;
        return { field: fieldPath(issue.path), message: got ? `${got}: ${issue.message}` : issue.message };
      }),
    };
  }
  return { object: spec.normalize(result.data), problems: [] };
}
