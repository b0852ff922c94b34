// TypeScript side of bpf/include/weir_abi.h: constants, and codecs for every map key, map value
// and ring-buffer record. The C header is the source of truth; each struct's field table below
// (name, offset, size) is compared with the BTF clang emits into bpf/build/weir.o by
// test/datapath/abi-btf.test.ts, so the two cannot drift apart unnoticed.
//
// Byte order: BPF maps and records are in the host's byte order. Weir supports little-endian
// hosts (x86_64, arm64); ports are host-order integers in every struct, addresses raw bytes.
import net from 'node:net';

// ---- constants ---------------------------------------------------------------------------------

export const WEIR_EVENT_VERSION = 2;

/** Reserved identities; label-set identities start at ID_FIRST_DYNAMIC. */
export const Identity = {
  ANY: 0,
  HOST: 1,
  WORLD: 2,
  FIRST_DYNAMIC: 256,
} as const;

export const EventType = {
  FLOW_START: 1,
  DENY: 2,
  FLOW_END: 3,
  LOST: 4,
  /** a Log rule of a global policy matched a new flow (a weir_flow_event) */
  LOG: 5,
} as const;
export type EventTypeName = keyof typeof EventType;

export const Verdict = {
  NONE: 0,
  ALLOW: 1,
  DENY: 2,
  AUDIT: 3,
} as const;
export type VerdictName = keyof typeof Verdict;

export const Direction = {
  INGRESS: 0,
  EGRESS: 1,
  BOTH: 2,
} as const;
export type DirectionName = keyof typeof Direction;

export const Hook = {
  NONE: 0,
  FROM_POD: 1,
  TO_POD: 2,
  FROM_HOST_DEV: 3,
  TO_HOST_DEV: 4,
  GC: 5,
} as const;
export type HookName = keyof typeof Hook;

/** enum weir_reason: why a packet got its verdict (index of weir_stats_v2). */
export const Reason = {
  UNKNOWN: 0,
  ALLOW_POLICY: 1,
  ALLOW_NOT_ISOLATED: 2,
  ALLOW_ESTABLISHED: 3,
  ALLOW_UNPOLICED: 4,
  PASS_NON_IP: 5,
  PASS_NDP: 6,
  DENY_DEFAULT: 7,
  DENY_POLICY: 8,
  DROP_MALFORMED: 9,
  DROP_SPOOFED: 10,
  DROP_UNAPPROVED_REPLY: 11,
  AUDIT: 12,
  DROP_CT_FULL: 13,
  ALLOW_HOST: 14,
  ALLOW_FAILSAFE: 15,
  ALLOW_GLOBAL: 16,
  DENY_END_OF_TIER: 17,
  DENY_HOST_DEFAULT: 18,
  ALLOW_FORWARDED: 19,
} as const;
export type ReasonName = keyof typeof Reason;
/** WEIR_R_MAX: entries of weir_stats_v2. */
export const REASON_MAX = 24;

/** enum weir_counter: index of weir_counters_v1. */
export const Counter = {
  EVENTS_LOST: 0,
  EVENTS_SENT: 1,
  DENY_SUPPRESSED: 2,
  CT_CREATED: 3,
  CT_EXPIRED: 4,
  CT_CREATE_FAILED: 5,
  /** TCP without SYN that found no conntrack entry: evicted (LRU full) or expired; re-judged */
  CT_MISS_MIDSTREAM: 6,
} as const;
export type CounterName = keyof typeof Counter;
/** WEIR_C_MAX: entries of weir_counters_v1. */
export const COUNTER_MAX = 8;

export const Proto = {
  ANY: 0,
  ICMP: 1,
  TCP: 6,
  UDP: 17,
  ICMPV6: 58,
  SCTP: 132,
} as const;

/** weir_endpoint.flags (WEIR_EP_*). */
export const EndpointFlag = {
  LOCAL: 1 << 0,
  ISOLATED_INGRESS: 1 << 1,
  ISOLATED_EGRESS: 1 << 2,
  AUDIT_INGRESS: 1 << 3,
  PEER_RULES_INGRESS: 1 << 4,
  ANY_RULES_INGRESS: 1 << 5,
  PEER_RULES_EGRESS: 1 << 6,
  ANY_RULES_EGRESS: 1 << 7,
  CIDR_RULES_INGRESS: 1 << 8,
  CIDR_RULES_EGRESS: 1 << 9,
  RANGE_RULES_INGRESS: 1 << 10,
  RANGE_RULES_EGRESS: 1 << 11,
  AUDIT_EGRESS: 1 << 12,
  /** a weir_gtier list exists for the identity (audit-mode policies left out) */
  GLOBAL_INGRESS: 1 << 13,
  GLOBAL_EGRESS: 1 << 14,
  /** a WITH_AUDIT weir_gtier list exists (some audit-mode global policy selects it) */
  GAUDIT_INGRESS: 1 << 15,
  GAUDIT_EGRESS: 1 << 16,
  /** the pod or its namespace (on a weir_host_iface: the host endpoint) is in audit mode */
  AUDIT_ALL: 1 << 17,
} as const;

/** The policy state is kept in two slots; generation parity selects the one in force. */
export const SLOTS = 2;
/** CIDR class ids (peers in policy keys standing for "every address of the class"). */
export const FIRST_CIDR_CLASS = 1 << 24;
/** weir_prange_key: prefix length of identity, peer, direction and proto (the port block follows). */
export const PRANGE_PREFIX_PROTO = 80;

/** weir_ct_entry.flags (WEIR_CT_*). */
export const CtFlag = {
  NEED_EGRESS: 1 << 0,
  NEED_INGRESS: 1 << 1,
  EGRESS_OK: 1 << 2,
  INGRESS_OK: 1 << 3,
  FIN_FWD: 1 << 4,
  FIN_REV: 1 << 5,
  RST: 1 << 6,
  ENDED: 1 << 7,
  SEEN_REPLY: 1 << 8,
  AUDITED: 1 << 9,
  SRC_VETH: 1 << 10,
  HOSTDEV_IN_SEEN: 1 << 11,
  HOSTDEV_OUT_SEEN: 1 << 12,
  HOSTDEV_IN_DENIED: 1 << 13,
  HOSTDEV_OUT_DENIED: 1 << 14,
} as const;

