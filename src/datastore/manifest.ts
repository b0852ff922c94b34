// Reading Kubernetes manifests (multi-document YAML files) into validated objects. All files are
// checked before anything is returned, and every problem is reported with the file, the document,
// the object and the field, so a caller can refuse the whole set and keep what it had.
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import type { z } from 'zod';
import type { KubeObject } from './objects.js';
import { describeObject, isClusterScoped, objectKey } from './objects.js';
import { fieldPath } from './field-path.js';
import { globalNetworkPolicySchema, hostEndpointSchema, normalizeGlobalNetworkPolicy, normalizeHostEndpoint } from './host-schema.js';
import {
  jobSchema, namespaceSchema, networkPolicySchema, nodeSchema, normalizeJob, normalizeNamespace, normalizeNetworkPolicy, normalizeNode,
  normalizePod, normalizeReplicaSet, podSchema, replicaSetSchema,
} from './schema.js';

export { fieldPath };

export interface ManifestProblem {
  readonly file: string;
  /** 1-based document number within the file; 0 for the file as a whole */
  readonly document: number;
  /** e.g. "NetworkPolicy x/deny-all", or undefined when the document has no usable kind/name */
  readonly object?: string;
  /** kubectl-style path, e.g. spec.ingress[0].ports[1].port; '' for the whole document */
  readonly field: string;
  readonly message: string;
}

export function formatProblem(p: ManifestProblem): string {
  // document 0: the file as a whole (e.g. it cannot be read)
  const where = [p.document > 0 ? `${p.file}: document ${p.document}` : p.file, p.object, p.field].filter((s) => s).join(': ');
  return `${where}: ${p.message}`;
}

export class ManifestError extends Error {
  constructor(readonly problems: readonly ManifestProblem[]) {
    super(`invalid manifests (nothing was applied):\n${problems.map((p) => `  ${formatProblem(p)}`).join('\n')}`);
    this.name = 'ManifestError';
  }
}

export interface LoadedObject {
  readonly object: KubeObject;
  readonly file: string;
  readonly document: number;
}

/** Kinds Weir reads, with their schema and normalizer. */
const KINDS = {
  Namespace: { schema: namespaceSchema, normalize: (raw: unknown) => normalizeNamespace(raw as z.infer<typeof namespaceSchema>) },
  Pod: { schema: podSchema, normalize: (raw: unknown, ns: string) => normalizePod(raw as z.infer<typeof podSchema>, ns) },
  NetworkPolicy: { schema: networkPolicySchema, normalize: (raw: unknown, ns: string) => normalizeNetworkPolicy(raw as z.infer<typeof networkPolicySchema>, ns) },
  Node: { schema: nodeSchema, normalize: (raw: unknown) => normalizeNode(raw as z.infer<typeof nodeSchema>) },
  // host protection (weir.dev/v1alpha1, cluster-scoped): validated and held by ClusterState,
  // enforced by the lab's datapath
  HostEndpoint: { schema: hostEndpointSchema, normalize: (raw: unknown) => normalizeHostEndpoint(raw as z.infer<typeof hostEndpointSchema>) },
  GlobalNetworkPolicy: { schema: globalNetworkPolicySchema, normalize: (raw: unknown) => normalizeGlobalNetworkPolicy(raw as z.infer<typeof globalNetworkPolicySchema>) },
  // read for their owners only: a pod's ReplicaSet names its Deployment, a Job its CronJob
  ReplicaSet: { schema: replicaSetSchema, normalize: (raw: unknown, ns: string) => normalizeReplicaSet(raw as z.infer<typeof replicaSetSchema>, ns) },
  Job: { schema: jobSchema, normalize: (raw: unknown, ns: string) => normalizeJob(raw as z.infer<typeof jobSchema>, ns) },
} as const;


function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let cur: unknown = root;
  for (const seg of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[seg];
  }
  return cur;
}

function quote(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  return undefined; // objects and lists are not quoted: the field path says where
}

