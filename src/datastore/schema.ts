// Validation of raw Kubernetes objects (as a user writes them in YAML) with zod, then
// normalization into the models of objects.ts. Field paths in errors follow kubectl's style
// (spec.ingress[0].ports[1].port) so users can find the line at once.
import { z } from 'zod';
import { AUDIT_ANNOTATION, NODE_PORTS_ANNOTATION } from './objects.js';
import type {
  ContainerPort, Job, LabelSelector, Namespace, NetworkPolicy, Node, OwnerReference, Pod, PolicyPeer, PolicyPort, PolicyRule,
  PolicyType, ReplicaSet,
} from './objects.js';
import { isIP } from 'node:net';
import { cidrStrictlyInside, parseCidr } from './cidr.js';

// RFC 1123 label (namespace names) and subdomain (pod and policy names), as the API server checks.
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

function isQualifiedName(key: string): boolean {
  const slash = key.indexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined && (prefix.length === 0 || prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) return false;
  return name.length > 0 && name.length <= 63 && LABEL_NAME.test(name);
}

const labelKey = z.string().refine(isQualifiedName, {
  error: 'must be a qualified name: an optional DNS subdomain prefix and "/", then up to 63 characters [A-Za-z0-9-_.] starting and ending alphanumeric',
});
const labelValue = z.string().refine((v) => v === '' || (v.length <= 63 && LABEL_NAME.test(v)), {
  error: 'must be empty or up to 63 characters [A-Za-z0-9-_.] starting and ending alphanumeric',
});
const labelMap = z.record(labelKey, labelValue);

const dnsLabel = z.string().max(63).regex(DNS_LABEL, { error: 'must be a lowercase RFC 1123 label ([a-z0-9-], at most 63)' });
const dnsSubdomain = z.string().max(253).regex(DNS_SUBDOMAIN, { error: 'must be a lowercase RFC 1123 subdomain' });

const protocol = z.enum(['TCP', 'UDP', 'SCTP'], { error: 'must be TCP, UDP or SCTP' }).default('TCP');
const portNumber = z.int({ error: 'must be an integer port number' }).min(1, { error: 'must be 1-65535' }).max(65535, { error: 'must be 1-65535' });

const selectorRequirement = z.strictObject({
  key: labelKey,
  operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist'], { error: 'must be In, NotIn, Exists or DoesNotExist' }),
  values: z.array(labelValue).optional(),
}).superRefine((req, ctx) => {
  const n = req.values?.length ?? 0;
  if ((req.operator === 'In' || req.operator === 'NotIn') && n === 0) {
    ctx.addIssue({ code: 'custom', path: ['values'], message: `must be non-empty when operator is ${req.operator}` });
  }
  if ((req.operator === 'Exists' || req.operator === 'DoesNotExist') && n > 0) {
    ctx.addIssue({ code: 'custom', path: ['values'], message: `must be empty when operator is ${req.operator}` });
  }
});

const labelSelector = z.strictObject({
  matchLabels: labelMap.optional(),
  matchExpressions: z.array(selectorRequirement).optional(),
});

const metadataShape = {
  namespace: dnsLabel.optional(),
  labels: labelMap.nullish(),
  annotations: z.record(z.string(), z.string()).nullish(),
};

function checkAuditAnnotation(m: { annotations?: Record<string, string> | null }, ctx: z.RefinementCtx): void {
  const audit = m.annotations?.[AUDIT_ANNOTATION];
  if (audit !== undefined && audit !== 'true' && audit !== 'false') {
    ctx.addIssue({ code: 'custom', path: ['annotations', AUDIT_ANNOTATION], message: 'must be "true" or "false"' });
  }
}

/** An object's metadata, with `name` checked by the kind's own rule. */
const metadata = (name: z.ZodType<string>) => z.looseObject({ name, ...metadataShape }).superRefine(checkAuditAnnotation);

// IANA_SVC_NAME, as the API server checks port names: 1-15 characters [a-z0-9-], at least one
// letter, no '-' at either end and no '--'.
export function isIanaSvcName(name: string): boolean {
  return name.length >= 1 && name.length <= 15 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name)
    && /[a-z]/.test(name) && !name.includes('--');
}
const IANA_SVC_NAME_RULE = 'must be an IANA_SVC_NAME: 1-15 characters [a-z0-9-] with at least one letter, no leading, trailing or double "-"';

