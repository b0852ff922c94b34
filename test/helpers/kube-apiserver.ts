// A STAND-IN for kube-apiserver, the only one the tests use: no real API server (nor etcd, nor a
// container runtime to run them) can run on this machine, so the Kubernetes datastore is tested
// against this real HTTP(S) server speaking the API server's list/watch protocol on 127.0.0.1,
// through the real @kubernetes/client-node and a real kubeconfig. What it implements, as the
// API server does:
// - GET /api/v1/<resource> and /apis/<group>/<version>/<resource> at cluster scope: a List with
//   metadata.resourceVersion, every object in one page (no `continue`); items of built-in kinds
//   without apiVersion/kind, custom resources with them.
// - GET ...?watch=true&resourceVersion=N: a JSON-lines stream of {type, object}: ADDED, MODIFIED,
//   DELETED with each object's resourceVersion, replaying the history after N first; BOOKMARK
//   (when allowWatchBookmarks=true) on bookmark(); for an N older than the retained history, an
//   ERROR event with a Status of code 410 (reason Expired, "too old resource version") and the end
//   of the stream, as the watch cache answers. resourceVersion ""/"0": ADDED for every object first.
// - One resourceVersion counter for all resources (etcd's revision).
// - Bearer token authentication (401 without it), 403 Forbidden with the API server's Status
//   message for a verb and resource a test forbids, POST /api/v1/namespaces/<ns>/events recorded.
// - Failures on demand: dropping open watches (cleanly or by resetting the socket), compacting the
//   history, and restart (stop and start on the same port), keeping or losing the watch history.
// - Lost events on demand: apply/delete with { silent: true } change the store (and the
//   resourceVersion) without a watch event or history entry, as a watch that dropped a line would
//   look to its client: only a new list shows the change.
// What it does not do: admission, validation, defaulting, field/label selectors, namespaced
// paths, pagination, protobuf. It stores whatever a test gives it, malformed objects included.
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import path from 'node:path';
import { WATCHED_RESOURCES, type WatchedResource } from '../../src/datastore/kubernetes/resources.js';

type Obj = Record<string, any>;
export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

interface HistoryEntry {
  readonly rv: number;
  readonly resource: string;
  readonly type: EventType;
  readonly object: Obj;
}

interface OpenWatch {
  readonly resource: string;
  readonly res: http.ServerResponse;
  readonly bookmarks: boolean;
}

export interface StandInOptions {
  /** required as "Authorization: Bearer <token>" when set */
  readonly token?: string;
  /** serve HTTPS with this key and certificate (PEM) */
  readonly tls?: { readonly key: string; readonly cert: string };
  readonly resources?: readonly WatchedResource[];
}

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly query: Record<string, string>;
}

const clone = <T>(o: T): T => structuredClone(o);
const resName = (r: WatchedResource): string => (r.group === '' ? r.resource : `${r.resource}.${r.group}`);
const apiVersionOf = (r: WatchedResource): string => (r.group === '' ? r.version : `${r.group}/${r.version}`);

export class KubeApiServerStandIn {
  private server?: http.Server;
  private readonly sockets = new Set<Socket>();
  private readonly watches = new Set<OpenWatch>();
  private readonly resources = new Map<string, WatchedResource>();
  /** resource name ("pods", "networkpolicies.networking.k8s.io") -> key -> object */
  private readonly store = new Map<string, Map<string, Obj>>();
  private history: HistoryEntry[] = [];
  private rv = 1;
  /** watches from a resourceVersion older than this get 410 */
  private oldestRv = 1;
  private readonly forbidden = new Set<string>();
  port = 0;
  readonly events: Obj[] = [];
  readonly requests: RecordedRequest[] = [];

  constructor(private readonly opts: StandInOptions = {}) {
    for (const r of opts.resources ?? WATCHED_RESOURCES) {
      this.resources.set(resName(r), r);
      this.store.set(resName(r), new Map());
    }
  }

  get url(): string {
    return `${this.opts.tls ? 'https' : 'http'}://127.0.0.1:${this.port}`;
  }

  get resourceVersion(): number {
    return this.rv;
  }

