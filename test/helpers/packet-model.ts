// What the datapath must make of raw frame bytes: a plain-TypeScript statement of bpf/lib/parse.h's
// contract (docs/datapath.md, "Per packet at a pod hook", step 1, and docs/reliability.md), written
// from the documented rules rather than transcribed from the C, so test/datapath/hostile.test.ts
// can hold the programs to it on random and mutated packets.
//
// It lives in test/helpers because it is only an oracle: nothing in src/ turns raw bytes into a
// tuple (the agent reads tuples from the datapath's records; `weir policy explain` builds its
// packets from a tuple). Keep it obviously correct rather than fast.
//
// The rules:
// - Ethernet: the EtherType at offset 12. Up to WEIR_MAX_VLAN (2) 802.1Q/802.1ad tags left in the
//   frame are stepped over; a tag cut short, or a third tag, is malformed (a chain the parser does
//   not follow must not let a frame pass as non-IP: the stack strips priority tags it was given
//   and would deliver the IP packet inside, unjudged).
// - Any other EtherType than IPv4/IPv6: non-IP (passes: ARP, LLDP, ...).
// - IPv4: a 20-byte header, version 4, IHL >= 5, total length >= IHL and within the frame. From
//   then on only the datagram counts: bytes past the total length (link padding) are not part of
//   any header. A non-zero fragment offset is a later fragment: proto from the header, ports 0,
//   judged without its L4 header. Otherwise the L4 header follows the options.
// - IPv6: a 40-byte header, version 6, payload length within the frame (0: a jumbogram, the frame
//   is the datagram); extension headers hop-by-hop (0), routing (43), destination options (60)
//   (8-byte units), AH (51, 4-byte units) and fragment (44) are followed, at most
//   WEIR_MAX_IPV6_EXT (8); a longer chain is malformed. A fragment header with a non-zero offset
//   makes a later fragment (proto = its next header, ports 0).
// - L4 (first fragments and whole datagrams): TCP needs its 20-byte header and a data offset >= 5
//   (ports, flags); UDP 8 bytes; SCTP its 12-byte common header; ICMP and ICMPv6 8 bytes (type,
//   code; an echo request/reply's identifier in both ports, other messages ports 0). Any other
//   protocol: no ports. The L4 fields the receiving stack checks itself (TCP data offset beyond the
//   datagram, UDP length, checksums, IPv4 option contents) are not checked: such a packet is
//   judged by its ports and the receiver drops it.
// - ICMP errors are judged as their own flow (proto ICMP/ICMPv6, ports 0); the inner header they
//   carry is read here only to describe the case (`inner`), never to judge it.
// - NDP/MLD pass unjudged only as ICMPv6 in IPv6 (not a later fragment): types 130-137 and 143.
import { key16ToIp } from '../../src/datapath/abi.js';

export const MAX_VLAN = 2;
export const MAX_IPV6_EXT = 8;
const ETH_HLEN = 14;

export const ETH_P_IP = 0x0800;
export const ETH_P_IPV6 = 0x86dd;
export const ETH_P_8021Q = 0x8100;
export const ETH_P_8021AD = 0x88a8;

/** IPv6 extension headers the parser follows. */
export const IPV6_EXT = new Set([0, 43, 44, 51, 60]);

export interface Tuple {
  /** addresses as the datapath's records print them (IPv4 dotted, IPv6 canonical) */
  readonly src: string;
  readonly dst: string;
  readonly proto: number;
  readonly sport: number;
  readonly dport: number;
}

export interface ParsedIp extends Tuple {
  readonly kind: 'ip';
  readonly family: 4 | 6;
  readonly tcpFlags: number;
  /** a non-first fragment: no L4 header, ports 0 */
  readonly laterFragment: boolean;
  /** offset 0 with more fragments to come (IPv4 MF, or an IPv6 fragment header with offset 0) */
  readonly firstFragment: boolean;
  readonly icmpType: number;
  readonly icmpCode: number;
  /** an ICMP/ICMPv6 error: the inner header's tuple as far as it is there (descriptive only) */
  readonly icmpError?: { readonly inner?: Tuple; readonly innerTruncated: boolean };
  /** descriptive: VLAN tags stepped over, IPv4 header length, IPv6 extension headers followed */
  readonly vlanTags: number;
  readonly ipv4HeaderLen?: number;
  readonly ipv6Ext: readonly number[];
}

export type ParseOutcome =
  | { readonly kind: 'non-ip'; readonly etherType: number }
  | { readonly kind: 'malformed'; readonly why: string }
  | ParsedIp;

const V4_MAPPED = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
const v4 = (b: Buffer, off: number): string => key16ToIp(Buffer.concat([V4_MAPPED, b.subarray(off, off + 4)]));
const v6 = (b: Buffer, off: number): string => key16ToIp(Buffer.from(b.subarray(off, off + 16)));

