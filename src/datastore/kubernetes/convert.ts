// From an object as the API server sends it to the typed model ClusterState takes, through the
// same validation as manifests (manifest.ts parseObject), so the API and files cannot disagree on
// what is valid. What differs from a manifest is handled here: list items come without
// apiVersion/kind; an object of another version than the watched one is refused by name; and pod
// addresses follow the API's meaning (a hostNetwork pod's status.podIP is the node's address, a
// finished pod's address has been released and may already be another pod's).
import type { KubeObject } from '../objects.js';
import { isClusterScoped } from '../objects.js';
import { parseObject, type ManifestProblem } from '../manifest.js';
import { apiVersionOf, resourceName } from './api.js';
import type { WatchedResource } from './resources.js';

/** Enough of an object to name it in logs and point an Event at it. */
export interface ObjectRef {
  readonly apiVersion: string;
  readonly kind: string;
  readonly namespace?: string;
  readonly name: string;
  readonly uid?: string;
  readonly resourceVersion?: string;
}

export type Converted =
  | { readonly ok: true; readonly ref: ObjectRef; readonly object: KubeObject }
  | { readonly ok: false; readonly ref: ObjectRef; readonly problems: readonly string[] };

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

export function refOf(raw: unknown, r: WatchedResource): ObjectRef {
  const o = (raw && typeof raw === 'object' ? raw : {}) as Record<string, unknown>;
  const meta = (o.metadata && typeof o.metadata === 'object' ? o.metadata : {}) as Record<string, unknown>;
  const namespace = r.namespaced ? str(meta.namespace) : undefined;
  const uid = str(meta.uid);
  const resourceVersion = str(meta.resourceVersion);
  return {
    apiVersion: str(o.apiVersion) ?? apiVersionOf(r),
    kind: str(o.kind) ?? r.kind,
    ...(namespace ? { namespace } : {}),
    name: str(meta.name) ?? '(unnamed)',
    ...(uid ? { uid } : {}),
    ...(resourceVersion ? { resourceVersion } : {}),
  };
}

/** Pods whose status.podIP(s) are not theirs to hold: a hostNetwork pod shows the node's address
 * (many pods share it; it is the host, not an endpoint of its own), and a Succeeded or Failed pod
 * keeps showing an address its sandbox gave back, which a new pod may already have. */
function podWithoutForeignAddresses(o: Record<string, unknown>): Record<string, unknown> {
  const spec = (o.spec ?? {}) as Record<string, unknown>;
  const status = (o.status ?? {}) as Record<string, unknown>;
  const terminal = status.phase === 'Succeeded' || status.phase === 'Failed';
  if (spec.hostNetwork !== true && !terminal) return o;
  const { podIP: _ip, podIPs: _ips, ...rest } = status;
  return { ...o, status: rest };
}

/** Validates one object of resource `r`. Never throws: a bad object comes back with its problems
 * ("field: reason"), named as well as it can be. */
export function convertApiObject(raw: unknown, r: WatchedResource): Converted {
  const ref = refOf(raw, r);
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    return { ok: false, ref, problems: [`is not an object (got ${raw === null ? 'null' : Array.isArray(raw) ? 'a list' : typeof raw})`] };
  }
  let o = raw as Record<string, unknown>;
  // list items of built-in kinds carry no apiVersion/kind; watch events and custom resources do
  if (o.apiVersion === undefined) o = { ...o, apiVersion: apiVersionOf(r) };
  if (o.kind === undefined) o = { ...o, kind: r.kind };
  if (o.apiVersion !== apiVersionOf(r)) {
    return { ok: false, ref, problems: [`apiVersion: ${JSON.stringify(o.apiVersion)}: unknown version; Weir reads ${r.kind} as ${apiVersionOf(r)} from ${resourceName(r)}`] };
  }
  if (o.kind !== r.kind) {
    return { ok: false, ref, problems: [`kind: ${JSON.stringify(o.kind)}: ${resourceName(r)} serves ${r.kind}`] };
  }
  const meta = o.metadata as Record<string, unknown> | undefined;
  if (r.namespaced && typeof meta?.namespace !== 'string') {
    return { ok: false, ref, problems: ['metadata.namespace: is required: the API server always sets it on namespaced objects'] };
  }
  // The API server sets metadata.namespace on nothing cluster-scoped; the schemas refuse it there.
  if (isClusterScoped(r.kind) && meta && 'namespace' in meta && (meta.namespace === '' || meta.namespace === null)) {
    const { namespace: _ns, ...m } = meta;
    o = { ...o, metadata: m };
  }
  if (r.kind === 'Pod') o = podWithoutForeignAddresses(o);
  const problems: ManifestProblem[] = [];
  const object = parseObject(o, { file: resourceName(r), document: 0 }, problems);
  if (!object || problems.length > 0) {
    return { ok: false, ref, problems: problems.map((p) => (p.field ? `${p.field}: ${p.message}` : p.message)) };
  }
  return { ok: true, ref, object };
}