const policyPort = z.strictObject({
  protocol,
  port: z.union([portNumber, z.string()], { error: 'must be a port number (1-65535) or a named port' }).optional(),
  endPort: z.int({ error: 'must be an integer port number' }).optional(),
}).superRefine((p, ctx) => {
  if (typeof p.port === 'string') {
    if (/^\d+$/.test(p.port)) ctx.addIssue({ code: 'custom', path: ['port'], message: 'is a quoted number; write it as a number' });
    else if (!isIanaSvcName(p.port)) ctx.addIssue({ code: 'custom', path: ['port'], message: `is neither a port number nor a port name: ${IANA_SVC_NAME_RULE}` });
  }
  if (p.endPort !== undefined) {
    if (p.port === undefined) ctx.addIssue({ code: 'custom', path: ['endPort'], message: 'requires a numeric port (the start of the range)' });
    else if (typeof p.port === 'string') ctx.addIssue({ code: 'custom', path: ['endPort'], message: `cannot be used with a named port ("${p.port}")` });
    else if (p.endPort < p.port) ctx.addIssue({ code: 'custom', path: ['endPort'], message: `must be greater than or equal to port (${p.port})` });
    else if (p.endPort > 65535) ctx.addIssue({ code: 'custom', path: ['endPort'], message: 'must be 1-65535' });
  }
});

const cidrString = z.string({ error: 'must be a CIDR (a.b.c.d/n or x:x::/n)' });

// ipBlock: `cidr` may have host bits set (10.0.0.1/8): the API server accepts it, and it means its
// network. Every `except` must be of the same family and strictly inside `cidr`.
const ipBlock = z.strictObject({
  cidr: cidrString,
  except: z.array(cidrString).nullish(),
}).superRefine((b, ctx) => {
  const outer = parseCidr(b.cidr);
  if (!outer) {
    ctx.addIssue({ code: 'custom', path: ['cidr'], message: 'must be a CIDR (a.b.c.d/n or x:x::/n)' });
    return;
  }
  (b.except ?? []).forEach((e, i) => {
    const inner = parseCidr(e);
    if (!inner) ctx.addIssue({ code: 'custom', path: ['except', i], message: 'must be a CIDR (a.b.c.d/n or x:x::/n)' });
    else if (inner.family !== outer.family) ctx.addIssue({ code: 'custom', path: ['except', i], message: `must be an IPv${outer.family} CIDR, like cidr "${b.cidr}"` });
    else if (!cidrStrictlyInside(inner, outer)) ctx.addIssue({ code: 'custom', path: ['except', i], message: `must be strictly inside cidr "${b.cidr}"` });
  });
});

const policyPeer = z.strictObject({
  podSelector: labelSelector.optional(),
  namespaceSelector: labelSelector.optional(),
  ipBlock: ipBlock.optional(),
}).superRefine((p, ctx) => {
  if (p.ipBlock !== undefined && (p.podSelector || p.namespaceSelector)) {
    ctx.addIssue({ code: 'custom', path: [], message: 'ipBlock cannot be combined with podSelector or namespaceSelector in one peer; list them as separate peers' });
  } else if (!p.ipBlock && !p.podSelector && !p.namespaceSelector) {
    ctx.addIssue({ code: 'custom', path: [], message: 'a peer must set podSelector, namespaceSelector or ipBlock' });
  }
});

const ingressRule = z.strictObject({ from: z.array(policyPeer).nullish(), ports: z.array(policyPort).nullish() });
const egressRule = z.strictObject({ to: z.array(policyPeer).nullish(), ports: z.array(policyPort).nullish() });

export const networkPolicySchema = z.looseObject({
  apiVersion: z.literal('networking.k8s.io/v1', { error: 'must be networking.k8s.io/v1' }),
  kind: z.literal('NetworkPolicy'),
  metadata: metadata(dnsSubdomain),
  spec: z.strictObject({
    podSelector: labelSelector,
    policyTypes: z.array(z.enum(['Ingress', 'Egress'], { error: 'must be Ingress or Egress' })).optional(),
    ingress: z.array(ingressRule).nullish(),
    egress: z.array(egressRule).nullish(),
  }, { error: 'is required (spec.podSelector must be given; {} selects every pod)' }),
});

