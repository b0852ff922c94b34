// Pod address allocation for the lab: pods without status.podIP(s) get the next free addresses of
// the lab's pod CIDRs. The lab is a routing domain of its own (its node is a network namespace),
// so these addresses never leave this machine.
import { isIPv4 } from 'node:net';

export const LAB_POD_CIDR_V4 = '10.244.0.0/16';
export const LAB_POD_CIDR_V6 = 'fd00:10:244::/64';
const FIRST_HOST = 10;
const LAST_HOST = 65000;

export function labAddress(n: number): { ipv4: string; ipv6: string } {
  return { ipv4: `10.244.${n >> 8}.${n & 255}`, ipv6: `fd00:10:244::${n.toString(16)}` };
}

/** Picks pod addresses: the ones the manifest gives, and the lowest free pool address for a
 * family it does not give (lab pods are always dual-stack, so every probe has both families). */
export function assignAddresses(given: readonly string[], inUse: ReadonlySet<string>): { ipv4: string; ipv6: string } {
  let ipv4 = given.find((ip) => isIPv4(ip));
  let ipv6 = given.find((ip) => !isIPv4(ip));
  for (let n = FIRST_HOST; n <= LAST_HOST && (!ipv4 || !ipv6); n++) {
    const a = labAddress(n);
    if (!ipv4 && !inUse.has(a.ipv4)) ipv4 = a.ipv4;
    if (!ipv6 && !inUse.has(a.ipv6)) ipv6 = a.ipv6;
  }
  if (!ipv4 || !ipv6) throw new Error(`lab: no free pod address left in ${LAB_POD_CIDR_V4} / ${LAB_POD_CIDR_V6}`);
  return { ipv4, ipv6 };
}

// The node's uplink and the world (outside the pod pools, so never a pod's address): a /24 and a
// /64 shared by the node's end of the uplink and the world's end. The world's default route is the
// node; the node reaches the world on the link; pods reach both through their default route.
export const LAB_UPLINK_CIDR_V4 = '10.243.0.0/24';
export const LAB_UPLINK_CIDR_V6 = 'fd00:10:243::/64';
/** The node's own addresses (on its uplink), in the endpoint map with identity HOST. */
export const LAB_NODE_V4 = '10.243.0.1';
export const LAB_NODE_V6 = 'fd00:10:243::1';
/** The world's client addresses (an outside host, in the lab's world netns). */
export const LAB_WORLD_V4 = '10.243.0.100';
export const LAB_WORLD_V6 = 'fd00:10:243::100';
export const LAB_NODE_IPS: readonly string[] = [LAB_NODE_V4, LAB_NODE_V6];