/** ICMP (proto 1) and ICMPv6 (58) error types: they carry the offending packet's headers. */
const ICMP_ERRORS = new Set([3, 4, 5, 11, 12]);
const ICMPV6_ERRORS = new Set([1, 2, 3, 4]);

export function isIcmpError(proto: number, type: number): boolean {
  return (proto === 1 && ICMP_ERRORS.has(type)) || (proto === 58 && ICMPV6_ERRORS.has(type));
}

class Malformed extends Error {}

/** Reads within [0, limit): the frame, then (once the IP length is known) the datagram. */
class Cursor {
  limit: number;
  constructor(readonly b: Buffer) {
    this.limit = b.length;
  }
  need(off: number, n: number, what: string): void {
    if (off + n > this.limit) throw new Malformed(`${what} truncated (needs ${n} bytes at ${off}, ${this.limit - off < 0 ? 0 : this.limit - off} there)`);
  }
}

/** The L4 fields at off. */
function parseL4(c: Cursor, off: number, proto: number): { sport: number; dport: number; tcpFlags: number; icmpType: number; icmpCode: number } {
  const b = c.b;
  switch (proto) {
    case 6: {
      c.need(off, 20, 'TCP header');
      if (b[off + 12]! >> 4 < 5) throw new Malformed(`TCP data offset ${b[off + 12]! >> 4} below 5`);
      return { sport: b.readUInt16BE(off), dport: b.readUInt16BE(off + 2), tcpFlags: b[off + 13]!, icmpType: 0, icmpCode: 0 };
    }
    case 17:
    case 132:
      c.need(off, proto === 17 ? 8 : 12, proto === 17 ? 'UDP header' : 'SCTP common header');
      return { sport: b.readUInt16BE(off), dport: b.readUInt16BE(off + 2), tcpFlags: 0, icmpType: 0, icmpCode: 0 };
    case 1:
    case 58: {
      c.need(off, 8, proto === 1 ? 'ICMP header' : 'ICMPv6 header');
      const type = b[off]!;
      const echo = proto === 1 ? type === 8 || type === 0 : type === 128 || type === 129;
      const id = echo ? b.readUInt16BE(off + 4) : 0;
      return { sport: id, dport: id, tcpFlags: 0, icmpType: type, icmpCode: b[off + 1]! };
    }
    default:
      return { sport: 0, dport: 0, tcpFlags: 0, icmpType: 0, icmpCode: 0 };
  }
}

/** The inner header of an ICMP error at off (within the outer datagram): descriptive only. */
function innerOf(b: Buffer, off: number, end: number, family: 4 | 6): { inner?: Tuple; innerTruncated: boolean } {
  const have = (n: number) => off + n <= end;
  if (family === 4) {
    if (!have(20) || b[off]! >> 4 !== 4) return { innerTruncated: true };
    const ihl = (b[off]! & 15) * 4;
    const proto = b[off + 9]!;
    const ports = have(ihl + 4) && (proto === 6 || proto === 17 || proto === 132);
    return {
      inner: { src: v4(b, off + 12), dst: v4(b, off + 16), proto, sport: ports ? b.readUInt16BE(off + ihl) : 0, dport: ports ? b.readUInt16BE(off + ihl + 2) : 0 },
      innerTruncated: !have(ihl + 8),
    };
  }
  if (!have(40) || b[off]! >> 4 !== 6) return { innerTruncated: true };
  const proto = b[off + 6]!;
  const ports = have(44) && (proto === 6 || proto === 17 || proto === 132);
  return {
    inner: { src: v6(b, off + 8), dst: v6(b, off + 24), proto, sport: ports ? b.readUInt16BE(off + 40) : 0, dport: ports ? b.readUInt16BE(off + 42) : 0 },
    innerTruncated: !have(48),
  };
}