const containerPort = z.looseObject({
  containerPort: portNumber,
  protocol,
  name: z.string().refine(isIanaSvcName, { error: IANA_SVC_NAME_RULE }).optional(),
});

const ipAddress = z.string().refine((s) => isIP(s) !== 0, { error: 'must be an IPv4 or IPv6 address' });

/** A required string field: "is required" when missing, "must be a string" otherwise. */
const requiredString = (what: string) => z.string({
  error: (iss) => (iss.input === undefined || iss.input === null ? `is required (${what})` : `must be a string (${what})`),
}).min(1, { error: `must not be empty (${what})` });

// metadata.ownerReferences, as the API server checks them (kind and name required; at most one
// controller). apiVersion and uid, which the API server also requires, are not needed here: a
// manifest written for the lab may leave them out.
const ownerReference = z.looseObject({
  apiVersion: z.string({ error: 'must be a string' }).optional(),
  kind: requiredString('the owner\'s kind, e.g. ReplicaSet'),
  name: requiredString('the owner\'s name'),
  controller: z.boolean({ error: 'must be true or false' }).nullish(),
});
const ownerReferences = z.array(ownerReference, { error: 'must be a list of owner references ({kind, name, controller})' })
  .superRefine((refs, ctx) => {
    const first = refs.findIndex((r) => r.controller === true);
    refs.forEach((r, i) => {
      if (i > first && first >= 0 && r.controller === true) {
        ctx.addIssue({ code: 'custom', path: [i, 'controller'], message: `only one owner reference can be the controller; ownerReferences[${first}] is already` });
      }
    });
  });

/** The metadata of objects others make (pods, ReplicaSets, Jobs): with their owner references. */
const ownedMetadata = z.looseObject({ name: dnsSubdomain, ...metadataShape, ownerReferences: ownerReferences.nullish() })
  .superRefine(checkAuditAnnotation);

function ownersOf(meta: z.infer<typeof ownedMetadata>): { ownerReferences?: OwnerReference[] } {
  const owners: OwnerReference[] = (meta.ownerReferences ?? []).map((r) => ({
    kind: r.kind, name: r.name, ...(r.controller != null ? { controller: r.controller } : {}),
  }));
  return owners.length > 0 ? { ownerReferences: owners } : {};
}

// ReplicaSets and Jobs: read for their owners only (a Deployment's, a CronJob's); spec and status
// are not looked at.
export const replicaSetSchema = z.looseObject({
  apiVersion: z.literal('apps/v1', { error: 'must be apps/v1' }),
  kind: z.literal('ReplicaSet'),
  metadata: ownedMetadata,
});

export const jobSchema = z.looseObject({
  apiVersion: z.literal('batch/v1', { error: 'must be batch/v1' }),
  kind: z.literal('Job'),
  metadata: ownedMetadata,
});

export function normalizeReplicaSet(raw: z.infer<typeof replicaSetSchema>, defaultNamespace: string): ReplicaSet {
  return { kind: 'ReplicaSet', namespace: raw.metadata.namespace ?? defaultNamespace, name: raw.metadata.name, ...ownersOf(raw.metadata) };
}

export function normalizeJob(raw: z.infer<typeof jobSchema>, defaultNamespace: string): Job {
  return { kind: 'Job', namespace: raw.metadata.namespace ?? defaultNamespace, name: raw.metadata.name, ...ownersOf(raw.metadata) };
}

/** Service account and node names: RFC 1123 subdomains; empty means not set, as in the API. */
const optionalSubdomain = z.string({ error: 'must be a string' }).refine((s) => s === '' || (s.length <= 253 && DNS_SUBDOMAIN.test(s)), {
  error: 'must be a lowercase RFC 1123 subdomain',
});

