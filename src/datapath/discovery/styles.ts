// How each common veth CNI lays out a node, as the facts discovery may rely on: which interface
// names are pods' host-side veths, and which evidence ties a pod address to one.
//
//   calico   cali<11 hex of sha1(ns.pod)>, one /32 (and /128) route per pod address
//            "10.x.y.z dev caliXXXX scope link"; proxy ARP answers the pod's 169.254.1.1 gateway.
//   cilium   lxc<hash>; with endpoint routes, "10.x.y.z dev lxcXXXX"; without them only the pod
//            netns knows the address (the peer method). lxc_health is a veth too but no pod's.
//   flannel  veth<8 hex> enslaved to the cni0 bridge (the bridge plugin); no per-pod route (the
//            node has 10.244.N.0/24 dev cni0), so a pod address is found through the bridge's
//            neighbour entry (ip -> MAC) and FDB (MAC -> port), or the peer netns.
//   kindnet  the ptp plugin: veth<8 hex> with the gateway address on the host side and a route
//            "10.x.y.z dev vethXXXX scope host" per pod address.
//   auto     all of the above at once (every prefix, every method).
//
// A custom style names its own prefixes (and bridges): the lab's veths are `w<10 hex>`.

export type Evidence = 'route' | 'neighbour' | 'peer';

export interface CniStyle {
  readonly name: string;
  /** an interface is a pod's host side only if its name starts with one of these */
  readonly prefixes: readonly string[];
  /** names never a pod's even with the prefix (Cilium's lxc_health) */
  readonly exclude: readonly string[];
  /** the bridges whose ports are pods (bridge CNIs); undefined = any bridge (auto) */
  readonly bridges: readonly string[] | undefined;
  /** which evidence ties an address to an interface, in order of trust */
  readonly evidence: readonly Evidence[];
}

export type CniStyleName = 'calico' | 'cilium' | 'flannel' | 'bridge' | 'kindnet' | 'auto';

const ROUTED: readonly Evidence[] = ['route', 'peer'];

export const CNI_STYLES: Readonly<Record<CniStyleName, CniStyle>> = {
  calico: { name: 'calico', prefixes: ['cali'], exclude: [], bridges: [], evidence: ROUTED },
  cilium: { name: 'cilium', prefixes: ['lxc'], exclude: ['lxc_health'], bridges: [], evidence: ROUTED },
  flannel: { name: 'flannel', prefixes: ['veth'], exclude: [], bridges: ['cni0'], evidence: ['neighbour', 'peer'] },
  bridge: { name: 'bridge', prefixes: ['veth'], exclude: [], bridges: ['cni0'], evidence: ['neighbour', 'peer'] },
  kindnet: { name: 'kindnet', prefixes: ['veth'], exclude: [], bridges: [], evidence: ROUTED },
  auto: { name: 'auto', prefixes: ['cali', 'lxc', 'veth'], exclude: ['lxc_health'], bridges: undefined, evidence: ['route', 'neighbour', 'peer'] },
};

/** Linux interface names: 1-15 bytes, no '/', ':' or whitespace. */
const IFNAME = /^[^\s/:]{1,15}$/;
const EVIDENCE: readonly Evidence[] = ['route', 'neighbour', 'peer'];

export type CniStyleInput = CniStyleName | {
  readonly name?: string;
  readonly prefixes: readonly string[];
  readonly exclude?: readonly string[];
  readonly bridges?: readonly string[];
  readonly evidence?: readonly Evidence[];
};

/** A preset by name, or a custom style checked field by field. */
export function resolveStyle(input: CniStyleInput, field = 'style'): CniStyle {
  if (typeof input === 'string') {
    const preset = (CNI_STYLES as Record<string, CniStyle>)[input];
    if (!preset) throw new TypeError(`${field}: ${JSON.stringify(input)} is not a CNI style (one of ${Object.keys(CNI_STYLES).join(', ')}, or {prefixes: [...]})`);
    return preset;
  }
  if (typeof input !== 'object' || input === null) throw new TypeError(`${field}: expected a style name or {prefixes: [...]}, got ${JSON.stringify(input)}`);
  const names = (v: unknown, f: string, nonEmpty: boolean): string[] => {
    if (!Array.isArray(v) || (nonEmpty && v.length === 0)) throw new TypeError(`${field}.${f}: expected ${nonEmpty ? 'a non-empty' : 'an'} array of interface names, got ${JSON.stringify(v)}`);
    v.forEach((n, i) => {
      if (typeof n !== 'string' || !IFNAME.test(n)) throw new TypeError(`${field}.${f}[${i}]: ${JSON.stringify(n)} is not an interface name (prefix)`);
    });
    return v as string[];
  };
  const prefixes = names(input.prefixes, 'prefixes', true);
  const exclude = input.exclude === undefined ? [] : names(input.exclude, 'exclude', false);
  const bridges = input.bridges === undefined ? [] : names(input.bridges, 'bridges', false);
  const evidence = input.evidence ?? (bridges.length > 0 ? ['route', 'neighbour', 'peer'] : ['route', 'peer']);
  if (!Array.isArray(evidence) || evidence.length === 0) throw new TypeError(`${field}.evidence: expected a non-empty array of ${EVIDENCE.join('/')}, got ${JSON.stringify(evidence)}`);
  evidence.forEach((e, i) => {
    if (!EVIDENCE.includes(e)) throw new TypeError(`${field}.evidence[${i}]: ${JSON.stringify(e)} is not one of ${EVIDENCE.join(', ')}`);
  });
  return { name: input.name ?? 'custom', prefixes, exclude, bridges, evidence };
}

/** Whether `ifname` may be a pod's host-side interface under `style` (by name alone). */
export function nameMatches(style: CniStyle, ifname: string): boolean {
  return !style.exclude.includes(ifname) && style.prefixes.some((p) => ifname.startsWith(p) && ifname.length > p.length);
}
