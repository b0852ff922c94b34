// `weir lab`: a Kubernetes node on this machine. The node is a network namespace, every pod a
// network namespace joined to it by a veth pair, and Weir's real datapath is attached to the
// node-side veths and to the node's uplink (its host interface). Objects come from ordinary
// Kubernetes YAML; every change is validated as a whole before anything is touched, and returns
// once the datapath enforces it.
import { existsSync } from 'node:fs';
import { ClusterState } from '../datastore/cluster.js';
import { loadManifests } from '../datastore/manifest.js';
import { describeObject, objectKey, type KubeObject, type Pod } from '../datastore/objects.js';
import type { GlobalNetworkPolicy } from '../datastore/host-objects.js';
import { compilePolicy, type CompileOptions, type CompiledDatapath, type HostCompileOptions, type PlacedPod } from '../policy/compile.js';
import { IdAllocator } from '../policy/ids.js';
import { failsafesFrom, type FailsafeSettings } from '../policy/failsafe.js';
import { Datapath } from '../datapath/datapath.js';
import { requirePrivileges } from '../datapath/privileges.js';
import { assignAddresses, LAB_NODE_V4, LAB_NODE_V6, LAB_WORLD_V4, LAB_WORLD_V6 } from './addresses.js';
import { LabNetwork, UPLINK_IFNAME, type LabHostRole, type PodAttachment } from './network.js';
import {
  checkLabName, labDir, labExists, labPinRoot, readLabState, removeLabDir, writeLabState, type LabHostState, type LabPodState, type LabState,
} from './state.js';
import { labFailsafes, labHostEndpoints, labHostNotes, labHostWarnings, labNodeIps, labNodeName, mergeFailsafeSettings } from './host-protection.js';
import { stopLabAgent } from './lab-agent.js';

export const DEFAULT_LAB = 'weir';

export interface LabChange {
  readonly created: string[];
  readonly updated: string[];
  readonly deleted: string[];
}

/** Host protection settings of a lab (persisted in its state). */
export interface LabSettings {
  /** one automatic HostEndpoint for the lab node ("*", the Node's labels and addresses); an
   * applied HostEndpoint of the node for "*" wins over it */
  readonly autoHostEndpoints?: boolean;
  /** failsafe ports; on apply, each given field replaces the lab's (undefined keeps it) */
  readonly failsafes?: FailsafeSettings;
}

function podPorts(pod: Pod): string[] {
  return [...new Set(pod.ports.map((p) => `${p.port}/${p.protocol}`))];
}

function attachmentOf(key: string, p: LabPodState): PodAttachment {
  return { key, netns: p.netns, hostIfname: p.hostIfname, hostIfindex: p.hostIfindex, agentPid: p.agentPid, socketPath: p.socketPath };
}

export class Lab {
  private constructor(
    private state: LabState,
    private readonly network: LabNetwork,
    private readonly datapath: Datapath,
  ) {}

  get name(): string { return this.state.name; }
  get snapshot(): Readonly<LabState> { return this.state; }

  /** Creates the lab from manifests. Fails if it is up already; on failure removes what it made. */
  static async up(name: string, files: readonly string[], settings: LabSettings = {}): Promise<{ lab: Lab; change: LabChange }> {
    checkLabName(name);
    if (labExists(name)) throw new Error(`lab "${name}" is already up; change it with \`weir lab apply\`, or remove it with \`weir lab down\``);
    const failsafes = mergeFailsafeSettings(undefined, settings.failsafes);
    failsafesFrom(failsafes); // a bad port list fails here, before anything is made
    const objects = loadManifests(files).map((o) => o.object);
    const cluster = new ClusterState(objects); // validates references before anything is created
    requirePrivileges('weir lab up');
    const network = new LabNetwork({ lab: name, stateDir: labDir(name) });
    let datapath: Datapath | undefined;
    try {
      await network.createNode();
      await network.createUplink();
      datapath = await Datapath.install(labPinRoot(name));
      // The node's host interface: inside the node netns, never one of the machine's.
      const nodeNetnsPath = `/run/netns/${network.nodeNetns}`;
      datapath.attachHostDevice({ ifname: UPLINK_IFNAME, netns: nodeNetnsPath });
      const state: LabState = {
        version: 1, name, createdAt: new Date().toISOString(), pinRoot: labPinRoot(name), nodeNetns: network.nodeNetns,
        objects: [], pods: {}, ids: new IdAllocator().toJSON(),
        uplink: { ifname: UPLINK_IFNAME, ifindex: await network.uplinkIfindex() },
        autoHostEndpoints: settings.autoHostEndpoints === true,
        failsafes,
      };
      const lab = new Lab(state, network, datapath);
      const change = await lab.reconcile(cluster);
      return { lab, change };
    } catch (err) {
      datapath?.close();
      await Lab.down(name).catch(() => undefined);
      throw err;
    }
  }

  /** Opens a lab that is up (from its state file and pinned maps). */
  static open(name: string): Lab {
    checkLabName(name);
    const state = readLabState(name);
    requirePrivileges('weir lab');
    return new Lab(state, new LabNetwork({ lab: name, stateDir: labDir(name) }), Datapath.open(state.pinRoot));
  }

