// A small packet builder for BPF_PROG_TEST_RUN: Ethernet (+ VLAN) + IPv4 (options, fragments) or
// IPv6 (extension headers) + TCP/UDP/SCTP/ICMP/ICMPv6. Checksums are left zero: the programs
// never verify them. Every layer can be built on its own, for malformed-packet tests.
import net from 'node:net';
import { ipToKey16, Proto } from '../../src/datapath/abi.js';

export const TcpFlag = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 } as const;

export const EtherType = { IPV4: 0x0800, IPV6: 0x86dd, ARP: 0x0806, VLAN: 0x8100 } as const;

export type L4Spec =
  | { proto: 'tcp'; sport: number; dport: number; flags?: number }
  | { proto: 'udp'; sport: number; dport: number }
  | { proto: 'sctp'; sport: number; dport: number }
  | { proto: 'icmp'; type: number; code?: number; id?: number; seq?: number }
  | { proto: 'icmpv6'; type: number; code?: number; id?: number; seq?: number }
  | { proto: number; raw: Buffer };

export interface Ipv6Ext {
  /** 0 hop-by-hop, 43 routing, 44 fragment, 51 AH, 60 destination options */
  type: 0 | 43 | 44 | 51 | 60;
  /** bytes of the header after its first two (padded to the header's unit); default minimal */
  bodyLen?: number;
  /** fragment header only */
  fragOffset?: number;
  moreFragments?: boolean;
}

export interface PacketSpec {
  src: string;
  dst: string;
  l4: L4Spec;
  /** bytes of payload after the L4 header */
  payloadLen?: number;
  vlan?: number;
  /** IPv4: option bytes (padded to 4), making IHL > 5 */
  ipv4Options?: Buffer;
  /** IPv4 fragment offset in 8-byte units and MF flag */
  fragOffset?: number;
  moreFragments?: boolean;
  ipv6Ext?: Ipv6Ext[];
  ttl?: number;
}

const MAC_DST = Buffer.from([0x02, 0, 0, 0, 0, 0x01]);
const MAC_SRC = Buffer.from([0x02, 0, 0, 0, 0, 0x02]);

export function ethernet(etherType: number, payload: Buffer, vlan?: number): Buffer {
  const parts: Buffer[] = [MAC_DST, MAC_SRC];
  if (vlan !== undefined) {
    const tag = Buffer.alloc(4);
    tag.writeUInt16BE(EtherType.VLAN, 0);
    tag.writeUInt16BE(vlan & 0x0fff, 2);
    parts.push(tag);
  }
  const t = Buffer.alloc(2);
  t.writeUInt16BE(etherType);
  parts.push(t, payload);
  return Buffer.concat(parts);
}

function protoNumber(l4: L4Spec): number {
  switch (l4.proto) {
    case 'tcp':
      return Proto.TCP;
    case 'udp':
      return Proto.UDP;
    case 'sctp':
      return Proto.SCTP;
    case 'icmp':
      return Proto.ICMP;
    case 'icmpv6':
      return Proto.ICMPV6;
    default:
      return l4.proto;
  }
}

export function l4Header(l4: L4Spec): Buffer {
  switch (l4.proto) {
    case 'tcp': {
      const b = Buffer.alloc(20);
      b.writeUInt16BE(l4.sport, 0);
      b.writeUInt16BE(l4.dport, 2);
      b.writeUInt32BE(1000, 4);
      b.writeUInt8(5 << 4, 12);
      b.writeUInt8(l4.flags ?? TcpFlag.ACK, 13);
      b.writeUInt16BE(65535, 14);
      return b;
    }
    case 'udp':
    case 'sctp': {
      const b = Buffer.alloc(l4.proto === 'udp' ? 8 : 12);
      b.writeUInt16BE(l4.sport, 0);
      b.writeUInt16BE(l4.dport, 2);
      if (l4.proto === 'udp') b.writeUInt16BE(8, 4);
      return b;
    }
    case 'icmp':
    case 'icmpv6': {
      const b = Buffer.alloc(8);
      b.writeUInt8(l4.type, 0);
      b.writeUInt8(l4.code ?? 0, 1);
      b.writeUInt16BE(l4.id ?? 0, 4);
      b.writeUInt16BE(l4.seq ?? 0, 6);
      return b;
    }
    default:
      return l4.raw;
  }
}

export interface Ipv4Opts {
  src: string;
  dst: string;
  proto: number;
  payload: Buffer;
  options?: Buffer;
  fragOffset?: number;
  moreFragments?: boolean;
  ttl?: number;
  /** override the total-length field (inconsistent-header tests) */
  totalLength?: number;
  /** override the IHL field, in 4-byte words */
  ihl?: number;
}