/** weir_gtier_key.variant bits (WEIR_GT_*): 0 = the enforced list of the host's own or a pod's
 * traffic; FORWARDED = applyOnForward policies only; WITH_AUDIT = audit-mode policies included. */
export const GlobalTierVariant = {
  FORWARDED: 1,
  WITH_AUDIT: 2,
} as const;

/** enum weir_gaction: a weir_grule's action. */
export const GlobalAction = {
  ALLOW: 1,
  DENY: 2,
  PASS: 3,
  LOG: 4,
} as const;
export type GlobalActionName = keyof typeof GlobalAction;

/** weir_gset set ids: the failsafe ports (member 0, port proto << 16 | port), then compiled sets. */
export const GlobalSet = {
  FAILSAFE_IN: 1,
  FAILSAFE_OUT: 2,
  FIRST_DYNAMIC: 16,
} as const;
/** weir_gport_key: prefix length of the set id (the big-endian port block follows). */
export const GPORT_PREFIX_SET = 32;

/** Map and program names in bpf/build/weir.o (map names carry the layout version). */
export const MapName = {
  /** slot 0 of the endpoints (slot 1: endpoints1); see SLOTS */
  endpoints: 'weir_endpoints_v3_0',
  endpoints1: 'weir_endpoints_v3_1',
  /** slot 0 of the policy keys (slot 1: policy1): exact ports, whole protocols, rules without ports */
  policy: 'weir_policy_v3_0',
  policy1: 'weir_policy_v3_1',
  /** slot 0 of the port-range blocks (slot 1: prange1) */
  prange: 'weir_prange_v1_0',
  prange1: 'weir_prange_v1_1',
  ipcache: 'weir_ipcache_v1_0',
  ipcache1: 'weir_ipcache_v1_1',
  /** host protection (slot 0, slot 1): host interfaces, global tier lists, their rules, sets
   * and port sets */
  hostif: 'weir_hostif_v1_0',
  hostif1: 'weir_hostif_v1_1',
  gtier: 'weir_gtier_v1_0',
  gtier1: 'weir_gtier_v1_1',
  /** an ARRAY: every index exists; the datapath reads only [first, first + count) of a list */
  grules: 'weir_grules_v1_0',
  grules1: 'weir_grules_v1_1',
  gset: 'weir_gset_v1_0',
  gset1: 'weir_gset_v1_1',
  gport: 'weir_gport_v1_0',
  gport1: 'weir_gport_v1_1',
  /** array-of-maps whose update is user space's RCU grace-period barrier (never read by programs) */
  sync: 'weir_sync_v1',
  ct: 'weir_ct_v3',
  denyRateLimit: 'weir_deny_rl_v2',
  config: 'weir_config_v1',
  stats: 'weir_stats_v2',
  counters: 'weir_counters_v1',
  lostPending: 'weir_lost_pend_v1',
  events: 'weir_events_v2',
} as const;

export const ProgramName = {
  fromPod: 'weir_from_pod',
  toPod: 'weir_to_pod',
  fromHostDev: 'weir_from_host_dev',
  toHostDev: 'weir_to_host_dev',
  ctGc: 'weir_ct_gc',
  /** never attached: `weir policy explain` test-runs it (bpf/lib/explain.h) */
  policyExplain: 'weir_policy_explain',
} as const;

/** The name of a numeric enum value, or `UNKNOWN(<n>)` for values this build does not know. */
export function nameOf<T extends Record<string, number>>(table: T, value: number): string {
  for (const [name, v] of Object.entries(table)) if (v === value) return name;
  return `UNKNOWN(${value})`;
}

export const reasonName = (r: number): string => nameOf(Reason, r);
export const verdictName = (v: number): string => nameOf(Verdict, v);
export const hookName = (h: number): string => nameOf(Hook, h);
export const directionName = (d: number): string => nameOf(Direction, d);
export const eventTypeName = (t: number): string => nameOf(EventType, t);
export const counterName = (c: number): string => nameOf(Counter, c);

// ---- layouts -----------------------------------------------------------------------------------

export interface FieldSpec {
  readonly name: string;
  readonly offset: number;
  readonly size: number;
}

export interface StructLayout {
  /** The C struct name (without `struct`). */
  readonly name: string;
  readonly size: number;
  readonly fields: readonly FieldSpec[];
}

function layout(name: string, size: number, fields: Array<[string, number, number]>): StructLayout {
  return {
    name,
    size,
    fields: fields.map(([n, offset, sz]) => ({ name: n, offset, size: sz })),
  };
}