  /** Listens on 127.0.0.1 (port 0: any free port; a restart reuses the port). */
  async start(port = this.port): Promise<void> {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => this.handle(req, res);
    const server = this.opts.tls ? https.createServer({ key: this.opts.tls.key, cert: this.opts.tls.cert }, handler) : http.createServer(handler);
    server.on(this.opts.tls ? 'secureConnection' : 'connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as { port: number }).port;
  }

  /** Stops listening and resets every connection, as a crashed API server would. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    for (const w of this.watches) w.res.socket?.destroy();
    this.watches.clear();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Stop, then start on the same port. Without keepHistory the new server's watch cache starts at
   * the current resourceVersion (the objects are in etcd; the event history is gone). */
  async restart(opts: { keepHistory: boolean }): Promise<void> {
    await this.stop();
    if (!opts.keepHistory) this.compact();
    await this.start(this.port);
  }

  /** Forgets the event history: watches from any earlier resourceVersion get 410 Gone. */
  compact(): void {
    this.history = [];
    this.oldestRv = this.rv;
  }

  /** Ends every open watch (of one resource, or all): cleanly, or by resetting the connection. */
  dropWatches(opts: { resource?: string; abrupt?: boolean } = {}): number {
    let n = 0;
    for (const w of [...this.watches]) {
      if (opts.resource && w.resource !== opts.resource) continue;
      this.watches.delete(w);
      if (opts.abrupt) w.res.socket?.destroy();
      else w.res.end();
      n++;
    }
    return n;
  }

  /** Sends a BOOKMARK at the current resourceVersion to watches that asked for them. */
  bookmark(): void {
    for (const w of this.watches) {
      if (!w.bookmarks) continue;
      const r = this.resources.get(w.resource)!;
      this.send(w, { type: 'BOOKMARK', object: { kind: r.kind, apiVersion: apiVersionOf(r), metadata: { resourceVersion: String(this.rv) } } });
    }
  }

  openWatches(resource?: string): number {
    return [...this.watches].filter((w) => !resource || w.resource === resource).length;
  }

  /** Refuses `verb` on `resource` (e.g. "watch", "networkpolicies.networking.k8s.io", or "create", "events"). */
  forbid(verb: string, resource: string): void {
    this.forbidden.add(`${verb} ${resource}`);
  }

  allow(verb: string, resource: string): void {
    this.forbidden.delete(`${verb} ${resource}`);
  }

  // ---- objects ---------------------------------------------------------------------------------

  private keyOf(r: WatchedResource, o: Obj): string {
    const name = o?.metadata?.name ?? `(unnamed-${randomUUID()})`;
    return r.namespaced ? `${o?.metadata?.namespace ?? ''}/${name}` : name;
  }

  private resource(name: string): WatchedResource {
    const r = this.resources.get(name);
    if (!r) throw new Error(`stand-in: unknown resource ${name}`);
    return r;
  }

  /** Creates or replaces an object as given (no validation), stamping uid, resourceVersion and
   * creationTimestamp as the API server does; returns the stored object. silent: no watch event. */
  apply(resource: string, object: Obj, opts: { silent?: boolean } = {}): Obj {
    const r = this.resource(resource);
    const o = clone(object);
    const key = this.keyOf(r, o);
    const had = this.store.get(resource)!.get(key);
    this.rv++;
    if (o.metadata && typeof o.metadata === 'object') {
      o.metadata.uid = had?.metadata?.uid ?? randomUUID();
      o.metadata.resourceVersion = String(this.rv);
      o.metadata.creationTimestamp = had?.metadata?.creationTimestamp ?? new Date().toISOString();
    }
    this.store.get(resource)!.set(key, o);
    if (!opts.silent) this.emit(resource, had ? 'MODIFIED' : 'ADDED', o);
    return clone(o);
  }

  /** Deletes an object; the DELETED event carries its last state at a new resourceVersion.
   * silent: no watch event. */
  delete(resource: string, namespace: string | undefined, name: string, opts: { silent?: boolean } = {}): void {
    const r = this.resource(resource);
    const key = r.namespaced ? `${namespace}/${name}` : name;
    const had = this.store.get(resource)!.get(key);
    if (!had) throw new Error(`stand-in: ${resource} ${key} does not exist`);
    this.store.get(resource)!.delete(key);
    this.rv++;
    const o = clone(had);
    o.metadata.resourceVersion = String(this.rv);
    if (!opts.silent) this.emit(resource, 'DELETED', o);
  }

  /** Sends an event as given to the watches of `resource` (a malformed one, say), not stored. */
  rawEvent(resource: string, type: string, object: unknown): void {
    this.rv++;
    for (const w of this.watches) if (w.resource === resource) this.send(w, { type, object });
  }

  get(resource: string, namespace: string | undefined, name: string): Obj | undefined {
    const r = this.resource(resource);
    const o = this.store.get(resource)!.get(r.namespaced ? `${namespace}/${name}` : name);
    return o && clone(o);
  }

  private emit(resource: string, type: EventType, object: Obj): void {
    this.history.push({ rv: this.rv, resource, type, object: clone(object) });
    for (const w of this.watches) if (w.resource === resource) this.send(w, { type, object });
  }

  private send(w: OpenWatch, event: unknown): void {
    if (!w.res.writableEnded && !w.res.destroyed) w.res.write(`${JSON.stringify(event)}\n`);
  }

  // ---- HTTP ------------------------------------------------------------------------------------

  private status(res: http.ServerResponse, code: number, reason: string, message: string): void {
    res.writeHead(code, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code }));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://stand-in');
    const query = Object.fromEntries(url.searchParams);
    this.requests.push({ method: req.method ?? '', path: url.pathname, query });
    if (this.opts.token && req.headers.authorization !== `Bearer ${this.opts.token}`) {
      this.status(res, 401, 'Unauthorized', 'Unauthorized');
      return;
    }
    const ev = /^\/api\/v1\/namespaces\/([^/]+)\/events$/.exec(url.pathname);
    if (ev && req.method === 'POST') {
      if (this.forbidden.has('create events')) {
        this.status(res, 403, 'Forbidden', `events is forbidden: User "system:serviceaccount:weir:weir" cannot create resource "events" in API group "" in the namespace "${ev[1]}"`);
        return;
      }
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Obj;
        this.events.push({ ...body, metadata: { ...body.metadata, namespace: ev[1] } });
        res.writeHead(201, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(body));
      });
      return;
    }
    const m = /^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))\/([^/]+)$/.exec(url.pathname);
    const group = m ? (m[1] ? '' : m[2]!) : undefined;
    const name = m ? (group === '' ? m[4]! : `${m[4]}.${group}`) : undefined;
    const r = name ? this.resources.get(name) : undefined;
    if (!r || req.method !== 'GET' || (m![1] ?? m![3]) !== r.version) {
      this.status(res, 404, 'NotFound', `the server could not find the requested resource (${req.method} ${url.pathname})`);
      return;
    }
    const verb = query.watch === 'true' || query.watch === '1' ? 'watch' : 'list';
    if (this.forbidden.has(`${verb} ${name}`)) {
      this.status(res, 403, 'Forbidden',
        `${name} is forbidden: User "system:serviceaccount:weir:weir" cannot ${verb} resource "${r.resource}" in API group "${r.group}" at the cluster scope`);
      return;
    }
    if (verb === 'list') this.list(r, res);
    else this.watch(r, query, res);
  }

  private list(r: WatchedResource, res: http.ServerResponse): void {
    const builtin = r.group !== 'weir.dev';
    const items = [...this.store.get(resName(r))!.values()].map((o) => {
      const c = clone(o);
      if (builtin && c && typeof c === 'object') {
        delete c.apiVersion;
        delete c.kind;
      }
      return c;
    });
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ kind: `${r.kind}List`, apiVersion: apiVersionOf(r), metadata: { resourceVersion: String(this.rv) }, items }));
  }

  private watch(r: WatchedResource, query: Record<string, string>, res: http.ServerResponse): void {
    const resource = resName(r);
    const from = query.resourceVersion ?? '';
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    const w: OpenWatch = { resource, res, bookmarks: query.allowWatchBookmarks === 'true' };
    if (from === '' || from === '0') {
      for (const o of this.store.get(resource)!.values()) this.send(w, { type: 'ADDED', object: o });
    } else {
      const n = Number(from);
      if (!Number.isInteger(n) || n < this.oldestRv) {
        // the watch cache's answer to a resourceVersion it no longer has
        this.send(w, { type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
          message: `too old resource version: ${from} (${this.oldestRv})`, reason: 'Expired', code: 410 } });
        res.end();
        return;
      }
      for (const h of this.history) if (h.resource === resource && h.rv > n) this.send(w, { type: h.type, object: h.object });
    }
    this.watches.add(w);
    res.on('close', () => this.watches.delete(w));
  }
}

/** A self-signed certificate for 127.0.0.1 (openssl), for HTTPS and in-cluster tests. */
export function selfSignedCert(dir: string): { key: string; cert: string; keyFile: string; certFile: string } {
  const keyFile = path.join(dir, 'apiserver.key');
  const certFile = path.join(dir, 'apiserver.crt');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'pipe' });
  return { key: readFileSync(keyFile, 'utf8'), cert: readFileSync(certFile, 'utf8'), keyFile, certFile };
}

/** Writes a kubeconfig for `server` with a bearer token (and the CA, for HTTPS). */
export function writeKubeconfig(file: string, server: string, token: string, caFile?: string): void {
  writeFileSync(file, [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: stand-in`,
    '  cluster:',
    `    server: ${server}`,
    ...(caFile ? [`    certificate-authority: ${caFile}`] : []),
    'users:',
    '- name: weir',
    '  user:',
    `    token: ${token}`,
    'contexts:',
    '- name: stand-in',
    '  context: {cluster: stand-in, user: weir}',
    'current-context: stand-in',
    '',
  ].join('\n'));
}