  /** Creates or replaces objects, and changes the given settings. A bad batch (or a bad
   * failsafe list) changes nothing. */
  async apply(files: readonly string[], settings: LabSettings = {}): Promise<LabChange> {
    const next = this.nextSettings(settings);
    failsafesFrom(next.failsafes);
    const objects = loadManifests(files).map((o) => o.object);
    const cluster = this.cluster();
    cluster.apply(objects);
    return this.reconcile(cluster, next);
  }

  /** The lab's settings with `change` applied (undefined fields keep the lab's). */
  private nextSettings(change: LabSettings): { autoHostEndpoints: boolean; failsafes: FailsafeSettings } {
    return {
      autoHostEndpoints: change.autoHostEndpoints ?? this.state.autoHostEndpoints === true,
      failsafes: mergeFailsafeSettings(this.state.failsafes, change.failsafes),
    };
  }

  /** The lab's host protection settings. */
  get settings(): { autoHostEndpoints: boolean; failsafes: FailsafeSettings } {
    return this.nextSettings({});
  }

  /** What a user of host protection should hear now: failsafes disabled, Deny rules that
   * failsafes override (as `weir policy check` says them). */
  warnings(): string[] {
    return labHostWarnings(this.state);
  }

  /** Things worth knowing about host protection: host endpoints of another node. */
  notes(): string[] {
    return labHostNotes(this.state);
  }

  /** Deletes the objects the manifests name. */
  async delete(files: readonly string[]): Promise<LabChange & { missing: string[] }> {
    const objects = loadManifests(files).map((o) => o.object);
    const cluster = this.cluster();
    const { missing } = cluster.delete(objects);
    const change = await this.reconcile(cluster);
    return { ...change, missing };
  }

  cluster(): ClusterState {
    // The state holds built-in namespaces only when they were applied (ClusterState.objects()),
    // and an applied `default` Namespace replaces the built-in one here, labels included.
    return new ClusterState(this.state.objects);
  }

  /** What the datapath was last given (recomputed from state; ids are stable). */
  compiled(): CompiledDatapath {
    const cluster = this.cluster();
    return compilePolicy(cluster, this.placedPods(cluster), new IdAllocator(this.state.ids), this.compileOptions(this.state));
  }

  /** The node's addresses are the host's (identity HOST) once the lab has its uplink; with the
   * uplink's programs attached, its host endpoints, global policies and failsafes too. */
  private compileOptions(s: LabState): CompileOptions {
    const hostIps = labNodeIps(s);
    const host = this.hostCompileInput(s);
    return host ? { hostIps, host } : { hostIps };
  }

  /** The host protection input of the compiler (none for a state from before the uplink had
   * Weir's programs). */
  hostCompileInput(s: LabState = this.state): HostCompileOptions | undefined {
    if (!s.uplink) return undefined;
    return {
      node: labNodeName(s),
      hostEndpoints: labHostEndpoints(s),
      globalPolicies: s.objects.filter((o): o is GlobalNetworkPolicy => o.kind === 'GlobalNetworkPolicy'),
      failsafes: labFailsafes(s),
      // the node's policed host interfaces: name -> ifindex in the node netns
      interfaces: new Map([[s.uplink.ifname, s.uplink.ifindex]]),
    };
  }

  private placedPods(cluster: ClusterState): PlacedPod[] {
    const placed: PlacedPod[] = [];
    for (const pod of cluster.pods.values()) {
      const p = this.state.pods[`${pod.namespace}/${pod.name}`];
      if (!p) continue;
      placed.push({ pod, ips: [p.ipv4, p.ipv6].filter((ip): ip is string => !!ip), ifindex: p.hostIfindex });
    }
    return placed;
  }

  /** Brings pods' networks and the datapath maps to what `cluster` and `settings` say. */
  private async reconcile(cluster: ClusterState, settings = this.settings): Promise<LabChange> {
    const ids = new IdAllocator(this.state.ids);
    try {
      await this.reconcilePods(cluster, ids);
      await this.reconcileHosts(cluster);
    } catch (err) {
      // Keep the state true to what exists, so `apply` again or `down` can finish the job.
      this.state.ids = ids.toJSON();
      writeLabState(this.state);
      throw err;
    }
    const after = cluster.objects();
    const change = diffObjects(this.state.objects, after);
    // Compile and program the maps; then persist. The datapath enforces the change when this returns.
    const next: LabState = { ...this.state, objects: after, autoHostEndpoints: settings.autoHostEndpoints, failsafes: settings.failsafes };
    const compiled = compilePolicy(cluster, this.placedPods(cluster), ids, this.compileOptions(next));
    this.datapath.apply(compiled);
    this.state.objects = after;
    this.state.autoHostEndpoints = settings.autoHostEndpoints;
    this.state.failsafes = settings.failsafes;
    this.state.ids = ids.toJSON();
    writeLabState(this.state);
    return change;
  }