function parseIpv4(c: Cursor, off: number, vlanTags: number): ParsedIp {
  const b = c.b;
  c.need(off, 20, 'IPv4 header');
  const version = b[off]! >> 4;
  const ihl = (b[off]! & 15) * 4;
  const totLen = b.readUInt16BE(off + 2);
  if (version !== 4) throw new Malformed(`IPv4 version field ${version}`);
  if (ihl < 20) throw new Malformed(`IPv4 IHL ${ihl / 4} below 5`);
  if (totLen < ihl) throw new Malformed(`IPv4 total length ${totLen} below the header length ${ihl}`);
  if (off + totLen > b.length) throw new Malformed(`IPv4 total length ${totLen} beyond the frame (${b.length - off} bytes)`);
  c.limit = off + totLen; // link padding is no header's
  const fragField = b.readUInt16BE(off + 6);
  const base = { kind: 'ip' as const, family: 4 as const, src: v4(b, off + 12), dst: v4(b, off + 16), proto: b[off + 9]!, vlanTags, ipv4HeaderLen: ihl, ipv6Ext: [] };
  if (fragField & 0x1fff) {
    return { ...base, sport: 0, dport: 0, tcpFlags: 0, laterFragment: true, firstFragment: false, icmpType: 0, icmpCode: 0 };
  }
  const l4 = parseL4(c, off + ihl, base.proto);
  const err = isIcmpError(base.proto, l4.icmpType) ? { icmpError: innerOf(b, off + ihl + 8, c.limit, 4) } : {};
  return { ...base, ...l4, laterFragment: false, firstFragment: (fragField & 0x2000) !== 0, ...err };
}

function parseIpv6(c: Cursor, off: number, vlanTags: number): ParsedIp {
  const b = c.b;
  c.need(off, 40, 'IPv6 header');
  const version = b[off]! >> 4;
  if (version !== 6) throw new Malformed(`IPv6 version field ${version}`);
  const plen = b.readUInt16BE(off + 4);
  if (plen && off + 40 + plen > b.length) throw new Malformed(`IPv6 payload length ${plen} beyond the frame (${b.length - off - 40} bytes)`);
  if (plen) c.limit = off + 40 + plen; // link padding is no header's
  const base = { kind: 'ip' as const, family: 6 as const, src: v6(b, off + 8), dst: v6(b, off + 24), vlanTags };
  let nh = b[off + 6]!;
  let at = off + 40;
  const ext: number[] = [];
  let firstFragment = false;
  for (let i = 0; i < MAX_IPV6_EXT && IPV6_EXT.has(nh); i++) {
    ext.push(nh);
    if (nh === 44) {
      c.need(at, 8, 'IPv6 fragment header');
      const offMf = b.readUInt16BE(at + 2);
      nh = b[at]!;
      at += 8;
      if (offMf & 0xfff8) {
        return { ...base, proto: nh, sport: 0, dport: 0, tcpFlags: 0, laterFragment: true, firstFragment: false, icmpType: 0, icmpCode: 0, ipv6Ext: ext };
      }
      firstFragment ||= (offMf & 1) !== 0;
      continue;
    }
    c.need(at, 2, `IPv6 extension header ${nh}`);
    const len = b[at + 1]!;
    const next = b[at]!;
    at += nh === 51 ? (len + 2) * 4 : (len + 1) * 8;
    nh = next;
  }
  if (IPV6_EXT.has(nh)) throw new Malformed(`IPv6 extension chain longer than ${MAX_IPV6_EXT}`);
  const l4 = parseL4(c, at, nh);
  const err = isIcmpError(nh, l4.icmpType) ? { icmpError: innerOf(b, at + 8, c.limit, 6) } : {};
  return { ...base, proto: nh, ...l4, laterFragment: false, firstFragment, ipv6Ext: ext, ...err };
}

/** What the datapath must make of a frame (at least ETH_HLEN bytes, as every hook gets). */
export function parseFrame(frame: Buffer): ParseOutcome {
  if (frame.length < ETH_HLEN) throw new RangeError(`parseFrame: a frame has at least ${ETH_HLEN} bytes, got ${frame.length}`);
  const c = new Cursor(frame);
  let etherType = frame.readUInt16BE(12);
  let off = ETH_HLEN;
  let tags = 0;
  try {
    while (etherType === ETH_P_8021Q || etherType === ETH_P_8021AD) {
      if (tags === MAX_VLAN) throw new Malformed(`more than ${MAX_VLAN} VLAN tags`);
      c.need(off, 4, 'VLAN tag');
      etherType = frame.readUInt16BE(off + 2);
      off += 4;
      tags++;
    }
    if (etherType === ETH_P_IP) return parseIpv4(c, off, tags);
    if (etherType === ETH_P_IPV6) return parseIpv6(c, off, tags);
    return { kind: 'non-ip', etherType };
  } catch (e) {
    if (e instanceof Malformed) return { kind: 'malformed', why: e.message };
    throw e;
  }
}

/** Neighbour discovery and MLD: ICMPv6 in IPv6 only, never a later fragment. */
export function isNdp(p: ParsedIp): boolean {
  const t = p.icmpType;
  return p.family === 6 && p.proto === 58 && !p.laterFragment && ((t >= 133 && t <= 137) || (t >= 130 && t <= 132) || t === 143);
}

/** Does the protocol have ports the policy can match (TCP, UDP, SCTP)? */
export const hasPorts = (proto: number): boolean => proto === 6 || proto === 17 || proto === 132;