/** Validates one parsed document. Returns the object, or pushes problems. */
export function parseObject(raw: unknown, where: { file: string; document: number }, problems: ManifestProblem[]): KubeObject | undefined {
  const base = { file: where.file, document: where.document };
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    problems.push({ ...base, field: '', message: 'is not a Kubernetes object (a YAML mapping with apiVersion and kind)' });
    return undefined;
  }
  const doc = raw as Record<string, unknown>;
  const kind = doc.kind;
  const meta = (doc.metadata ?? {}) as Record<string, unknown>;
  const name = typeof meta.name === 'string' ? meta.name : '(unnamed)';
  const namespace = typeof meta.namespace === 'string' ? meta.namespace : 'default';
  if (typeof kind !== 'string' || !(kind in KINDS)) {
    problems.push({ ...base, object: typeof kind === 'string' ? `${kind} ${name}` : undefined, field: 'kind',
      message: `${quote(kind) ?? 'missing'}: unknown kind; Weir reads ${Object.keys(KINDS).join(', ')}` });
    return undefined;
  }
  const spec = KINDS[kind as keyof typeof KINDS];
  const object = describeObject({ kind, name, ...(isClusterScoped(kind) ? {} : { namespace }) });
  const result = spec.schema.safeParse(raw);
  if (!result.success) {
    for (const issue of result.error.issues) {
      const got = issue.code === 'unrecognized_keys' ? undefined : quote(valueAt(raw, issue.path));
      problems.push({ ...base, object, field: fieldPath(issue.path), message: got ? `${got}: ${issue.message}` : issue.message });
    }
    return undefined;
  }
  const obj = spec.normalize(result.data, 'default');
  if (obj.kind === 'Pod') checkPodAddresses(obj.ips, { ...base, object }, problems);
  return obj;
}

function checkPodAddresses(ips: readonly string[], where: Omit<ManifestProblem, 'field' | 'message'>, problems: ManifestProblem[]): void {
  const v4 = ips.filter((ip) => !ip.includes(':'));
  const v6 = ips.filter((ip) => ip.includes(':'));
  if (v4.length > 1 || v6.length > 1) {
    problems.push({ ...where, field: 'status.podIPs', message: `${JSON.stringify(ips)}: at most one IPv4 and one IPv6 address per pod` });
  }
}

/** Parses YAML text (one or more documents; `kind: List` items are expanded). */
export function parseManifestText(text: string, file: string, problems: ManifestProblem[]): LoadedObject[] {
  const out: LoadedObject[] = [];
  const docs = parseAllDocuments(text);
  if (!Array.isArray(docs)) {
    problems.push({ file, document: 1, field: '', message: 'not a YAML document stream' });
    return out;
  }
  docs.forEach((doc, i) => {
    const document = i + 1;
    if (doc.errors.length > 0) {
      for (const e of doc.errors) problems.push({ file, document, field: '', message: `YAML syntax: ${e.message.split('\n')[0]}` });
      return;
    }
    const raw: unknown = doc.toJS();
    if (raw === null || raw === undefined) return; // empty document (e.g. a trailing ---)
    const items = (raw as { kind?: unknown }).kind === 'List' ? ((raw as { items?: unknown[] }).items ?? []) : [raw];
    for (const item of items) {
      const object = parseObject(item, { file, document }, problems);
      if (object) out.push({ object, file, document });
    }
  });
  return out;
}

/** Two objects of the same kind, namespace and name in one batch: which one would win is an
 * accident of file order, so the batch is refused, naming both documents. */
export function checkDuplicates(objects: readonly LoadedObject[], problems: ManifestProblem[]): void {
  const first = new Map<string, LoadedObject>();
  for (const o of objects) {
    const id = `${o.object.kind}|${objectKey(o.object)}`;
    const had = first.get(id);
    if (!had) {
      first.set(id, o);
      continue;
    }
    problems.push({
      file: o.file, document: o.document, object: describeObject(o.object), field: 'metadata.name',
      message: `${JSON.stringify(o.object.name)}: duplicate: ${describeObject(o.object)} is also defined in ${had.file}: document ${had.document}`,
    });
  }
}

/** Loads and validates every file; throws ManifestError listing all problems if any. */
export function loadManifests(files: readonly string[]): LoadedObject[] {
  const problems: ManifestProblem[] = [];
  const objects: LoadedObject[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      problems.push({ file, document: 0, field: '', message: `cannot read: ${(err as Error).message}` });
      continue;
    }
    objects.push(...parseManifestText(text, file, problems));
  }
  checkDuplicates(objects, problems);
  if (problems.length > 0) throw new ManifestError(problems);
  return objects;
}