  private async reconcilePods(cluster: ClusterState, ids: IdAllocator): Promise<void> {
    // Pods that went away, or whose addresses or ports changed, lose their network first.
    for (const [key, p] of Object.entries(this.state.pods)) {
      const pod = cluster.pods.get(key);
      const wantIps = pod && pod.ips.length > 0 ? [...pod.ips].sort() : undefined;
      const haveIps = [p.ipv4, p.ipv6].filter((x): x is string => !!x).sort();
      const same = pod && JSON.stringify(podPorts(pod)) === JSON.stringify(p.ports)
        && (!wantIps || JSON.stringify(wantIps) === JSON.stringify(haveIps));
      if (same) continue;
      await this.network.removePod(attachmentOf(key, p));
      delete this.state.pods[key];
      if (!pod) ids.releaseEndpoint(key);
    }
    // New pods (and re-created ones) get a network namespace, a veth and the datapath.
    // Addresses taken: those of running pods and those manifests ask for (a pool address must not
    // collide with a pod created later in this same batch).
    const inUse = new Set(Object.values(this.state.pods).flatMap((p) => [p.ipv4, p.ipv6].filter((x): x is string => !!x)));
    for (const pod of cluster.pods.values()) for (const ip of pod.ips) inUse.add(ip);
    for (const pod of cluster.pods.values()) {
      const key = `${pod.namespace}/${pod.name}`;
      if (this.state.pods[key]) continue;
      const addr = assignAddresses(pod.ips, inUse);
      const ports = podPorts(pod);
      const att = await this.network.addPod({
        key, ipv4: addr.ipv4, ipv6: addr.ipv6,
        ports: pod.ports.map((p) => ({ port: p.port, protocol: p.protocol })),
      });
      this.datapath.attachPod({ ifname: att.hostIfname, netns: `/run/netns/${this.network.nodeNetns}` });
      this.state.pods[key] = {
        ...addr, netns: att.netns, hostIfname: att.hostIfname, hostIfindex: att.hostIfindex,
        agentPid: att.agentPid, socketPath: att.socketPath, ports,
      };
      for (const ip of [addr.ipv4, addr.ipv6]) if (ip) inUse.add(ip);
    }
  }

  /** The host and world processes serve the Node object's declared ports (none without a Node). */
  private async reconcileHosts(cluster: ClusterState): Promise<void> {
    const ports = (cluster.node?.ports ?? []).map((p) => ({ port: p.port, protocol: p.protocol }));
    const want = ports.map((p) => `${p.port}/${p.protocol}`);
    const addrs: Record<LabHostRole, { ipv4: string; ipv6: string }> = {
      host: { ipv4: LAB_NODE_V4, ipv6: LAB_NODE_V6 },
      world: { ipv4: LAB_WORLD_V4, ipv6: LAB_WORLD_V6 },
    };
    for (const role of ['host', 'world'] as const) {
      const have: LabHostState | undefined = this.state[role];
      if (have && JSON.stringify(have.ports) === JSON.stringify(want)) continue;
      delete this.state[role];
      const agent = await this.network.startHostAgent(role, ports, have);
      this.state[role] = { ...agent, ...addrs[role], ports: want };
    }
  }

  attachments(): PodAttachment[] {
    return Object.entries(this.state.pods).map(([key, p]) => attachmentOf(key, p));
  }

  get dp(): Datapath { return this.datapath; }

  close(): void {
    this.datapath.close();
  }

  /** Removes every namespace, link, route, qdisc, process and pin of the lab, its flow agent
   * first (so its last rows reach the store). Safe to run twice, and on a half-made lab. */
  static async down(name: string): Promise<{ wasUp: boolean; agentsStopped: number[] }> {
    checkLabName(name);
    requirePrivileges('weir lab down');
    const agentsStopped = await stopLabAgent(name);
    const wasUp = labExists(name);
    const pinned = existsSync(labPinRoot(name)); // a half-gone lab (state lost) still has its pins
    let known: PodAttachment[] = [];
    if (wasUp) {
      try {
        known = Object.entries(readLabState(name).pods).map(([key, p]) => attachmentOf(key, p));
      } catch { /* unreadable state: destroy() still finds everything by name */ }
    }
    const network = new LabNetwork({ lab: name, stateDir: labDir(name) });
    // Deleting the node namespace removes its veths and their clsact qdiscs with them.
    await network.destroy(known);
    Datapath.uninstall(labPinRoot(name));
    removeLabDir(name);
    return { wasUp: wasUp || pinned || agentsStopped.length > 0, agentsStopped };
  }
}

/** What a reconcile changed, object by object, for the CLI to report. */
function diffObjects(before: readonly KubeObject[], after: readonly KubeObject[]): LabChange {
  const id = (o: KubeObject) => `${o.kind}|${objectKey(o)}`;
  const old = new Map(before.map((o) => [id(o), o]));
  const change: LabChange = { created: [], updated: [], deleted: [] };
  for (const o of after) {
    const prev = old.get(id(o));
    if (!prev) change.created.push(describeObject(o));
    else if (JSON.stringify(prev) !== JSON.stringify(o)) change.updated.push(describeObject(o));
    old.delete(id(o));
  }
  for (const o of old.values()) change.deleted.push(describeObject(o));
  return change;
}