export const podSchema = z.looseObject({
  apiVersion: z.literal('v1', { error: 'must be v1' }),
  kind: z.literal('Pod'),
  metadata: ownedMetadata,
  spec: z.looseObject({
    serviceAccountName: optionalSubdomain.nullish(),
    serviceAccount: optionalSubdomain.nullish(),
    nodeName: optionalSubdomain.nullish(),
    containers: z.array(z.looseObject({
      name: z.string().optional(),
      ports: z.array(containerPort).nullish(),
    })).min(1, { error: 'must list at least one container' }),
  }).superRefine((spec, ctx) => {
    // Port names are unique within a pod (across its containers): a named port must mean one port.
    const seen = new Map<string, string>();
    spec.containers.forEach((c, ci) => (c.ports ?? []).forEach((p, pi) => {
      if (p.name === undefined) return;
      const other = seen.get(p.name);
      if (other) ctx.addIssue({ code: 'custom', path: ['containers', ci, 'ports', pi, 'name'], message: `duplicate port name: spec.${other} has it already` });
      else seen.set(p.name, `containers[${ci}].ports[${pi}].name`);
    }));
  }),
  status: z.looseObject({
    podIP: ipAddress.optional(),
    podIPs: z.array(z.looseObject({ ip: ipAddress })).optional(),
  }).optional(),
});

export const namespaceSchema = z.looseObject({
  apiVersion: z.literal('v1', { error: 'must be v1' }),
  kind: z.literal('Namespace'),
  metadata: metadata(dnsLabel),
});

/** "22/TCP,80/TCP" -> ports; throws naming the bad entry (the annotation's own syntax). */
export function parseNodePorts(spec: string): { port: number; protocol: 'TCP' | 'UDP' | 'SCTP' }[] {
  const out: { port: number; protocol: 'TCP' | 'UDP' | 'SCTP' }[] = [];
  const seen = new Set<string>();
  if (spec.trim() === '') return out;
  spec.split(',').forEach((entry, i) => {
    const m = /^\s*(\d{1,5})\/([A-Za-z]+)\s*$/.exec(entry);
    if (!m) throw new Error(`entry ${i + 1} "${entry}" is not PORT/PROTOCOL (e.g. 22/TCP)`);
    const port = Number(m[1]);
    const protocol = m[2]!.toUpperCase();
    if (port < 1 || port > 65535) throw new Error(`entry ${i + 1} "${entry}": port ${port} is not in 1-65535`);
    if (protocol !== 'TCP' && protocol !== 'UDP' && protocol !== 'SCTP') {
      throw new Error(`entry ${i + 1} "${entry}": protocol "${m[2]}" is not TCP, UDP or SCTP`);
    }
    const key = `${port}/${protocol}`;
    if (seen.has(key)) return;
    seen.add(key);
    out.push({ port, protocol });
  });
  return out;
}

export const nodeSchema = z.looseObject({
  apiVersion: z.literal('v1', { error: 'must be v1' }),
  kind: z.literal('Node'),
  metadata: metadata(dnsSubdomain).superRefine((m, ctx) => {
    if (m.namespace !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['namespace'], message: 'must not be set: Node is cluster-scoped' });
    }
    const ports = m.annotations?.[NODE_PORTS_ANNOTATION];
    if (ports !== undefined) {
      try {
        parseNodePorts(ports);
      } catch (err) {
        ctx.addIssue({ code: 'custom', path: ['annotations', NODE_PORTS_ANNOTATION], message: `${(err as Error).message}; the format is "22/TCP,80/TCP,9100/TCP"` });
      }
    }
  }),
});

export function normalizeNode(raw: z.infer<typeof nodeSchema>): Node {
  const ports = raw.metadata.annotations?.[NODE_PORTS_ANNOTATION];
  return {
    kind: 'Node',
    name: raw.metadata.name,
    labels: { ...(raw.metadata.labels ?? {}) },
    ...annotationsOf(raw.metadata),
    ports: ports === undefined ? [] : parseNodePorts(ports),
  };
}

function toSelector(raw: z.infer<typeof labelSelector>): LabelSelector {
  return {
    matchLabels: { ...(raw.matchLabels ?? {}) },
    matchExpressions: (raw.matchExpressions ?? []).map((e) => ({ key: e.key, operator: e.operator, values: [...(e.values ?? [])] })),
  };
}

