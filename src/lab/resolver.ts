// Names for the lab's flow records: which pod holds an address, which policy rule an id means,
// the lab node and the host endpoint covering it. Rule ids are never reused in a lab, so records
// made before a policy changed still resolve.
import type { PeerContext, PeerHostEndpoint, Resolver } from '../flows/describe.js';
import { RESERVED_IDENTITY_KIND } from '../flows/describe.js';
import { Hook } from '../datapath/abi.js';
import type { LabState } from './state.js';
import { inAuditMode, type Labels, type Namespace, type NetworkPolicy, type Pod } from '../datastore/objects.js';
import { ALL_INTERFACES, compareGlobalPolicies, type GlobalNetworkPolicy, type HostEndpoint } from '../datastore/host-objects.js';
import { matchesSelector } from '../policy/selector.js';
import { labHostEndpointFor, labHostEndpoints, labNodeName } from './host-protection.js';

interface Index {
  byIp: Map<string, string>;
  pods: Map<string, Pod>;
  namespaceLabels: Map<string, Labels>;
  hostEndpoints: HostEndpoint[];
  /** expectedIPs of host endpoints of other nodes -> the endpoint */
  otherHosts: Map<string, HostEndpoint>;
  node: string;
}

const hepView = (h: HostEndpoint | undefined): PeerHostEndpoint | undefined => (h ? { name: h.name, labels: h.labels } : undefined);

export function labResolver(state: () => LabState): Resolver {
  let cachedFor: LabState | undefined;
  let idx: Index | undefined;
  const index = (): Index => {
    const s = state();
    if (s !== cachedFor || !idx) {
      cachedFor = s;
      const byIp = new Map<string, string>();
      for (const [key, p] of Object.entries(s.pods)) {
        if (p.ipv4) byIp.set(p.ipv4, key);
        if (p.ipv6) byIp.set(p.ipv6, key);
      }
      const pods = new Map<string, Pod>();
      const namespaceLabels = new Map<string, Labels>([['default', { 'kubernetes.io/metadata.name': 'default' }]]);
      for (const o of s.objects) {
        if (o.kind === 'Pod') pods.set(`${o.namespace}/${o.name}`, o);
        if (o.kind === 'Namespace') namespaceLabels.set(o.name, (o as Namespace).labels);
      }
      const node = labNodeName(s);
      const hostEndpoints = labHostEndpoints(s);
      const otherHosts = new Map<string, HostEndpoint>();
      for (const h of hostEndpoints) if (h.node !== node) for (const ip of h.expectedIPs) if (!otherHosts.has(ip)) otherHosts.set(ip, h);
      idx = { byIp, pods, namespaceLabels, hostEndpoints, otherHosts, node };
    }
    return idx;
  };
  const isNodeIp = (s: LabState, ip: string) => !!s.host && (ip === s.host.ipv4 || ip === s.host.ipv6);
  /** The lab node's host endpoint judging at `where`: at the uplink's hooks the one covering the
   * uplink, at the pod hooks the node's "*" endpoint. */
  const nodeHostEndpoint = (s: LabState, where?: PeerContext): HostEndpoint | undefined => {
    const onHostDev = where && (where.hook === Hook.FROM_HOST_DEV || where.hook === Hook.TO_HOST_DEV);
    const ifname = onHostDev && s.uplink && where.ifindex === s.uplink.ifindex ? s.uplink.ifname : ALL_INTERFACES;
    return labHostEndpointFor(s, ifname);
  };
  return {
    peer(ip, identity, where) {
      const i = index();
      const name = i.byIp.get(ip);
      if (name) return { name, kind: 'pod' };
      const s = state();
      // The node's own addresses: named after the node, with the host endpoint covering it.
      if (isNodeIp(s, ip)) {
        const hostEndpoint = hepView(nodeHostEndpoint(s, where));
        return hostEndpoint ? { name: i.node, kind: 'host', hostEndpoint } : { name: i.node, kind: 'host' };
      }
      const kind = RESERVED_IDENTITY_KIND[identity] ?? 'world';
      const other = hepView(i.otherHosts.get(ip));
      return other ? { kind, hostEndpoint: other } : { kind };
    },
    rule(id) {
      return state().ids.ruleInfo[id];
    },
    isolatedBy(name, direction) {
      const objects = state().objects;
      const pod = objects.find((o): o is Pod => o.kind === 'Pod' && `${o.namespace}/${o.name}` === name);
      if (!pod) return [];
      return objects
        .filter((o): o is NetworkPolicy => o.kind === 'NetworkPolicy' && o.namespace === pod.namespace
          && o.policyTypes.includes(direction) && matchesSelector(o.podSelector, pod.labels))
        .map((p) => `${p.namespace}/${p.name}`)
        .sort();
    },
    globalSelectedBy(ip, _identity, direction, where) {
      const s = state();
      const i = index();
      const policies = s.objects
        .filter((o): o is GlobalNetworkPolicy => o.kind === 'GlobalNetworkPolicy' && !inAuditMode(o) && o.types.includes(direction))
        .sort(compareGlobalPolicies);
      const onHostDev = where && (where.hook === Hook.FROM_HOST_DEV || where.hook === Hook.TO_HOST_DEV);
      if (onHostDev || isNodeIp(s, ip)) {
        // The subject is a host endpoint of this node; at the uplink, traffic not of the node's
        // own addresses is forwarded (only applyOnForward policies).
        const hep = nodeHostEndpoint(s, where);
        if (!hep) return [];
        const forwarded = !isNodeIp(s, ip);
        return policies.filter((p) => (!forwarded || p.applyOnForward) && !p.namespaceSelector && matchesSelector(p.selector, hep.labels)).map((p) => p.name);
      }
      const key = i.byIp.get(ip);
      const pod = key ? i.pods.get(key) : undefined;
      if (!pod) return [];
      const nsLabels = i.namespaceLabels.get(pod.namespace) ?? {};
      return policies
        .filter((p) => matchesSelector(p.selector, pod.labels) && (!p.namespaceSelector || matchesSelector(p.namespaceSelector, nsLabels)))
        .map((p) => p.name);
    },
  };
}