export const Layouts = {
  ipKey: layout('weir_ip_key', 16, [['addr', 0, 16]]),
  endpoint: layout('weir_endpoint', 24, [
    ['id', 0, 4],
    ['identity', 4, 4],
    ['ifindex', 8, 4],
    ['flags', 12, 4],
    ['sel_identity', 16, 4],
    ['pad', 20, 4],
  ]),
  policyKey: layout('weir_policy_key', 12, [
    ['identity', 0, 4],
    ['peer', 4, 4],
    ['port', 8, 2],
    ['proto', 10, 1],
    ['direction', 11, 1],
  ]),
  prangeKey: layout('weir_prange_key', 16, [
    ['prefixlen', 0, 4],
    ['identity', 4, 4],
    ['peer', 8, 4],
    ['direction', 12, 1],
    ['proto', 13, 1],
    ['port', 14, 2],
  ]),
  policyValue: layout('weir_policy_value', 8, [
    ['rule_id', 0, 4],
    ['rank', 4, 4],
  ]),
  ipcacheKey: layout('weir_ipcache_key', 20, [
    ['prefixlen', 0, 4],
    ['addr', 4, 16],
  ]),
  ipcacheValue: layout('weir_ipcache_value', 8, [
    ['class_id', 0, 4],
    ['pad', 4, 4],
  ]),
  ctKey: layout('weir_ct_key', 40, [
    ['saddr', 0, 16],
    ['daddr', 16, 16],
    ['sport', 32, 2],
    ['dport', 34, 2],
    ['proto', 36, 1],
    ['pad', 37, 3],
  ]),
  ctEntry: layout('weir_ct_entry', 88, [
    ['created_ns', 0, 8],
    ['last_seen_ns', 8, 8],
    ['packets_fwd', 16, 8],
    ['bytes_fwd', 24, 8],
    ['packets_rev', 32, 8],
    ['bytes_rev', 40, 8],
    ['src_ep', 48, 4],
    ['dst_ep', 52, 4],
    ['src_identity', 56, 4],
    ['dst_identity', 60, 4],
    ['egress_rule_id', 64, 4],
    ['ingress_rule_id', 68, 4],
    ['ifindex', 72, 4],
    ['rev_ifindex', 76, 4],
    ['flags', 80, 2],
    ['tcp_flags_fwd', 82, 1],
    ['tcp_flags_rev', 83, 1],
    ['forward_rule_id', 84, 4],
  ]),
  hostIface: layout('weir_host_iface', 16, [
    ['id', 0, 4],
    ['identity', 4, 4],
    ['flags', 8, 4],
    ['pad', 12, 4],
  ]),
  gtierKey: layout('weir_gtier_key', 8, [
    ['identity', 0, 4],
    ['direction', 4, 1],
    ['variant', 5, 1],
    ['pad', 6, 2],
  ]),
  gtierValue: layout('weir_gtier_value', 8, [
    ['first', 0, 4],
    ['count', 4, 4],
  ]),
  grule: layout('weir_grule', 48, [
    ['rule_id', 0, 4],
    ['action', 4, 1],
    ['proto', 5, 1],
    ['pad', 6, 2],
    ['src_sel', 8, 4],
    ['dst_sel', 12, 4],
    ['src_nets', 16, 4],
    ['dst_nets', 20, 4],
    ['src_not_nets', 24, 4],
    ['dst_not_nets', 28, 4],
    ['src_ports', 32, 4],
    ['dst_ports', 36, 4],
    ['src_not_ports', 40, 4],
    ['dst_not_ports', 44, 4],
  ]),
  gsetKey: layout('weir_gset_key', 12, [
    ['set', 0, 4],
    ['member', 4, 4],
    ['port', 8, 4],
  ]),
  gportKey: layout('weir_gport_key', 12, [
    ['prefixlen', 0, 4],
    ['set', 4, 4],
    ['port', 8, 2],
    ['pad', 10, 2],
  ]),
  denyRl: layout('weir_deny_rl', 24, [
    ['last_event_ns', 0, 8],
    ['suppressed', 8, 4],
    ['generation', 12, 4],
    ['ifindex', 16, 4],
    ['reason', 20, 2],
    ['hook', 22, 1],
    ['pad', 23, 1],
  ]),
  config: layout('weir_config', 8, [
    ['generation', 0, 4],
    ['pad', 4, 4],
  ]),
  explainResult: layout('weir_explain_result', 20, [
    ['egress', 0, 4],
    ['egress_rule_id', 4, 4],
    ['ingress', 8, 4],
    ['ingress_rule_id', 12, 4],
    ['generation', 16, 4],
  ]),
  stat: layout('weir_stat', 16, [
    ['packets', 0, 8],
    ['bytes', 8, 8],
  ]),
  eventHdr: layout('weir_event_hdr', 8, [
    ['version', 0, 1],
    ['type', 1, 1],
    ['len', 2, 2],
    ['cpu', 4, 4],
  ]),
  flowEvent: layout('weir_flow_event', 136, [
    ['hdr', 0, 8],
    ['ts_ns', 8, 8],
    ['start_ns', 16, 8],
    ['saddr', 24, 16],
    ['daddr', 40, 16],
    ['sport', 56, 2],
    ['dport', 58, 2],
    ['proto', 60, 1],
    ['family', 61, 1],
    ['direction', 62, 1],
    ['verdict', 63, 1],
    ['reason', 64, 2],
    ['hook', 66, 1],
    ['tcp_flags', 67, 1],
    ['ifindex', 68, 4],
    ['src_ep', 72, 4],
    ['dst_ep', 76, 4],
    ['src_identity', 80, 4],
    ['dst_identity', 84, 4],
    ['egress_rule_id', 88, 4],
    ['ingress_rule_id', 92, 4],
    ['count', 96, 4],
    ['forward_rule_id', 100, 4],
    ['packets_fwd', 104, 8],
    ['bytes_fwd', 112, 8],
    ['packets_rev', 120, 8],
    ['bytes_rev', 128, 8],
  ]),
  lostEvent: layout('weir_lost_event', 24, [
    ['hdr', 0, 8],
    ['ts_ns', 8, 8],
    ['lost', 16, 8],
  ]),
} as const satisfies Record<string, StructLayout>;

/** The C enums with their values, for the BTF comparison. */
export const Enums = {
  weir_event_type: { prefix: 'WEIR_EV_', values: EventType as Record<string, number> },
  weir_verdict: { prefix: 'WEIR_VERDICT_', values: Verdict as Record<string, number> },
  weir_direction: { prefix: 'WEIR_DIR_', values: Direction as Record<string, number> },
  weir_hook: { prefix: 'WEIR_HOOK_', values: Hook as Record<string, number> },
  weir_reason: { prefix: 'WEIR_R_', values: { ...Reason, MAX: REASON_MAX } as Record<string, number> },
  weir_gaction: { prefix: 'WEIR_GACT_', values: GlobalAction as Record<string, number> },
  weir_counter: { prefix: 'WEIR_C_', values: { ...Counter, MAX: COUNTER_MAX } as Record<string, number> },
} as const;

function off(l: StructLayout, field: string): number {
  const f = l.fields.find((x) => x.name === field);
  if (!f) throw new Error(`abi: struct ${l.name} has no field ${field}`);
  return f.offset;
}

/** Accessors bound to one layout: offsets come from the field table, never from literals. */
class View {
  constructor(
    private readonly l: StructLayout,
    readonly buf: Buffer,
    private readonly base = 0,
  ) {}
  u8(f: string): number {
    return this.buf.readUInt8(this.base + off(this.l, f));
  }
  u16(f: string): number {
    return this.buf.readUInt16LE(this.base + off(this.l, f));
  }
  u32(f: string): number {
    return this.buf.readUInt32LE(this.base + off(this.l, f));
  }
  u64(f: string): bigint {
    return this.buf.readBigUInt64LE(this.base + off(this.l, f));
  }
  bytes(f: string, n: number): Buffer {
    const o = this.base + off(this.l, f);
    return Buffer.from(this.buf.subarray(o, o + n));
  }
  setU8(f: string, v: number): this {
    this.buf.writeUInt8(v, this.base + off(this.l, f));
    return this;
  }
  setU16(f: string, v: number): this {
    this.buf.writeUInt16LE(v, this.base + off(this.l, f));
    return this;
  }
  setU32(f: string, v: number): this {
    this.buf.writeUInt32LE(v >>> 0, this.base + off(this.l, f));
    return this;
  }
  setU64(f: string, v: bigint): this {
    this.buf.writeBigUInt64LE(BigInt.asUintN(64, v), this.base + off(this.l, f));
    return this;
  }
  setBytes(f: string, b: Buffer): this {
    b.copy(this.buf, this.base + off(this.l, f));
    return this;
  }
}

