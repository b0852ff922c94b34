// The few raw API calls the Kubernetes datastore makes itself: listing a watched resource as plain
// JSON, and turning HTTP failures into errors that name the verb and the resource. The generated
// typed clients are not used for lists on purpose: they rename fields (NetworkPolicy's `from`
// becomes `_from`) and turn timestamps into Dates, while watch events arrive as the API server's
// JSON; the datastore validates one shape, the API's own. Credentials, CAs and client certificates
// come from the KubeConfig (applyToHTTPSOptions), as the library's own Watch does.
import http from 'node:http';
import https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import type { WatchedResource, WatchVerb } from './resources.js';

/** A list page size the API server serves cheaply (client-go's reflector uses 500 too). */
export const LIST_PAGE_SIZE = 500;
/** A list that has not answered in this long is abandoned (and retried with backoff). */
export const LIST_TIMEOUT_MS = 60_000;

/** The URL path of a resource at cluster scope: /api/v1/pods, /apis/networking.k8s.io/v1/networkpolicies. */
export function resourcePath(r: Pick<WatchedResource, 'group' | 'version' | 'resource'>): string {
  return r.group === '' ? `/api/${r.version}/${r.resource}` : `/apis/${r.group}/${r.version}/${r.resource}`;
}

/** How RBAC and kubectl name a resource: pods, networkpolicies.networking.k8s.io. */
export function resourceName(r: Pick<WatchedResource, 'group' | 'resource'>): string {
  return r.group === '' ? r.resource : `${r.resource}.${r.group}`;
}

/** The apiVersion objects of a resource carry: v1, networking.k8s.io/v1. */
export function apiVersionOf(r: Pick<WatchedResource, 'group' | 'version'>): string {
  return r.group === '' ? r.version : `${r.group}/${r.version}`;
}

/** A failed call to the API server, naming what was refused. */
export class KubeApiError extends Error {
  constructor(
    readonly verb: WatchVerb | 'create',
    readonly resource: string,
    /** HTTP status, 0 when the server was not reached */
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'KubeApiError';
  }
}

/** The error for an HTTP status: 403 names the verb and resource exactly, as RBAC needs them. */
export function apiError(verb: WatchVerb | 'create', resource: string, status: number, detail?: string): KubeApiError {
  const server = detail ? ` (API server: ${detail})` : '';
  if (status === 403) return new KubeApiError(verb, resource, status, `cannot ${verb} ${resource} at cluster scope: forbidden${server}; the agent's ClusterRole needs verb "${verb}" on ${resource}`);
  if (status === 401) return new KubeApiError(verb, resource, status, `cannot ${verb} ${resource}: unauthorized: the API server refused the agent's credentials${server}`);
  if (status === 404) return new KubeApiError(verb, resource, status, `cannot ${verb} ${resource}: not found: the API server does not serve it (is the CRD installed?)${server}`);
  return new KubeApiError(verb, resource, status, `cannot ${verb} ${resource}: HTTP ${status}${server}`);
}

export interface RawList {
  readonly items: unknown[];
  readonly metadata: { resourceVersion: string };
}

/** GET of a JSON document; rejects with KubeApiError for non-2xx or unreachable servers. */
async function getJson(kc: KubeConfig, path: string, verb: WatchVerb, resource: string): Promise<unknown> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new KubeApiError(verb, resource, 0, `cannot ${verb} ${resource}: no current cluster in the Kubernetes configuration`);
  const url = new URL(cluster.server.replace(/\/+$/, '') + path);
  const opts: https.RequestOptions = { method: 'GET', headers: { Accept: 'application/json' } };
  try {
    await kc.applyToHTTPSOptions(opts); // credentials and CA: a bad kubeconfig fails here
  } catch (err) {
    throw new KubeApiError(verb, resource, 0, `cannot ${verb} ${resource}: ${(err as Error).message}`);
  }
  const lib = url.protocol === 'http:' ? http : https;
  if (url.protocol === 'http:') delete opts.agent; // the library makes an https agent for https servers
  return new Promise((resolve, reject) => {
    const req = lib.request(url, opts, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (err) => reject(new KubeApiError(verb, resource, 0, `cannot ${verb} ${resource}: ${err.message}`)));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const status = res.statusCode ?? 0;
        if (status < 200 || status >= 300) {
          let detail: string | undefined;
          try {
            detail = (JSON.parse(text) as { message?: string }).message;
          } catch {
            detail = text.slice(0, 200) || undefined;
          }
          reject(apiError(verb, resource, status, detail));
          return;
        }
        try {
          resolve(JSON.parse(text));
        } catch (err) {
          reject(new KubeApiError(verb, resource, status, `cannot ${verb} ${resource}: the response is not JSON: ${(err as Error).message}`));
        }
      });
    });
    req.setTimeout(LIST_TIMEOUT_MS, () => req.destroy(new Error(`no answer in ${LIST_TIMEOUT_MS / 1000}s`)));
    req.on('error', (err) => reject(new KubeApiError(verb, resource, 0, `cannot ${verb} ${resource}: ${err.message}`)));
    req.end();
  });
}

/** Lists every object of a resource at cluster scope, following `continue` tokens. Items of
 * built-in kinds come without apiVersion/kind (the API server leaves them out of lists); callers
 * fill them in from the resource. */
export async function listResource(kc: KubeConfig, r: WatchedResource): Promise<RawList> {
  const name = resourceName(r);
  const items: unknown[] = [];
  let cont: string | undefined;
  let resourceVersion = '';
  do {
    const q = new URLSearchParams({ limit: String(LIST_PAGE_SIZE) });
    if (cont) q.set('continue', cont);
    const page = await getJson(kc, `${resourcePath(r)}?${q}`, 'list', name) as { items?: unknown; metadata?: { resourceVersion?: string; continue?: string } };
    if (!Array.isArray(page?.items)) throw new KubeApiError('list', name, 200, `cannot list ${name}: the response has no items list`);
    items.push(...page.items);
    resourceVersion ||= page.metadata?.resourceVersion ?? ''; // the first page's: the snapshot every page belongs to
    cont = page.metadata?.continue || undefined;
  } while (cont);
  return { items, metadata: { resourceVersion } };
}