function toPeers(raw: z.infer<typeof policyPeer>[] | null | undefined): PolicyPeer[] | undefined {
  if (!raw || raw.length === 0) return undefined; // no peers listed: every peer
  return raw.map((p) => ({
    ...(p.podSelector ? { podSelector: toSelector(p.podSelector) } : {}),
    ...(p.namespaceSelector ? { namespaceSelector: toSelector(p.namespaceSelector) } : {}),
    ...(p.ipBlock ? { ipBlock: { cidr: p.ipBlock.cidr, except: [...(p.ipBlock.except ?? [])] } } : {}),
  }));
}

function toPorts(raw: z.infer<typeof policyPort>[] | null | undefined): PolicyPort[] | undefined {
  if (!raw || raw.length === 0) return undefined; // no ports listed: every port and protocol
  return raw.map((p) => ({
    protocol: p.protocol,
    ...(p.port !== undefined ? { port: p.port } : {}),
    ...(p.endPort !== undefined ? { endPort: p.endPort } : {}),
  }));
}

export function normalizeNetworkPolicy(raw: z.infer<typeof networkPolicySchema>, defaultNamespace: string): NetworkPolicy {
  const spec = raw.spec;
  const ingress: PolicyRule[] = (spec.ingress ?? []).map((r) => ({ peers: toPeers(r.from), ports: toPorts(r.ports) }));
  const egress: PolicyRule[] = (spec.egress ?? []).map((r) => ({ peers: toPeers(r.to), ports: toPorts(r.ports) }));
  // The API server's defaulting: without policyTypes, Ingress always, Egress if egress rules exist.
  const policyTypes: PolicyType[] = spec.policyTypes && spec.policyTypes.length > 0
    ? [...new Set(spec.policyTypes)]
    : (spec.egress && spec.egress.length > 0 ? ['Ingress', 'Egress'] : ['Ingress']);
  return {
    kind: 'NetworkPolicy',
    namespace: raw.metadata.namespace ?? defaultNamespace,
    name: raw.metadata.name,
    annotations: { ...(raw.metadata.annotations ?? {}) },
    podSelector: toSelector(spec.podSelector),
    policyTypes,
    ingress,
    egress,
  };
}

export function normalizePod(raw: z.infer<typeof podSchema>, defaultNamespace: string): Pod {
  const ports: ContainerPort[] = [];
  for (const c of raw.spec.containers) {
    for (const p of c.ports ?? []) ports.push({ port: p.containerPort, protocol: p.protocol, ...(p.name ? { name: p.name } : {}) });
  }
  const ips = new Set<string>();
  if (raw.status?.podIP) ips.add(raw.status.podIP);
  for (const p of raw.status?.podIPs ?? []) ips.add(p.ip);
  return {
    kind: 'Pod',
    namespace: raw.metadata.namespace ?? defaultNamespace,
    name: raw.metadata.name,
    labels: { ...(raw.metadata.labels ?? {}) },
    ...annotationsOf(raw.metadata),
    ports,
    ips: [...ips],
    ...ownersOf(raw.metadata),
    // the API server's defaulting: serviceAccountName, else the deprecated serviceAccount, else "default"
    serviceAccount: raw.spec.serviceAccountName || raw.spec.serviceAccount || 'default',
    ...(raw.spec.nodeName ? { nodeName: raw.spec.nodeName } : {}),
  };
}

export function normalizeNamespace(raw: z.infer<typeof namespaceSchema>): Namespace {
  // The API server always sets this label, so selectors can name namespaces.
  return {
    kind: 'Namespace',
    name: raw.metadata.name,
    labels: { ...(raw.metadata.labels ?? {}), 'kubernetes.io/metadata.name': raw.metadata.name },
    ...annotationsOf(raw.metadata),
  };
}

/** Pods and namespaces carry annotations only when they have some (most have none). */
function annotationsOf(meta: { annotations?: Record<string, string> | null }): { annotations?: Record<string, string> } {
  return meta.annotations && Object.keys(meta.annotations).length > 0 ? { annotations: { ...meta.annotations } } : {};
}
