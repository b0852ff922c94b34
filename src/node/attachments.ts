// The node's attachments: a PodInterfaceReconciler for this node's pods and the host interfaces
// its host endpoints select. The reconciler takes its host interfaces when it is made, so a
// change of that set (a HostEndpoint added, a "*" endpoint meeting a new NIC) replaces it: the new
// one adopts every attachment the old one made (Weir's programs already there), and Weir's host
// filters come off the interfaces no longer selected. Pod attachments are never interrupted.
import type { Datapath } from '../datapath/datapath.js';
import type { InterfaceDiscovery, DiscoveryPod } from '../datapath/discovery/discovery.js';
import { PodInterfaceReconciler, type Placement, type ReconcilerCounters, type Unresolved, type AttachmentInfo } from '../datapath/discovery/reconciler.js';
import { detachWeirFilters, weirPrograms } from './tc-cleanup.js';

export interface NodeAttachmentsOptions {
  readonly discovery: InterfaceDiscovery;
  readonly datapath: Datapath;
  /** after a pass changed which pod (or host interface) sits where: recompile, never await a pass */
  readonly onPlacementsChanged: () => void;
  readonly onError: (err: Error) => void;
  readonly resyncIntervalMs?: number;
}

export class NodeAttachments {
  private reconciler: PodInterfaceReconciler;
  private hosts: readonly string[] = [];
  private pods: readonly DiscoveryPod[] = [];
  private started = false;
  private replacing: Promise<void> = Promise.resolve();

  constructor(private readonly opts: NodeAttachmentsOptions) {
    this.reconciler = this.make([]);
  }

  private make(hosts: readonly string[]): PodInterfaceReconciler {
    return new PodInterfaceReconciler({
      discovery: this.opts.discovery, datapath: this.opts.datapath, hostInterfaces: hosts,
      ...(this.opts.resyncIntervalMs !== undefined ? { resyncIntervalMs: this.opts.resyncIntervalMs } : {}),
      onPlacementsChanged: () => this.opts.onPlacementsChanged(),
      onError: this.opts.onError,
    });
  }

  setPods(pods: readonly DiscoveryPod[]): void {
    this.pods = pods;
    this.reconciler.setPods(pods);
  }

  get hostInterfaces(): readonly string[] {
    return this.hosts;
  }

  /** Starts the reconciler: its first pass has run when this resolves. */
  async start(hosts: readonly string[]): Promise<void> {
    this.hosts = [...hosts];
    this.reconciler = this.make(this.hosts);
    this.reconciler.setPods(this.pods);
    await this.reconciler.start();
    this.started = true;
  }

  /** Makes `hosts` the selected host interfaces (a no-op when they are). One change at a time. */
  setHostInterfaces(hosts: readonly string[]): Promise<void> {
    const next = [...new Set(hosts)].sort();
    this.replacing = this.replacing.then(async () => {
      if (!this.started || next.join(',') === this.hosts.join(',')) return;
      const dropped = this.hosts.filter((h) => !next.includes(h));
      const old = this.reconciler;
      await old.stop(); // attachments stay: the next one adopts them
      const progs = await weirPrograms(this.opts.datapath);
      for (const ifname of dropped) {
        try {
          await detachWeirFilters(ifname, progs, ['host']);
        } catch (err) {
          this.opts.onError(new Error(`removing Weir's host programs from ${ifname}: ${(err as Error).message}`));
        }
      }
      this.hosts = next;
      this.reconciler = this.make(next);
      this.reconciler.setPods(this.pods);
      await this.reconciler.start();
    }).catch((err: Error) => this.opts.onError(err));
    return this.replacing;
  }

  placements(): Map<string, Placement> {
    return this.reconciler.placements();
  }

  hostPlacements(): Map<string, number> {
    return this.reconciler.hostPlacements();
  }

  unresolved(): Map<string, Unresolved> {
    return this.reconciler.unresolved();
  }

  attachments(): AttachmentInfo[] {
    return this.reconciler.attachments();
  }

  counters(): ReconcilerCounters {
    return this.reconciler.counters();
  }

  resync(): Promise<void> {
    return this.reconciler.resync();
  }

  /** Stops watching; the attachments stay (enforcement goes on while the agent restarts). */
  async stop(): Promise<void> {
    this.started = false;
    await this.replacing;
    await this.reconciler.stop();
  }
}
