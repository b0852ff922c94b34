// `weir agent --datastore ...`: the agent of a real node, one process doing it all:
//
//   datastore (Kubernetes API or a directory of YAML) -> ClusterView (the last good state)
//     -> compile (this node's pods behind the interfaces the reconciler attached, host protection)
//     -> Datapath.apply (atomic slot flip)
//   InterfaceDiscovery + PodInterfaceReconciler: Weir's programs on this node's pod veths and
//     on the host interfaces its host endpoints select (attachments.ts, host-interfaces.ts)
//   the flow Agent (src/agent): ring buffer -> pipeline -> store + query API, its registry fed by
//     the datastore (feedRegistry), rules named by the compiler's id allocator (ids-file.ts)
//
// Ready (/readyz) once the datastore synced, the interfaces were reconciled once and the first
// policy was applied. Until the datastore synced nothing is applied: a restarted agent leaves the
// policy its predecessor left in the pinned maps (and the attachments, which it adopts) in force
// until it has the whole view again. A view ClusterState refuses, or an object the datastore
// refuses, leaves the last good policy enforced (the datastore logs it and, for Kubernetes,
// records an Event on the object). Stopping (SIGTERM) stops reading and flushes the flows; the
// programs and pins stay, so enforcement goes on while the agent restarts (`weir node uninstall`
// removes them).
import { existsSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { Agent, openAgentStore, type StoreTarget } from '../agent/agent.js';
import { Datapath } from '../datapath/datapath.js';
import { requirePrivileges } from '../datapath/privileges.js';
import { InterfaceDiscovery } from '../datapath/discovery/discovery.js';
import type { CniStyleInput } from '../datapath/discovery/styles.js';
import type { Datastore, DatastoreBatch, DatastoreLog } from '../datastore/datastore.js';
import { FileDatastore } from '../datastore/files.js';
import { KubernetesDatastore } from '../datastore/kubernetes/datastore.js';
import { KubeEventRecorder } from '../datastore/kubernetes/events.js';
import { loadKubeConfig } from '../datastore/kubernetes/config.js';
import { ClusterView } from '../datastore/view.js';
import { feedRegistry } from '../datastore/registry-feed.js';
import { autoHostEndpointName } from '../datastore/auto-host-endpoints.js';
import { ruleNamer } from '../flows/enrich.js';
import { EndpointRegistry, type WorldName } from '../flows/registry.js';
import type { FlowStore } from '../store/store.js';
import type { MetricsOptions } from '../metrics/agent-metrics.js';
import { failsafesFrom, type FailsafeSettings } from '../policy/failsafe.js';
import type { IdAllocator } from '../policy/ids.js';
import { loadIds, saveIds } from './ids-file.js';
import { compileNode, hostEndpointsInForce, localPods, releaseIds, type NodePolicySettings } from './compile.js';
import { NodeAttachments } from './attachments.js';
import { allHostInterfaces, nodeAddresses, parseInterfacePatterns, readNodeLinks, wantedHostInterfaces, type NodeLink } from './host-interfaces.js';

export const DEFAULT_PIN_ROOT = '/sys/fs/bpf/weir';
/** The node's links are re-read this often (a new NIC for a "*" host endpoint, a changed address). */
export const HOST_REFRESH_MS = 30_000;

export type DatastoreChoice =
  | { readonly kind: 'kubernetes'; readonly kubeconfig?: string }
  | { readonly kind: 'files'; readonly dir: string };

export interface NodeAgentOptions {
  readonly datastore: DatastoreChoice;
  /** this node's name (pods' spec.nodeName, host endpoints' spec.node) */
  readonly node: string;
  /** the agent's state (ids.json), the writer's spool and the embedded store (<dataDir>/flows) */
  readonly dataDir: string;
  /** a ClickHouse server instead of the embedded store */
  readonly store?: Extract<StoreTarget, { url: string }>;
  readonly listen: { readonly host: string; readonly port: number };
  readonly token?: string;
  readonly intervalMs?: number;
  readonly keepIps?: boolean;
  readonly autoHostEndpoints?: boolean;
  readonly failsafes?: FailsafeSettings;
  readonly worldNames?: readonly WorldName[];
  /** the CNI style of pod interfaces (default auto) */
  readonly cni?: CniStyleInput;
  /** the interfaces a "*" host endpoint covers, as patterns ("eth*,bond0"); default: see host-interfaces.ts */
  readonly hostInterfaces?: string;
  readonly pinRoot?: string;
  /** the reconciler's full re-read period (tests) */
  readonly resyncIntervalMs?: number;
  /** cardinality knobs of /metrics (src/metrics) */
  readonly metrics?: MetricsOptions;
  readonly log?: (line: string) => void;
}

export interface NodeAgentStatus {
  readonly ready: boolean;
  readonly waiting: readonly string[];
  readonly synced: boolean;
  readonly applies: number;
  readonly lastApplyError?: string;
  readonly hostInterfaces: readonly string[];
}

export class NodeAgent {
  private readonly log: (line: string) => void;
  private readonly settings: NodePolicySettings;
  private readonly patterns: RegExp[] | undefined;
  private readonly discovery: InterfaceDiscovery;
  private datastore!: Datastore;
  private view!: ClusterView;
  private datapath!: Datapath;
  private ids!: IdAllocator;
  private attachments!: NodeAttachments;
  private agent!: Agent;
  private registry!: EndpointRegistry;
  private unfeed: () => void = () => undefined;
  private links: NodeLink[] = [];
  private nodeIps: string[] = [];
  private booted = false;
  private booting = false;
  private reconciled = false;
  private applies = 0;
  private lastApplyError?: string;
  private savedIds = '';
  private hostTimer?: NodeJS.Timeout;
  private stopping?: Promise<void>;
  private readyLatch!: { promise: Promise<void>; resolve: () => void };

  constructor(private readonly opts: NodeAgentOptions) {
    if (!opts.node || !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(opts.node)) throw new Error(`--node: ${JSON.stringify(opts.node)} is not a node name (lower-case DNS name)`);
    if (!opts.dataDir) throw new Error('--data-dir: required (the agent\'s state and spool)');
    this.log = opts.log ?? ((line) => process.stderr.write(`weir agent: ${line}\n`));
    // bad failsafe lists and patterns fail here, before anything is loaded
    let failsafes;
    try {
      failsafes = failsafesFrom(opts.failsafes ?? {});
    } catch (err) {
      throw new Error((err as Error).message.replace(/^failsafeInbound/, '--failsafe-inbound').replace(/^failsafeOutbound/, '--failsafe-outbound'));
    }
    this.settings = { node: opts.node, autoHostEndpoints: opts.autoHostEndpoints === true, failsafes };
    this.patterns = opts.hostInterfaces !== undefined ? parseInterfacePatterns(opts.hostInterfaces) : undefined;
    this.discovery = new InterfaceDiscovery({ style: opts.cni ?? 'auto' });
    let resolve!: () => void;
    this.readyLatch = { promise: new Promise<void>((r) => { resolve = r; }), resolve: () => resolve() };
  }

  /** Loads the datapath, opens the store, starts the API and the datastore; resolves once the
   * API listens (readiness comes later: whenReady()). */
  async start(): Promise<string> {
    requirePrivileges('weir agent');
    const o = this.opts;
    this.datastore = this.makeDatastore(); // a bad --manifests or --kubeconfig fails before anything is made
    mkdirSync(o.dataDir, { recursive: true });
    this.ids = loadIds(o.dataDir);
    this.savedIds = JSON.stringify(this.ids.toJSON());
    const store: FlowStore = await openAgentStore(o.store ?? { dataDir: path.join(o.dataDir, 'flows') });
    const pinRoot = o.pinRoot ?? DEFAULT_PIN_ROOT;
    const fresh = !Datapath.isInstalled(pinRoot);
    try {
      // Reuses the pinned maps: the policy and conntrack a previous agent left stay in force.
      this.datapath = await Datapath.install(pinRoot);
    } catch (err) {
      await store.close().catch(() => undefined);
      throw err;
    }
    this.registry = new EndpointRegistry({ node: o.node, ...(o.worldNames ? { worldNames: o.worldNames } : {}) });
    // subscribed before the datastore starts: the first batch is the whole view
    this.unfeed = feedRegistry(this.datastore, this.registry);
    this.datastore.on('change', (b) => this.logRejected(b));
    this.view = new ClusterView(this.datastore, { nodeName: o.node, compile: () => this.onView(), log: this.dsLog });
    this.attachments = new NodeAttachments({
      discovery: this.discovery, datapath: this.datapath,
      ...(o.resyncIntervalMs !== undefined ? { resyncIntervalMs: o.resyncIntervalMs } : {}),
      onPlacementsChanged: () => this.applyPolicy('interfaces changed'),
      onError: (err) => this.log(`interfaces: ${err.message}`),
    });
    const dp = this.datapath;
    this.agent = new Agent({
      name: o.node, datapath: dp, store, registry: this.registry,
      ruleName: ruleNamer((id) => this.ids.ruleInfo(id)),
      reporter: o.node,
      ...(o.intervalMs !== undefined ? { intervalMs: o.intervalMs } : {}),
      ...(o.keepIps !== undefined ? { keepIps: o.keepIps } : {}),
      spoolDir: path.join(o.dataDir, 'spool'),
      api: { host: o.listen.host, port: o.listen.port, ...(o.token !== undefined ? { token: o.token } : {}) },
      log: this.log,
      notReady: () => this.waiting(),
      ...(o.metrics ? { metrics: o.metrics } : {}),
      onClose: () => dp.close(), // the handle only: programs and pins stay
    });
    // metrics hook (src/metrics): datastore health at scrape time, refused objects by kind
    this.agent.metrics.watchNodeAgent(this.datastore);
    let url: string;
    try {
      url = (await this.agent.start())!;
      await this.datastore.start();
    } catch (err) {
      await this.stop();
      // nothing is attached before boot(): pins this failed start made alone are removed
      if (fresh) Datapath.uninstall(pinRoot);
      throw err;
    }
    this.log(`node ${o.node}: API on ${url}; pins under ${dp.pinRoot}; waiting for the ${o.datastore.kind} datastore to sync`);
    void this.boot();
    return url;
  }

  get url(): string | undefined {
    return this.agent?.url;
  }

  /** The flow agent (tests and the CLI read its stats). */
  get flowAgent(): Agent {
    return this.agent;
  }

  whenReady(): Promise<void> {
    return this.readyLatch.promise;
  }

  status(): NodeAgentStatus {
    const waiting = this.waiting();
    return {
      ready: waiting.length === 0, waiting, synced: this.datastore?.synced ?? false, applies: this.applies,
      ...(this.lastApplyError ? { lastApplyError: this.lastApplyError } : {}),
      hostInterfaces: this.attachments?.hostInterfaces ?? [],
    };
  }

  private waiting(): string[] {
    const out: string[] = [];
    if (!this.datastore?.synced) out.push(`the ${this.opts.datastore.kind} datastore has not synced`);
    else if (!this.view.status().ready) out.push(`the datastore's view is inconsistent: ${this.view.status().problems.join('; ')}`);
    if (!this.reconciled) out.push('interfaces not reconciled yet');
    if (this.applies === 0) out.push(`no policy applied yet${this.lastApplyError ? ` (${this.lastApplyError})` : ''}`);
    return out;
  }

  private readonly dsLog: DatastoreLog = (level, message) => this.log(`datastore ${level}: ${message}`);

  private makeDatastore(): Datastore {
    const d = this.opts.datastore;
    if (d.kind === 'files') {
      if (!d.dir) throw new Error('--manifests: required with --datastore files (a directory of YAML manifests)');
      // checked before anything is loaded (the datastore's start() says the same, later)
      if (!existsSync(d.dir) || !statSync(d.dir).isDirectory()) throw new Error(`--manifests: ${JSON.stringify(d.dir)} is not a directory`);
      return new FileDatastore({ dir: d.dir, log: this.dsLog });
    }
    const loaded = loadKubeConfig(d.kubeconfig !== undefined ? { kubeconfig: d.kubeconfig } : {});
    this.log(`Kubernetes API ${loaded.server} (${loaded.source})`);
    return new KubernetesDatastore({
      kubeConfig: loaded.kubeConfig, log: this.dsLog,
      events: new KubeEventRecorder(loaded.kubeConfig, { host: this.opts.node, log: this.dsLog }),
    });
  }

  /** After sync: pods to the reconciler, host interfaces chosen, the first pass, the first apply. */
  private async boot(): Promise<void> {
    try {
      await this.datastore.whenSynced();
    } catch {
      return; // stopped before it synced
    }
    if (this.stopping) return;
    // A synced view ClusterState refused (a pod whose namespace is missing) is no policy to
    // enforce: wait for the first good one (onView boots then).
    if (!this.view.status().ready) {
      this.log(`datastore synced, but its view is inconsistent; nothing applied until it is good: ${this.view.status().problems.join('; ')}`);
      return;
    }
    if (this.booting) return;
    this.booting = true;
    this.log(`datastore synced: ${this.view.state.pods.size} pods, ${this.view.state.policies.size} network policies, ${this.view.state.globalPolicies.size} global policies`);
    try {
      await this.readLinks();
      await this.applyBeforeAttach();
      this.attachments.setPods(localPods(this.view.state, this.opts.node));
      await this.attachments.start(this.hostInterfaceNames());
    } catch (err) {
      this.log(`interfaces: ${(err as Error).message} (retrying)`);
      this.booting = false;
      if (!this.stopping) setTimeout(() => void this.boot(), 2_000).unref();
      return;
    }
    if (this.stopping) return;
    this.booted = true;
    this.reconciled = true;
    this.applyPolicy('synced');
    this.hostTimer = setInterval(() => void this.refreshHosts(), HOST_REFRESH_MS);
    this.hostTimer.unref();
    const u = this.attachments.unresolved();
    const adopted = this.attachments.counters().adopted;
    this.log(`attached to ${this.attachments.attachments().map((a) => a.ifname).join(', ') || 'no interface'}${adopted > 0 ? ` (adopted ${adopted} from an earlier agent)` : ''}${u.size > 0 ? `; not attached: ${[...u].map(([k, v]) => `${k} (${v.reason}: ${v.detail})`).join(', ')}` : ''}`);
    if (this.waiting().length === 0) {
      this.log('ready');
      this.readyLatch.resolve();
    }
  }

  /** A new accepted view: the reconciler's pods, the host interfaces, then the maps. */
  private onView(): void {
    if (!this.booted) { // boot() applies the first one
      if (this.datastore.synced && !this.booting) void this.boot();
      return;
    }
    this.attachments.setPods(localPods(this.view.state, this.opts.node));
    void this.refreshHosts();
    this.applyPolicy('view changed');
  }

  private logRejected(batch: DatastoreBatch): void {
    for (const r of batch.rejected) {
      this.log(`rejected ${r.kind} ${r.namespace ? `${r.namespace}/` : ''}${r.name} (${r.source}): ${r.problems.join('; ')}; enforcing the last good policy`);
    }
  }

  private hostInterfaceNames(): string[] {
    const pods = new Set([...this.attachments.placements().values()].map((p) => p.ifindex));
    return wantedHostInterfaces(hostEndpointsInForce(this.view.state, this.settings, this.nodeIps), this.opts.node,
      () => allHostInterfaces(this.links, this.discovery.style, pods, this.patterns));
  }

  private async readLinks(): Promise<boolean> {
    this.links = await readNodeLinks();
    const ips = nodeAddresses(this.links);
    const changed = ips.join(',') !== this.nodeIps.join(',');
    this.nodeIps = ips;
    if (changed) this.registry.setNodeAddresses(ips, Date.now());
    if (this.settings.autoHostEndpoints) {
      const auto = hostEndpointsInForce(this.view.state, this.settings, ips).find((h) => h.name === autoHostEndpointName(this.opts.node));
      if (auto) this.registry.upsertHostEndpoint({ name: auto.name, node: auto.node, labels: auto.labels, expectedIPs: auto.expectedIPs, interfaceName: auto.interfaceName }, Date.now());
    }
    return changed;
  }

  private refreshing = false;

  /** Re-reads the node's links: host interfaces to (de)select, node addresses to recompile. */
  private async refreshHosts(): Promise<void> {
    if (this.refreshing || this.stopping || !this.booted) return;
    this.refreshing = true;
    try {
      const changed = await this.readLinks();
      await this.attachments.setHostInterfaces(this.hostInterfaceNames());
      if (changed) this.applyPolicy('node addresses changed');
    } catch (err) {
      this.log(`host interfaces: ${(err as Error).message}`);
    } finally {
      this.refreshing = false;
    }
  }

  /**
   * The first policy goes into the maps before anything is attached, for the interfaces that are
   * there (found, not attached). After an upgrade that changed map layouts (datapath/pins.ts), the
   * new programs attached first would judge from empty new maps for a moment: a new flow into a
   * pod allowed as unpoliced, one out of a pod dropped as spoofed. On a plain restart this writes
   * what the maps already hold; the reconciler's attach then recompiles as usual.
   */
  private async applyBeforeAttach(): Promise<void> {
    const found = (await this.discovery.discover(localPods(this.view.state, this.opts.node))).found;
    const byName = new Map(this.links.map((l) => [l.ifname, l.ifindex]));
    const hosts = new Map<string, number>();
    for (const name of this.hostInterfaceNames()) {
      const ifindex = byName.get(name);
      if (ifindex !== undefined) hosts.set(name, ifindex);
    }
    const compiled = this.agent.metrics.timeCompile(() => compileNode(this.view.state, found, hosts, this.nodeIps, this.ids, this.settings));
    this.datapath.apply(compiled);
  }

  /** Compiles the last good view with the interfaces attached now and programs the maps. A
   * failure leaves the maps as they were (the last good policy stays enforced). */
  private applyPolicy(why: string): void {
    if (!this.booted || this.stopping) return;
    try {
      const compiled = this.agent.metrics.timeCompile(() => compileNode(this.view.state, this.attachments.placements(), this.attachments.hostPlacements(), this.nodeIps, this.ids, this.settings));
      const s = this.datapath.apply(compiled);
      // ids of pods and label sets gone for the grace period are forgotten (bounded ids.json)
      const released = releaseIds(this.ids, Date.now());
      if (released.identities + released.endpoints > 0) this.log(`released ${released.endpoints} endpoint ids and ${released.identities} identities unused for the grace period`);
      this.agent.metrics.policyApplied();
      this.applies++;
      // the first policy is in force in the new maps: pins an older agent left can go (datapath/pins.ts)
      if (this.applies === 1) try { this.datapath.finishUpgrade(this.log); } catch (e) { this.log(`pins: upgrade not finished: ${(e as Error).message}`); }
      this.lastApplyError = undefined;
      const wrote = s.endpointsWritten + s.endpointsDeleted + s.policyWritten + s.policyDeleted;
      if (wrote > 0 || this.applies === 1) {
        this.log(`applied policy (${why}): ${compiled.endpoints.size} endpoint addresses, ${compiled.policy.size} policy keys, generation ${this.datapath.generation()}`);
      }
      const ids = JSON.stringify(this.ids.toJSON());
      if (ids !== this.savedIds) {
        saveIds(this.opts.dataDir, this.ids);
        this.savedIds = ids;
      }
    } catch (err) {
      this.agent.metrics.policyApplyFailed(err);
      this.lastApplyError = (err as Error).message;
      this.log(`applying policy (${why}) failed: ${(err as Error).message}; the last applied policy stays enforced`);
    }
  }

  /** Stops reading (datastore, interfaces, ring), flushes the flows; programs and pins stay. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      if (this.hostTimer) clearInterval(this.hostTimer);
      const step = async (what: string, f: () => unknown) => {
        try { await f(); } catch (e) { this.log(`stopping: ${what}: ${(e as Error).message}`); }
      };
      await step('datastore', () => this.datastore?.stop());
      this.view?.close();
      this.unfeed();
      await step('interfaces', () => this.attachments?.stop());
      await step('flows', () => this.agent?.close()); // flushes, closes the store and the datapath handle
      if (!this.agent) this.datapath?.close();
    })();
    return this.stopping;
  }
}

/** Starts a node agent; resolves once its API listens. */
export async function runNodeAgent(opts: NodeAgentOptions): Promise<NodeAgent> {
  const agent = new NodeAgent(opts);
  await agent.start();
  return agent;
}