export function ipv4(o: Ipv4Opts): Buffer {
  const opts = o.options ?? Buffer.alloc(0);
  const padded = Buffer.concat([opts, Buffer.alloc((4 - (opts.length % 4)) % 4)]);
  const hlen = 20 + padded.length;
  const h = Buffer.alloc(hlen);
  h.writeUInt8(0x40 | (o.ihl ?? hlen / 4), 0);
  h.writeUInt16BE(o.totalLength ?? hlen + o.payload.length, 2);
  h.writeUInt16BE(0x1234, 4);
  h.writeUInt16BE(((o.moreFragments ? 1 : 0) << 13) | ((o.fragOffset ?? 0) & 0x1fff), 6);
  h.writeUInt8(o.ttl ?? 64, 8);
  h.writeUInt8(o.proto, 9);
  ipToKey16(o.src).copy(h, 12, 12, 16);
  ipToKey16(o.dst).copy(h, 16, 12, 16);
  padded.copy(h, 20);
  return Buffer.concat([h, o.payload]);
}

function ipv6ExtHeader(e: Ipv6Ext, next: number): Buffer {
  if (e.type === 44) {
    const b = Buffer.alloc(8);
    b.writeUInt8(next, 0);
    b.writeUInt16BE(((e.fragOffset ?? 0) << 3) | (e.moreFragments ? 1 : 0), 2);
    b.writeUInt32BE(0xabcd, 4);
    return b;
  }
  if (e.type === 51) {
    // AH: length in 4-byte units minus 2; minimum 12 bytes (+ ICV)
    const total = 12 + Math.ceil((e.bodyLen ?? 4) / 4) * 4;
    const b = Buffer.alloc(total);
    b.writeUInt8(next, 0);
    b.writeUInt8(total / 4 - 2, 1);
    return b;
  }
  // hop-by-hop / routing / destination options: length in 8-byte units minus 1
  const total = Math.max(8, Math.ceil(((e.bodyLen ?? 6) + 2) / 8) * 8);
  const b = Buffer.alloc(total);
  b.writeUInt8(next, 0);
  b.writeUInt8(total / 8 - 1, 1);
  if (e.type !== 43) {
    // PadN option over the body, so the options parse as valid
    b.writeUInt8(1, 2);
    b.writeUInt8(total - 4, 3);
  }
  return b;
}

export interface Ipv6Opts {
  src: string;
  dst: string;
  nextHeader: number;
  payload: Buffer;
  ext?: Ipv6Ext[];
  hopLimit?: number;
  /** override the payload-length field */
  payloadLength?: number;
}

export function ipv6(o: Ipv6Opts): Buffer {
  const exts = o.ext ?? [];
  const chain: Buffer[] = [];
  for (let i = 0; i < exts.length; i++) {
    const next = i + 1 < exts.length ? exts[i + 1]!.type : o.nextHeader;
    chain.push(ipv6ExtHeader(exts[i]!, next));
  }
  const body = Buffer.concat([...chain, o.payload]);
  const h = Buffer.alloc(40);
  h.writeUInt32BE(0x60000000, 0);
  h.writeUInt16BE(o.payloadLength ?? body.length, 4);
  h.writeUInt8(exts.length ? exts[0]!.type : o.nextHeader, 6);
  h.writeUInt8(o.hopLimit ?? 64, 7);
  ipToKey16(o.src).copy(h, 8);
  ipToKey16(o.dst).copy(h, 24);
  return Buffer.concat([h, body]);
}

/** A whole frame from a spec; the family follows the source address. */
export function packet(spec: PacketSpec): Buffer {
  const l4 = Buffer.concat([l4Header(spec.l4), Buffer.alloc(spec.payloadLen ?? 0, 0x61)]);
  const proto = protoNumber(spec.l4);
  if (net.isIPv4(spec.src)) {
    const ip = ipv4({
      src: spec.src,
      dst: spec.dst,
      proto,
      payload: l4,
      ...(spec.ipv4Options ? { options: spec.ipv4Options } : {}),
      ...(spec.fragOffset !== undefined ? { fragOffset: spec.fragOffset } : {}),
      ...(spec.moreFragments !== undefined ? { moreFragments: spec.moreFragments } : {}),
      ...(spec.ttl !== undefined ? { ttl: spec.ttl } : {}),
    });
    return ethernet(EtherType.IPV4, ip, spec.vlan);
  }
  const ip = ipv6({
    src: spec.src,
    dst: spec.dst,
    nextHeader: proto,
    payload: l4,
    ...(spec.ipv6Ext ? { ext: spec.ipv6Ext } : {}),
  });
  return ethernet(EtherType.IPV6, ip, spec.vlan);
}

// Shorthands for the common cases.
export const tcpPacket = (src: string, dst: string, sport: number, dport: number, flags: number = TcpFlag.ACK, payloadLen = 0): Buffer =>
  packet({ src, dst, l4: { proto: 'tcp', sport, dport, flags }, payloadLen });
export const udpPacket = (src: string, dst: string, sport: number, dport: number, payloadLen = 0): Buffer =>
  packet({ src, dst, l4: { proto: 'udp', sport, dport }, payloadLen });

/** ARP request (a non-IP frame). */
export function arpPacket(): Buffer {
  const arp = Buffer.alloc(28);
  arp.writeUInt16BE(1, 0);
  arp.writeUInt16BE(0x0800, 2);
  arp.writeUInt8(6, 4);
  arp.writeUInt8(4, 5);
  arp.writeUInt16BE(1, 6);
  return ethernet(EtherType.ARP, arp);
}

/** Offset of the L3 header in frames built here (no VLAN). */
export const L3_OFFSET = 14;
