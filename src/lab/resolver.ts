// Names for the lab's flow records: which pod holds an address, which policy rule an id means.
// Rule ids are never reused in a lab, so records made before a policy changed still resolve.
import type { Resolver } from '../flows/describe.js';
import { RESERVED_IDENTITY_KIND } from '../flows/describe.js';
import type { LabState } from './state.js';
import type { NetworkPolicy, Pod } from '../datastore/objects.js';
import { matchesSelector } from '../policy/selector.js';

export function labResolver(state: () => LabState): Resolver {
  let cachedFor: LabState | undefined;
  let byIp = new Map<string, string>();
  const index = (): Map<string, string> => {
    const s = state();
    if (s !== cachedFor) {
      cachedFor = s;
      byIp = new Map();
      for (const [key, p] of Object.entries(s.pods)) {
        if (p.ipv4) byIp.set(p.ipv4, key);
        if (p.ipv6) byIp.set(p.ipv6, key);
      }
    }
    return byIp;
  };
  return {
    peer(ip, identity) {
      const name = index().get(ip);
      if (name) return { name, kind: 'pod' };
      const s = state();
      // The node's own addresses: named after the Node object, when there is one.
      if (s.host && (ip === s.host.ipv4 || ip === s.host.ipv6)) {
        const node = s.objects.find((o) => o.kind === 'Node');
        return node ? { name: node.name, kind: 'host' } : { kind: 'host' };
      }
      return { kind: RESERVED_IDENTITY_KIND[identity] ?? 'world' };
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
  };
}
