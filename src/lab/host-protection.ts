// The lab node's host protection inputs, from its state: the node's name, the host endpoints in
// force (the applied ones plus the automatic one), the failsafe ports and the warnings a user
// should hear. Pure functions of the state, shared by the lab (compiling), the flow resolver
// (naming) and the CLI (warnings).
import type { HostEndpoint } from '../datastore/host-objects.js';
import { ALL_INTERFACES } from '../datastore/host-objects.js';
import type { KubeObject, Node } from '../datastore/objects.js';
import { autoHostEndpoints, withAutoHostEndpoints } from '../datastore/auto-host-endpoints.js';
import { failsafesFrom, type FailsafeSettings, type Failsafes } from '../policy/failsafe.js';
import { hostWarnings } from '../policy/check.js';
import { LAB_NODE_IPS } from './addresses.js';
import type { LabState } from './state.js';

type HostStateView = Pick<LabState, 'objects' | 'nodeNetns' | 'host' | 'autoHostEndpoints' | 'failsafes'>;

/** The lab node's name: its Node object's, else the node netns name (`weir-<lab>-node`). This is
 * what a HostEndpoint's spec.node must say to cover the lab node. */
export function labNodeName(s: Pick<LabState, 'objects' | 'nodeNetns'>): string {
  return s.objects.find((o): o is Node => o.kind === 'Node')?.name ?? s.nodeNetns;
}

/** The node's own addresses (none in a state written before the lab had an uplink). */
export function labNodeIps(s: Pick<LabState, 'host'>): readonly string[] {
  return s.host ? LAB_NODE_IPS : [];
}

/** Every host endpoint in force: the applied ones, plus the lab node's automatic one (with
 * autoHostEndpoints) unless an applied HostEndpoint covers the node's "*" already. */
export function labHostEndpoints(s: HostStateView): HostEndpoint[] {
  const user = s.objects.filter((o): o is HostEndpoint => o.kind === 'HostEndpoint');
  if (!s.autoHostEndpoints) return [...user].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const node = s.objects.find((o): o is Node => o.kind === 'Node');
  const auto = autoHostEndpoints([{ name: labNodeName(s), labels: node?.labels ?? {}, ips: labNodeIps(s) }]);
  return withAutoHostEndpoints(user, auto);
}

/** The host endpoint of the lab node covering `interfaceName` (a named one wins over "*"), or
 * with interfaceName "*" the node's "*" endpoint (the one pod <-> host traffic is judged by). */
export function labHostEndpointFor(s: HostStateView, interfaceName: string): HostEndpoint | undefined {
  const node = labNodeName(s);
  const mine = labHostEndpoints(s).filter((h) => h.node === node);
  return mine.find((h) => h.interfaceName === interfaceName) ?? mine.find((h) => h.interfaceName === ALL_INTERFACES);
}

export function labFailsafes(s: Pick<LabState, 'failsafes'>): Failsafes {
  return failsafesFrom(s.failsafes ?? {});
}

/** Failsafes disabled, and Deny rules of applied global policies that failsafes override (the
 * warnings of `weir policy check`). */
export function labHostWarnings(s: Pick<LabState, 'objects' | 'failsafes'>): string[] {
  const policies = s.objects.filter((o): o is Extract<KubeObject, { kind: 'GlobalNetworkPolicy' }> => o.kind === 'GlobalNetworkPolicy');
  return hostWarnings(policies, labFailsafes(s), s.failsafes?.disabled === true);
}

/** Host endpoints applied for another node than the lab's: they cover no interface here (a
 * likely typo in spec.node), though their expectedIPs still make those addresses selectable. */
export function labHostNotes(s: HostStateView): string[] {
  const node = labNodeName(s);
  return s.objects
    .filter((o): o is HostEndpoint => o.kind === 'HostEndpoint' && o.node !== node)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((h) => `HostEndpoint ${h.name}: spec.node: "${h.node}" is not the lab's node "${node}": it covers no interface of this lab (its expectedIPs still identify peers)`);
}

/** `settings` applied over `current` field by field; undefined fields keep what was there. */
export function mergeFailsafeSettings(current: FailsafeSettings | undefined, change: FailsafeSettings | undefined): FailsafeSettings {
  const out: { inbound?: string; outbound?: string; disabled?: boolean } = { ...(current ?? {}) };
  if (change?.inbound !== undefined) out.inbound = change.inbound;
  if (change?.outbound !== undefined) out.outbound = change.outbound;
  if (change?.disabled !== undefined) out.disabled = change.disabled;
  if (!out.disabled) delete out.disabled;
  return out;
}