function checkSize(l: StructLayout, buf: Buffer, what: string): void {
  if (buf.length < l.size) {
    throw new RangeError(`abi: ${what}: ${buf.length} bytes, struct ${l.name} needs ${l.size}`);
  }
}

// ---- addresses ---------------------------------------------------------------------------------

const V4_MAPPED_PREFIX = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

function parseIpv6(ip: string): Buffer {
  const out = Buffer.alloc(16);
  let s = ip;
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  // trailing dotted IPv4 (::ffff:1.2.3.4) becomes two hextets
  const lastColon = s.lastIndexOf(':');
  const tail = s.slice(lastColon + 1);
  if (tail.includes('.')) {
    const v4 = tail.split('.').map(Number);
    s = `${s.slice(0, lastColon + 1)}${((v4[0]! << 8) | v4[1]!).toString(16)}:${((v4[2]! << 8) | v4[3]!).toString(16)}`;
  }
  const halves = s.split('::');
  const head = halves[0] ? halves[0].split(':') : [];
  const rest = halves.length > 1 && halves[1] ? halves[1].split(':') : [];
  const groups = [...head, ...Array(8 - head.length - rest.length).fill('0'), ...rest];
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** An IP address as the 16-byte key form: IPv6 as is, IPv4 as ::ffff:a.b.c.d. */
export function ipToKey16(ip: string): Buffer {
  if (net.isIPv4(ip)) {
    const b = Buffer.alloc(16);
    V4_MAPPED_PREFIX.copy(b, 0);
    ip.split('.').forEach((o, i) => b.writeUInt8(Number(o), 12 + i));
    return b;
  }
  if (net.isIPv6(ip)) return parseIpv6(ip);
  throw new TypeError(`abi: "${ip}" is not an IPv4 or IPv6 address`);
}

/** The inverse of ipToKey16: IPv4-mapped addresses as dotted IPv4, others as compressed IPv6. */
export function key16ToIp(b: Buffer): string {
  if (b.length !== 16) throw new RangeError(`abi: an address key is 16 bytes, got ${b.length}`);
  if (b.subarray(0, 12).equals(V4_MAPPED_PREFIX)) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(b.readUInt16BE(i * 2));
  // RFC 5952: compress the longest run (>= 2) of zero groups, the first one on ties
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** An address as records carry it: dotted IPv4 (IPv4-mapped too), RFC 5952 IPv6. */
export function canonicalIp(ip: string): string {
  return key16ToIp(ipToKey16(ip));
}

// ---- map keys and values -------------------------------------------------------------------------

export function encodeIpKey(ip: string): Buffer {
  return ipToKey16(ip);
}

export interface Endpoint {
  id: number;
  identity: number;
  /** host-side veth of a local pod; 0 = do not check the sending interface */
  ifindex: number;
  /** EndpointFlag bits */
  flags: number;
  /** what global-policy selectors see at the address (a pod's identity, or the identity of the
   * host endpoints listing it; 0 = none); absent: `identity` */
  selIdentity?: number;
}

export function encodeEndpoint(ep: Endpoint): Buffer {
  const v = new View(Layouts.endpoint, Buffer.alloc(Layouts.endpoint.size));
  return v.setU32('id', ep.id).setU32('identity', ep.identity).setU32('ifindex', ep.ifindex).setU32('flags', ep.flags)
    .setU32('sel_identity', ep.selIdentity ?? ep.identity).buf;
}

export function decodeEndpoint(buf: Buffer): Endpoint {
  checkSize(Layouts.endpoint, buf, 'endpoint');
  const v = new View(Layouts.endpoint, buf);
  return { id: v.u32('id'), identity: v.u32('identity'), ifindex: v.u32('ifindex'), flags: v.u32('flags'), selIdentity: v.u32('sel_identity') };
}

/** The kinds of double-buffered policy state; weir_grules is an array, the others hashes or LPM tries. */
export type SlotKind = 'endpoints' | 'policy' | 'prange' | 'ipcache' | 'hostif' | 'gtier' | 'grules' | 'gset' | 'gport';

/** The slot's map of a kind: slotMapName('policy', 1) = 'weir_policy_v3_1'. */
export function slotMapName(kind: SlotKind, slot: number): string {
  return slot & 1 ? MapName[`${kind}1`] : MapName[kind];
}

export interface PolicyKey {
  identity: number;
  /** a label-set identity, a CIDR class or Identity.ANY */
  peer: number;
  /** Direction.INGRESS or Direction.EGRESS */
  direction: number;
  /** Proto value; 0 = a rule without ports (every protocol) */
  proto: number;
  /** the port, or the first port of the block (0 with portBits 0) */
  port: number;
  /** how many leading bits of the port are fixed: 16 one port, 16-k a block of 2^k, 0 every port */
  portBits: number;
}

/** A block of several ports (not one, not all) lives in the range map, everything else in the hash. */
export const isRangeKey = (k: Pick<PolicyKey, 'proto' | 'portBits'>): boolean => k.proto !== 0 && k.portBits > 0 && k.portBits < 16;

/** weir_policy_key (hash): an exact port, a whole protocol (port 0) or every protocol (proto 0). */
export function encodePolicyKey(k: PolicyKey): Buffer {
  if (isRangeKey(k)) throw new RangeError('abi: a port block belongs in weir_prange (encodePortRangeKey)');
  const v = new View(Layouts.policyKey, Buffer.alloc(Layouts.policyKey.size));
  return v
    .setU32('identity', k.identity)
    .setU32('peer', k.peer)
    .setU16('port', k.proto === 0 || k.portBits === 0 ? 0 : k.port)
    .setU8('proto', k.proto)
    .setU8('direction', k.direction).buf;
}

export function decodePolicyKey(buf: Buffer): PolicyKey {
  checkSize(Layouts.policyKey, buf, 'policy key');
  const v = new View(Layouts.policyKey, buf);
  const port = v.u16('port');
  return { identity: v.u32('identity'), peer: v.u32('peer'), direction: v.u8('direction'), proto: v.u8('proto'), port, portBits: port ? 16 : 0 };
}

/** weir_prange_key (LPM trie): a block of 2^(16-portBits) ports starting at port. */
export function encodePortRangeKey(k: PolicyKey): Buffer {
  const v = new View(Layouts.prangeKey, Buffer.alloc(Layouts.prangeKey.size));
  v.setU32('prefixlen', PRANGE_PREFIX_PROTO + k.portBits)
    .setU32('identity', k.identity)
    .setU32('peer', k.peer)
    .setU8('direction', k.direction)
    .setU8('proto', k.proto);
  // big-endian: a prefix of the key is a block of ports
  v.buf.writeUInt16BE(k.port, off(Layouts.prangeKey, 'port'));
  return v.buf;
}

export function decodePortRangeKey(buf: Buffer): PolicyKey {
  checkSize(Layouts.prangeKey, buf, 'port range key');
  const v = new View(Layouts.prangeKey, buf);
  return {
    identity: v.u32('identity'), peer: v.u32('peer'), direction: v.u8('direction'), proto: v.u8('proto'),
    port: buf.readUInt16BE(off(Layouts.prangeKey, 'port')), portBits: v.u32('prefixlen') - PRANGE_PREFIX_PROTO,
  };
}

export interface PolicyValue {
  ruleId: number;
  /** position of the rule in the reference order: the lowest rank among hits is named */
  rank: number;
}

export function encodePolicyValue(p: PolicyValue): Buffer {
  const v = new View(Layouts.policyValue, Buffer.alloc(Layouts.policyValue.size));
  return v.setU32('rule_id', p.ruleId).setU32('rank', p.rank).buf;
}

export function decodePolicyValue(buf: Buffer): PolicyValue {
  checkSize(Layouts.policyValue, buf, 'policy value');
  const v = new View(Layouts.policyValue, buf);
  return { ruleId: v.u32('rule_id'), rank: v.u32('rank') };
}

/** weir_ipcache key: a 16-byte address (IPv4 mapped) and its prefix length over 128 bits. */
export function encodeIpcacheKey(addr16: Buffer, prefixlen: number): Buffer {
  const v = new View(Layouts.ipcacheKey, Buffer.alloc(Layouts.ipcacheKey.size));
  return v.setU32('prefixlen', prefixlen).setBytes('addr', addr16).buf;
}

export function encodeIpcacheValue(classId: number): Buffer {
  return new View(Layouts.ipcacheValue, Buffer.alloc(Layouts.ipcacheValue.size)).setU32('class_id', classId).buf;
}

export function decodeIpcacheValue(buf: Buffer): number {
  checkSize(Layouts.ipcacheValue, buf, 'ipcache value');
  return new View(Layouts.ipcacheValue, buf).u32('class_id');
}

// ---- host protection ----------------------------------------------------------------------------

/** weir_host_iface: the host endpoint covering a host interface (key: u32 ifindex, 0 = "*"). */
export interface HostIface {
  /** endpoint id of the host endpoint */
  id: number;
  /** its identity: the subject of its weir_gtier lists */
  identity: number;
  /** EndpointFlag.AUDIT_ALL */
  flags: number;
}

export function encodeHostIface(h: HostIface): Buffer {
  const v = new View(Layouts.hostIface, Buffer.alloc(Layouts.hostIface.size));
  return v.setU32('id', h.id).setU32('identity', h.identity).setU32('flags', h.flags).buf;
}

export function decodeHostIface(buf: Buffer): HostIface {
  checkSize(Layouts.hostIface, buf, 'host interface');
  const v = new View(Layouts.hostIface, buf);
  return { id: v.u32('id'), identity: v.u32('identity'), flags: v.u32('flags') };
}

export interface GlobalTierKey {
  identity: number;
  /** Direction.INGRESS or Direction.EGRESS */
  direction: number;
  /** GlobalTierVariant bits */
  variant: number;
}

export function encodeGlobalTierKey(k: GlobalTierKey): Buffer {
  const v = new View(Layouts.gtierKey, Buffer.alloc(Layouts.gtierKey.size));
  return v.setU32('identity', k.identity).setU8('direction', k.direction).setU8('variant', k.variant).buf;
}

export function decodeGlobalTierKey(buf: Buffer): GlobalTierKey {
  checkSize(Layouts.gtierKey, buf, 'global tier key');
  const v = new View(Layouts.gtierKey, buf);
  return { identity: v.u32('identity'), direction: v.u8('direction'), variant: v.u8('variant') };
}

export interface GlobalTierValue {
  /** index of the list's first rule in weir_grules */
  first: number;
  /** 0: selected, no rules (end-of-tier deny) */
  count: number;
}

export function encodeGlobalTierValue(t: GlobalTierValue): Buffer {
  return new View(Layouts.gtierValue, Buffer.alloc(Layouts.gtierValue.size)).setU32('first', t.first).setU32('count', t.count).buf;
}

export function decodeGlobalTierValue(buf: Buffer): GlobalTierValue {
  checkSize(Layouts.gtierValue, buf, 'global tier value');
  const v = new View(Layouts.gtierValue, buf);
  return { first: v.u32('first'), count: v.u32('count') };
}

/** weir_grule: every condition is a set id, 0 = no condition. */
export interface GlobalRule {
  ruleId: number;
  /** GlobalAction value */
  action: number;
  /** 0 = any protocol */
  proto: number;
  srcSel: number;
  dstSel: number;
  srcNets: number;
  dstNets: number;
  srcNotNets: number;
  dstNotNets: number;
  srcPorts: number;
  dstPorts: number;
  srcNotPorts: number;
  dstNotPorts: number;
}

/** weir_grule's set-id fields, by their codec names. */
const GRULE_SETS = [
  ['srcSel', 'src_sel'], ['dstSel', 'dst_sel'], ['srcNets', 'src_nets'], ['dstNets', 'dst_nets'],
  ['srcNotNets', 'src_not_nets'], ['dstNotNets', 'dst_not_nets'], ['srcPorts', 'src_ports'], ['dstPorts', 'dst_ports'],
  ['srcNotPorts', 'src_not_ports'], ['dstNotPorts', 'dst_not_ports'],
] as const;

export function encodeGlobalRule(r: GlobalRule): Buffer {
  const v = new View(Layouts.grule, Buffer.alloc(Layouts.grule.size));
  v.setU32('rule_id', r.ruleId).setU8('action', r.action).setU8('proto', r.proto);
  for (const [ts, c] of GRULE_SETS) v.setU32(c, r[ts]);
  return v.buf;
}

export function decodeGlobalRule(buf: Buffer): GlobalRule {
  checkSize(Layouts.grule, buf, 'global rule');
  const v = new View(Layouts.grule, buf);
  const sets = Object.fromEntries(GRULE_SETS.map(([ts, c]) => [ts, v.u32(c)])) as Record<(typeof GRULE_SETS)[number][0], number>;
  return { ruleId: v.u32('rule_id'), action: v.u8('action'), proto: v.u8('proto'), ...sets };
}

export interface GlobalSetKey {
  set: number;
  /** a sel_identity (selectors, named ports), a CIDR class (nets) or 0 (failsafes) */
  member: number;
  /** proto << 16 | port for named ports and failsafes, else 0 */
  port: number;
}

export function encodeGlobalSetKey(k: GlobalSetKey): Buffer {
  const v = new View(Layouts.gsetKey, Buffer.alloc(Layouts.gsetKey.size));
  return v.setU32('set', k.set).setU32('member', k.member).setU32('port', k.port).buf;
}

export function decodeGlobalSetKey(buf: Buffer): GlobalSetKey {
  checkSize(Layouts.gsetKey, buf, 'global set key');
  const v = new View(Layouts.gsetKey, buf);
  return { set: v.u32('set'), member: v.u32('member'), port: v.u32('port') };
}

/** weir_gport_key (LPM trie): an aligned block of 2^(16-portBits) ports of a port set. */
export interface GlobalPortKey {
  set: number;
  port: number;
  /** leading port bits fixed: 16 one port, 16-k a block of 2^k */
  portBits: number;
}

export function encodeGlobalPortKey(k: GlobalPortKey): Buffer {
  const v = new View(Layouts.gportKey, Buffer.alloc(Layouts.gportKey.size));
  v.setU32('prefixlen', GPORT_PREFIX_SET + k.portBits).setU32('set', k.set);
  // big-endian: a prefix of the key is a block of ports
  v.buf.writeUInt16BE(k.port, off(Layouts.gportKey, 'port'));
  return v.buf;
}

export function decodeGlobalPortKey(buf: Buffer): GlobalPortKey {
  checkSize(Layouts.gportKey, buf, 'global port key');
  const v = new View(Layouts.gportKey, buf);
  return { set: v.u32('set'), port: buf.readUInt16BE(off(Layouts.gportKey, 'port')), portBits: v.u32('prefixlen') - GPORT_PREFIX_SET };
}

/** The value of every weir_gset and weir_gport entry: a u32 1. */
export function encodeSetMember(): Buffer {
  return encodeIndexKey(1);
}

export interface CtKey {
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  proto: number;
}

export function encodeCtKey(k: CtKey): Buffer {
  const v = new View(Layouts.ctKey, Buffer.alloc(Layouts.ctKey.size));
  return v
    .setBytes('saddr', ipToKey16(k.saddr))
    .setBytes('daddr', ipToKey16(k.daddr))
    .setU16('sport', k.sport)
    .setU16('dport', k.dport)
    .setU8('proto', k.proto).buf;
}

export function decodeCtKey(buf: Buffer): CtKey {
  checkSize(Layouts.ctKey, buf, 'ct key');
  const v = new View(Layouts.ctKey, buf);
  return {
    saddr: key16ToIp(v.bytes('saddr', 16)),
    daddr: key16ToIp(v.bytes('daddr', 16)),
    sport: v.u16('sport'),
    dport: v.u16('dport'),
    proto: v.u8('proto'),
  };
}

export interface CtEntry {
  createdNs: bigint;
  lastSeenNs: bigint;
  packetsFwd: bigint;
  bytesFwd: bigint;
  packetsRev: bigint;
  bytesRev: bigint;
  srcEp: number;
  dstEp: number;
  srcIdentity: number;
  dstIdentity: number;
  egressRuleId: number;
  ingressRuleId: number;
  ifindex: number;
  /** the destination pod's veth, where its address passed anti-spoofing; 0 = unknown */
  revIfindex: number;
  /** CtFlag bits */
  flags: number;
  tcpFlagsFwd: number;
  tcpFlagsRev: number;
  /** rule of a host endpoint the flow was forwarded through; 0 = none */
  forwardRuleId: number;
}

export function decodeCtEntry(buf: Buffer): CtEntry {
  checkSize(Layouts.ctEntry, buf, 'ct entry');
  const v = new View(Layouts.ctEntry, buf);
  return {
    createdNs: v.u64('created_ns'),
    lastSeenNs: v.u64('last_seen_ns'),
    packetsFwd: v.u64('packets_fwd'),
    bytesFwd: v.u64('bytes_fwd'),
    packetsRev: v.u64('packets_rev'),
    bytesRev: v.u64('bytes_rev'),
    srcEp: v.u32('src_ep'),
    dstEp: v.u32('dst_ep'),
    srcIdentity: v.u32('src_identity'),
    dstIdentity: v.u32('dst_identity'),
    egressRuleId: v.u32('egress_rule_id'),
    ingressRuleId: v.u32('ingress_rule_id'),
    ifindex: v.u32('ifindex'),
    revIfindex: v.u32('rev_ifindex'),
    flags: v.u16('flags'),
    tcpFlagsFwd: v.u8('tcp_flags_fwd'),
    tcpFlagsRev: v.u8('tcp_flags_rev'),
    forwardRuleId: v.u32('forward_rule_id'),
  };
}

export function encodeCtEntry(e: CtEntry): Buffer {
  const v = new View(Layouts.ctEntry, Buffer.alloc(Layouts.ctEntry.size));
  return v
    .setU64('created_ns', e.createdNs)
    .setU64('last_seen_ns', e.lastSeenNs)
    .setU64('packets_fwd', e.packetsFwd)
    .setU64('bytes_fwd', e.bytesFwd)
    .setU64('packets_rev', e.packetsRev)
    .setU64('bytes_rev', e.bytesRev)
    .setU32('src_ep', e.srcEp)
    .setU32('dst_ep', e.dstEp)
    .setU32('src_identity', e.srcIdentity)
    .setU32('dst_identity', e.dstIdentity)
    .setU32('egress_rule_id', e.egressRuleId)
    .setU32('ingress_rule_id', e.ingressRuleId)
    .setU32('ifindex', e.ifindex)
    .setU32('rev_ifindex', e.revIfindex)
    .setU16('flags', e.flags)
    .setU8('tcp_flags_fwd', e.tcpFlagsFwd)
    .setU8('tcp_flags_rev', e.tcpFlagsRev)
    .setU32('forward_rule_id', e.forwardRuleId).buf;
}

export interface DenyRateLimit {
  lastEventNs: bigint;
  suppressed: number;
  /** the cached verdict: policy generation, interface, hook and reason (0 = nothing cached) */
  generation: number;
  ifindex: number;
  reason: number;
  hook: number;
}

export function decodeDenyRl(buf: Buffer): DenyRateLimit {
  checkSize(Layouts.denyRl, buf, 'deny rate-limit entry');
  const v = new View(Layouts.denyRl, buf);
  return {
    lastEventNs: v.u64('last_event_ns'),
    suppressed: v.u32('suppressed'),
    generation: v.u32('generation'),
    ifindex: v.u32('ifindex'),
    reason: v.u16('reason'),
    hook: v.u8('hook'),
  };
}

export function encodeDenyRl(d: DenyRateLimit): Buffer {
  const v = new View(Layouts.denyRl, Buffer.alloc(Layouts.denyRl.size));
  return v
    .setU64('last_event_ns', d.lastEventNs)
    .setU32('suppressed', d.suppressed)
    .setU32('generation', d.generation)
    .setU32('ifindex', d.ifindex)
    .setU16('reason', d.reason)
    .setU8('hook', d.hook).buf;
}

/** weir_config_v1[0]: what user space tells the programs. */
export interface Config {
  /** policy generation, bumped after every change of the endpoint or policy maps */
  generation: number;
}

export function decodeConfig(buf: Buffer): Config {
  checkSize(Layouts.config, buf, 'config');
  return { generation: new View(Layouts.config, buf).u32('generation') };
}

export function encodeConfig(c: Config): Buffer {
  return new View(Layouts.config, Buffer.alloc(Layouts.config.size)).setU32('generation', c.generation).buf;
}

/** The generation after `g` (u32, wrapping). */
export const nextGeneration = (g: number): number => (g + 1) >>> 0;

/** An index key of the array maps (stats, counters, lost-pending): a host-order u32. */
export function encodeIndexKey(i: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(i);
  return b;
}

export interface Stat {
  packets: bigint;
  bytes: bigint;
}

/** Per-CPU map values come as one slot per possible CPU, each rounded up to 8 bytes. */
export function perCpuSlots(buf: Buffer, valueSize: number): Buffer[] {
  const stride = Math.ceil(valueSize / 8) * 8;
  if (buf.length % stride !== 0) {
    throw new RangeError(`abi: per-CPU value of ${buf.length} bytes is not a multiple of ${stride}`);
  }
  const out: Buffer[] = [];
  for (let o = 0; o < buf.length; o += stride) out.push(buf.subarray(o, o + valueSize));
  return out;
}

export function decodeStat(buf: Buffer): Stat {
  checkSize(Layouts.stat, buf, 'stat');
  const v = new View(Layouts.stat, buf);
  return { packets: v.u64('packets'), bytes: v.u64('bytes') };
}

/** Sum of a weir_stats_v2 value over all CPUs. */
export function decodePerCpuStat(buf: Buffer): Stat {
  const sum: Stat = { packets: 0n, bytes: 0n };
  for (const slot of perCpuSlots(buf, Layouts.stat.size)) {
    const s = decodeStat(slot);
    sum.packets += s.packets;
    sum.bytes += s.bytes;
  }
  return sum;
}

/** Per-CPU values of a __u64 per-CPU array (weir_counters_v1, weir_lost_pend_v1). */
export function decodePerCpuU64(buf: Buffer): bigint[] {
  return perCpuSlots(buf, 8).map((s) => s.readBigUInt64LE(0));
}

/** Sum of a weir_counters_v1 value over all CPUs. */
export function decodePerCpuCounter(buf: Buffer): bigint {
  return decodePerCpuU64(buf).reduce((a, b) => a + b, 0n);
}

// ---- ring-buffer records -------------------------------------------------------------------------

export interface EventHeader {
  version: number;
  type: number;
  len: number;
  cpu: number;
}

export interface FlowEvent {
  /** LOG: a Log rule matched a new flow (its id is the rule id of the record's direction) */
  type: 'FLOW_START' | 'DENY' | 'FLOW_END' | 'LOG';
  cpu: number;
  tsNs: bigint;
  startNs: bigint;
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  proto: number;
  family: number;
  direction: number;
  verdict: number;
  reason: number;
  hook: number;
  tcpFlags: number;
  ifindex: number;
  srcEp: number;
  dstEp: number;
  srcIdentity: number;
  dstIdentity: number;
  egressRuleId: number;
  ingressRuleId: number;
  count: number;
  /** rule of a host endpoint the flow is forwarded through; 0 = none */
  forwardRuleId: number;
  packetsFwd: bigint;
  bytesFwd: bigint;
  packetsRev: bigint;
  bytesRev: bigint;
}

export interface LostEvent {
  type: 'LOST';
  cpu: number;
  tsNs: bigint;
  /** reservations that failed on this CPU since its previous LOST record */
  lost: bigint;
}

/** A record this build cannot decode; the reader logs or counts it and carries on. */
export interface InvalidRecord {
  type: 'INVALID';
  error: string;
  header?: EventHeader;
  bytes: Buffer;
}

export type WeirRecord = FlowEvent | LostEvent | InvalidRecord;

export function decodeEventHeader(buf: Buffer): EventHeader {
  checkSize(Layouts.eventHdr, buf, 'event header');
  const v = new View(Layouts.eventHdr, buf);
  return { version: v.u8('version'), type: v.u8('type'), len: v.u16('len'), cpu: v.u32('cpu') };
}

export function decodeFlowEvent(buf: Buffer): FlowEvent {
  checkSize(Layouts.flowEvent, buf, 'flow event');
  const h = decodeEventHeader(buf);
  const name = eventTypeName(h.type);
  if (name !== 'FLOW_START' && name !== 'DENY' && name !== 'FLOW_END' && name !== 'LOG') {
    throw new TypeError(`abi: event type ${h.type} is not a flow record`);
  }
  const v = new View(Layouts.flowEvent, buf);
  return {
    type: name,
    cpu: h.cpu,
    tsNs: v.u64('ts_ns'),
    startNs: v.u64('start_ns'),
    saddr: key16ToIp(v.bytes('saddr', 16)),
    daddr: key16ToIp(v.bytes('daddr', 16)),
    sport: v.u16('sport'),
    dport: v.u16('dport'),
    proto: v.u8('proto'),
    family: v.u8('family'),
    direction: v.u8('direction'),
    verdict: v.u8('verdict'),
    reason: v.u16('reason'),
    hook: v.u8('hook'),
    tcpFlags: v.u8('tcp_flags'),
    ifindex: v.u32('ifindex'),
    srcEp: v.u32('src_ep'),
    dstEp: v.u32('dst_ep'),
    srcIdentity: v.u32('src_identity'),
    dstIdentity: v.u32('dst_identity'),
    egressRuleId: v.u32('egress_rule_id'),
    ingressRuleId: v.u32('ingress_rule_id'),
    count: v.u32('count'),
    forwardRuleId: v.u32('forward_rule_id'),
    packetsFwd: v.u64('packets_fwd'),
    bytesFwd: v.u64('bytes_fwd'),
    packetsRev: v.u64('packets_rev'),
    bytesRev: v.u64('bytes_rev'),
  };
}

export function decodeLostEvent(buf: Buffer): LostEvent {
  checkSize(Layouts.lostEvent, buf, 'lost event');
  const h = decodeEventHeader(buf);
  const v = new View(Layouts.lostEvent, buf);
  return { type: 'LOST', cpu: h.cpu, tsNs: v.u64('ts_ns'), lost: v.u64('lost') };
}

/** Decodes one ring-buffer record. Never throws: what it cannot decode comes back as INVALID. */
export function decodeRecord(buf: Buffer): WeirRecord {
  const bytes = Buffer.from(buf);
  if (buf.length < Layouts.eventHdr.size) {
    return { type: 'INVALID', error: `record of ${buf.length} bytes is shorter than its header`, bytes };
  }
  const header = decodeEventHeader(buf);
  const invalid = (error: string): InvalidRecord => ({ type: 'INVALID', error, header, bytes });
  if (header.version !== WEIR_EVENT_VERSION) {
    return invalid(`record version ${header.version}, this build reads version ${WEIR_EVENT_VERSION}`);
  }
  let want: StructLayout;
  switch (header.type) {
    case EventType.FLOW_START:
    case EventType.DENY:
    case EventType.FLOW_END:
    case EventType.LOG:
      want = Layouts.flowEvent;
      break;
    case EventType.LOST:
      want = Layouts.lostEvent;
      break;
    default:
      return invalid(`unknown record type ${header.type}`);
  }
  if (header.len !== want.size || buf.length < want.size) {
    return invalid(
      `${eventTypeName(header.type)} record: header says ${header.len} bytes, got ${buf.length}, expected ${want.size}`,
    );
  }
  return want === Layouts.lostEvent ? decodeLostEvent(buf) : decodeFlowEvent(buf);
}

// ---- name tables and per-CPU sums under the names the agent uses ----------------------------------

function invert<K extends string>(t: Record<K, number>): Readonly<Record<number, K>> {
  const out: Record<number, K> = {};
  for (const [k, v] of Object.entries(t) as Array<[K, number]>) out[v] = k;
  return out;
}

/** reason value -> name, e.g. 7 -> 'DENY_DEFAULT' */
export const REASON_NAMES = invert(Reason);
/** counter index -> name, e.g. 0 -> 'EVENTS_LOST' */
export const COUNTER_NAMES = invert(Counter);
/** Sum over CPUs of a raw weir_stats_v2 value. */
export const sumPerCpuStats = decodePerCpuStat;
/** Sum over CPUs of a raw __u64 per-CPU value (weir_counters_v1, weir_lost_pend_v1). */
export const sumPerCpuU64 = decodePerCpuCounter;

// ---- weir_policy_explain ------------------------------------------------------------------------

/** WEIR_EXPLAIN_APPLIES: the side is a local pod, so a hook polices it. */
export const EXPLAIN_APPLIES = 0x8000_0000;
/** weir_policy_explain's return values besides 0. */
export const ExplainRetval = { NON_IP: 1, MALFORMED: 2 } as const;
/** offsetof(struct __sk_buff, cb): where the result sits in the context (checked against BTF). */
export const SKB_CB_OFFSET = 48;

export interface ExplainSide {
  /** false: not a local pod, so no hook polices this side */
  readonly applies: boolean;
  readonly verdict: number;
  readonly reason: number;
  readonly ruleId: number;
}

export interface ExplainResult {
  readonly egress: ExplainSide;
  readonly ingress: ExplainSide;
  readonly generation: number;
}

/** Decodes struct weir_explain_result from the context (struct __sk_buff) a test run returned. */
export function decodeExplainResult(ctx: Buffer): ExplainResult {
  const l = Layouts.explainResult;
  if (ctx.length < SKB_CB_OFFSET + l.size) throw new TypeError(`abi: context of ${ctx.length} bytes has no weir_explain_result`);
  const v = new View(l, ctx.subarray(SKB_CB_OFFSET, SKB_CB_OFFSET + l.size));
  const side = (word: number, ruleId: number): ExplainSide => ({
    applies: (word & EXPLAIN_APPLIES) !== 0, verdict: word & 0xff, reason: (word >>> 8) & 0xffff, ruleId,
  });
  return {
    egress: side(v.u32('egress'), v.u32('egress_rule_id')),
    ingress: side(v.u32('ingress'), v.u32('ingress_rule_id')),
    generation: v.u32('generation'),
  };
}
