// Hostile frames for test/datapath/hostile.test.ts: well-formed packets built from a drawn tuple
// (test/helpers/host-policy-gen.ts) with the features parsers get wrong (VLAN tags, IPv4 options,
// IPv6 extension chains, fragments first/middle/last, ICMP errors carrying inner headers, zero-length
// payloads, headers past offset 1024), then mutated: truncated at and inside every header, length
// fields flipped (IPv4 total length and IHL, IPv6 payload length, TCP data offset, UDP length,
// extension header lengths), fragment fields, EtherTypes and random bytes rewritten, link padding
// appended; and frames of random bytes. Each frame carries the names of what was done to it, so a
// run can report its mix.
import { ipToKey16 } from '../../src/datapath/abi.js';
import type { Gen } from './policy-gen.js';
import type { DrawnPacket } from './host-policy-gen.js';

export interface HostileFrame {
  readonly frame: Buffer;
  /** what was built and done, e.g. ["v6", "ext-chain", "icmp-error", "truncate-boundary"] */
  readonly classes: readonly string[];
}

/** BPF_PROG_TEST_RUN refuses data larger than a page less its head- and tailroom. */
export const MAX_FRAME = 3400;

const MACS = Buffer.from([0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02]);

const u16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n & 0xffff);
  return b;
};

const randomBytes = (g: Gen, n: number): Buffer => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = g.int(0, 255);
  return b;
};

/** Offsets a frame is made of, for mutations that aim at one header. */
interface Layout {
  l3: number;
  /** IPv4: header incl. options; IPv6: after the fixed header */
  l3HeaderEnd: number;
  /** IPv6 extension headers' offsets */
  ext: number[];
  l4: number;
  l4Proto: number;
  bounds: number[];
}

function payloadLen(g: Gen, classes: string[]): number {
  const r = g.int(0, 9);
  if (r <= 2) {
    classes.push('zero-payload');
    return 0;
  }
  if (r <= 7) return g.int(1, 120);
  return g.int(200, 1400);
}

/** The inner packet of an ICMP error: an IP header and 8 bytes of its L4 (reversed tuple), cut
 * short now and then. */
function innerPacket(g: Gen, p: DrawnPacket, v6: boolean, classes: string[]): Buffer {
  const proto = p.proto === 1 || p.proto === 58 ? (v6 ? 58 : 1) : p.proto;
  const l4 = Buffer.alloc(8);
  l4.writeUInt16BE(p.dstPort ?? g.int(1, 65535), 0);
  l4.writeUInt16BE(p.srcPort ?? g.int(1, 65535), 2);
  let ip: Buffer;
  if (v6) {
    ip = Buffer.alloc(40);
    ip.writeUInt32BE(0x60000000, 0);
    ip.writeUInt16BE(g.int(8, 1400), 4);
    ip[6] = proto;
    ip[7] = 64;
    ipToKey16(p.dst).copy(ip, 8);
    ipToKey16(p.src).copy(ip, 24);
  } else {
    ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(g.int(28, 1400), 2);
    ip[8] = 64;
    ip[9] = proto;
    ipToKey16(p.dst).copy(ip, 12, 12, 16);
    ipToKey16(p.src).copy(ip, 16, 12, 16);
  }
  const inner = Buffer.concat([ip, l4]);
  if (g.chance(0.3)) {
    classes.push('icmp-error-inner-truncated');
    return inner.subarray(0, g.int(0, inner.length - 1));
  }
  return inner;
}

/** The L4 header (and payload) of a drawn packet, with its IP protocol number. */
function l4Of(g: Gen, p: DrawnPacket, v6: boolean, classes: string[]): { proto: number; bytes: Buffer } {
  // now and then a protocol the draw does not make: ICMPv6 carried in IPv4 (NDP types included),
  // ICMP in IPv6, no-next-header, ESP, the mobility header
  let proto = p.proto;
  if (g.chance(0.05)) {
    proto = g.pick([v6 ? 1 : 58, v6 ? 1 : 58, 59, 50, 135]);
    classes.push(`odd-proto-${proto}`);
  }
  const payload = (): Buffer => Buffer.alloc(payloadLen(g, classes), 0x61);
  switch (proto) {
    case 6: {
      const opts = g.chance(0.15) ? g.int(1, 10) * 4 : 0;
      if (opts) classes.push('tcp-options');
      const h = Buffer.alloc(20 + opts, 1);
      h.writeUInt16BE(p.srcPort ?? g.int(1, 65535), 0);
      h.writeUInt16BE(p.dstPort ?? g.int(1, 65535), 2);
      h.writeUInt32BE(g.int(0, 0xffffffff) >>> 0, 4);
      h.writeUInt32BE(0, 8);
      h[12] = ((20 + opts) / 4) << 4;
      h[13] = g.pick([0x02, 0x02, 0x10, 0x12, 0x11, 0x04, 0x14, 0x18, g.int(0, 255)]);
      h.writeUInt16BE(65535, 14);
      h.writeUInt32BE(0, 16);
      return { proto, bytes: Buffer.concat([h, payload()]) };
    }
    case 17: {
      const h = Buffer.alloc(8);
      h.writeUInt16BE(p.srcPort ?? g.int(1, 65535), 0);
      h.writeUInt16BE(p.dstPort ?? g.int(1, 65535), 2);
      const body = payload();
      h.writeUInt16BE(8 + body.length, 4);
      return { proto, bytes: Buffer.concat([h, body]) };
    }
    case 132: {
      const h = Buffer.alloc(12);
      h.writeUInt16BE(p.srcPort ?? g.int(1, 65535), 0);
      h.writeUInt16BE(p.dstPort ?? g.int(1, 65535), 2);
      h.writeUInt32BE(g.int(0, 0xffffffff) >>> 0, 4);
      return { proto, bytes: Buffer.concat([h, payload()]) };
    }
    case 1:
    case 58: {
      const h = Buffer.alloc(8);
      const r = g.int(0, 9);
      let type: number;
      let body: Buffer;
      if (r <= 3) {
        type = proto === 1 ? g.pick([8, 0]) : g.pick([128, 129]);
        h.writeUInt16BE(g.int(0, 65535), 4);
        body = payload();
        classes.push('icmp-echo');
      } else if (r <= 7) {
        type = proto === 1 ? g.pick([3, 3, 11, 12, 4, 5]) : g.pick([1, 1, 2, 3, 4]);
        // the error's inner packet is of the outer's family, whatever the ICMP flavour says
        body = innerPacket(g, p, v6, classes);
        classes.push('icmp-error');
      } else if (r === 8 && proto === 58) {
        type = g.pick([130, 131, 132, 133, 134, 135, 136, 137, 143]);
        body = payload();
        classes.push(v6 ? 'ndp' : 'ndp-in-ipv4');
      } else {
        type = g.int(0, 255);
        body = payload();
        classes.push('icmp-other');
      }
      h[0] = type;
      h[1] = g.int(0, 4);
      return { proto, bytes: Buffer.concat([h, body]) };
    }
    default:
      return { proto, bytes: Buffer.concat([randomBytes(g, g.int(0, 24)), payload()]) };
  }
}

type FragKind = 'none' | 'first' | 'middle' | 'last';

function fragKind(g: Gen, classes: string[]): FragKind {
  if (!g.chance(0.15)) return 'none';
  const k = g.pick<FragKind>(['first', 'middle', 'last']);
  classes.push(`fragment-${k}`);
  return k;
}

function ipv4Of(g: Gen, p: DrawnPacket, classes: string[]): { bytes: Buffer; layout: Omit<Layout, 'bounds'> & { bounds: number[] } } {
  const frag = fragKind(g, classes);
  let opts: Buffer = Buffer.alloc(0);
  if (g.chance(0.25)) {
    const words = g.int(1, 10); // IHL 6..15
    opts = g.chance(0.5) ? randomBytes(g, words * 4) : Buffer.alloc(words * 4, g.pick([0, 1]));
    classes.push('ipv4-options');
  }
  const l4 = frag === 'middle' || frag === 'last' ? { proto: p.proto, bytes: randomBytes(g, g.int(0, 200)) } : l4Of(g, p, false, classes);
  const hlen = 20 + opts.length;
  const h = Buffer.alloc(hlen);
  h[0] = 0x40 | (hlen / 4);
  h.writeUInt16BE(hlen + l4.bytes.length, 2);
  h.writeUInt16BE(g.int(0, 65535), 4);
  const offset = frag === 'middle' || frag === 'last' ? g.int(1, 8191) : 0;
  h.writeUInt16BE(((frag === 'first' || frag === 'middle' ? 1 : 0) << 13) | offset, 6);
  h[8] = 64;
  h[9] = l4.proto;
  ipToKey16(p.src).copy(h, 12, 12, 16);
  ipToKey16(p.dst).copy(h, 16, 12, 16);
  opts.copy(h, 20);
  return { bytes: Buffer.concat([h, l4.bytes]), layout: { l3: 0, l3HeaderEnd: hlen, ext: [], l4: hlen, l4Proto: offset ? -1 : l4.proto, bounds: [20, hlen, hlen + 4, hlen + 8, hlen + 20] } };
}

function ipv6Of(g: Gen, p: DrawnPacket, classes: string[]): { bytes: Buffer; layout: Omit<Layout, 'bounds'> & { bounds: number[] } } {
  const frag = fragKind(g, classes);
  // the chain: random headers, one of them the fragment header when fragmented
  const types: number[] = [];
  if (g.chance(0.3) || frag !== 'none') {
    const n = g.chance(0.1) ? g.int(8, 10) : g.int(0, 4);
    for (let i = 0; i < n; i++) types.push(g.pick([0, 43, 60, 51, 60]));
    if (n >= 8) classes.push(`ext-chain-${n}`);
    else if (n > 0) classes.push('ext-chain');
  }
  if (frag !== 'none') types.splice(g.int(0, types.length), 0, 44);
  const later = frag === 'middle' || frag === 'last';
  const l4 = later ? { proto: p.proto, bytes: randomBytes(g, g.int(0, 200)) } : l4Of(g, p, true, classes);
  const chain: Buffer[] = [];
  const extOffsets: number[] = [];
  let at = 40;
  let big = false;
  for (let i = 0; i < types.length; i++) {
    const t = types[i]!;
    const next = i + 1 < types.length ? types[i + 1]! : l4.proto;
    let h: Buffer;
    if (t === 44) {
      h = Buffer.alloc(8);
      h[0] = next;
      const offset = later ? g.int(1, 8191) : 0;
      h.writeUInt16BE((offset << 3) | (frag === 'first' || frag === 'middle' ? 1 : 0), 2);
      h.writeUInt32BE(g.int(0, 0xffffffff) >>> 0, 4);
    } else {
      // now and then a long header, pushing the L4 header past offset 1024 (read through
      // bpf_skb_load_bytes rather than directly)
      const units = g.chance(0.05) ? g.int(60, 200) : g.int(0, 3);
      if (units >= 60) big = true;
      h = t === 51 ? Buffer.alloc((units + 3) * 4) : Buffer.alloc((units + 1) * 8);
      h[0] = next;
      h[1] = t === 51 ? units + 1 : units;
      if (t !== 43 && t !== 51) {
        h[2] = 1; // PadN over the rest
        h[3] = h.length - 4;
      }
    }
    extOffsets.push(at);
    at += h.length;
    chain.push(h);
  }
  if (big) classes.push('l4-past-1024');
  const body = Buffer.concat([...chain, l4.bytes]);
  const h = Buffer.alloc(40);
  h.writeUInt32BE(0x60000000 | g.int(0, 0xfffff), 0);
  h.writeUInt16BE(body.length, 4);
  h[6] = types.length ? types[0]! : l4.proto;
  h[7] = 64;
  ipToKey16(p.src).copy(h, 8);
  ipToKey16(p.dst).copy(h, 24);
  return {
    bytes: Buffer.concat([h, body]),
    layout: { l3: 0, l3HeaderEnd: 40, ext: extOffsets, l4: at, l4Proto: later ? -1 : l4.proto, bounds: [40, ...extOffsets, ...extOffsets.map((o) => o + 2), at, at + 4, at + 8, at + 20] },
  };
}

/** A well-formed frame for the drawn packet, with random features. */
function wellFormed(g: Gen, p: DrawnPacket, classes: string[]): { frame: Buffer; layout: Layout } {
  const v6 = p.src.includes(':');
  classes.push(v6 ? 'v6' : 'v4');
  const ip = v6 ? ipv6Of(g, p, classes) : ipv4Of(g, p, classes);
  let tags = 0;
  const r = g.int(0, 99);
  if (r < 8) tags = 1;
  else if (r < 12) tags = 2;
  else if (r < 14) tags = 3;
  if (tags) classes.push(`vlan-${tags}`);
  const parts: Buffer[] = [MACS];
  for (let i = 0; i < tags; i++) {
    // outer QinQ tags 802.1ad now and then; VLAN id 0 (priority tags) too
    parts.push(u16(i === 0 && tags > 1 && g.chance(0.5) ? 0x88a8 : 0x8100), u16(g.chance(0.3) ? 0 : g.int(1, 4094)));
  }
  parts.push(u16(v6 ? 0x86dd : 0x0800));
  const l2 = 14 + tags * 4;
  const frame = Buffer.concat([...parts, ip.bytes]);
  const shift = (o: number) => o + l2;
  const layout: Layout = {
    l3: l2,
    l3HeaderEnd: shift(ip.layout.l3HeaderEnd),
    ext: ip.layout.ext.map(shift),
    l4: shift(ip.layout.l4),
    l4Proto: ip.layout.l4Proto,
    bounds: [12, 14, ...Array.from({ length: tags }, (_, i) => 14 + 4 * (i + 1)), l2, ...ip.layout.bounds.map(shift)],
  };
  return { frame, layout };
}

const MUTATIONS = [
  'truncate-boundary', 'truncate-inside', 'ipv4-tot-len', 'ipv4-ihl', 'ip-version', 'ipv6-plen', 'tcp-doff', 'udp-len',
  'ext-len', 'frag-field', 'flip-bytes', 'link-padding', 'ethertype',
] as const;

function mutate(g: Gen, frame: Buffer, layout: Layout, v6: boolean, m: (typeof MUTATIONS)[number]): Buffer | undefined {
  const f = Buffer.from(frame);
  const { l3, l4 } = layout;
  const has = (off: number, n: number) => off + n <= f.length;
  switch (m) {
    case 'truncate-boundary': {
      const cuts = layout.bounds.filter((b) => b >= 14 && b < f.length);
      return cuts.length ? f.subarray(0, g.pick(cuts)) : undefined;
    }
    case 'truncate-inside':
      return f.length > 14 ? f.subarray(0, g.int(14, f.length - 1)) : undefined;
    case 'ipv4-tot-len': {
      if (v6 || !has(l3, 20)) return undefined;
      const ihl = (f[l3]! & 15) * 4;
      const real = f.readUInt16BE(l3 + 2);
      f.writeUInt16BE(g.pick([0, ihl - 1, ihl, ihl + 1, ihl + 4, ihl + 8, real - 1, real + 1, real + g.int(2, 100), g.int(0, 65535)]) & 0xffff, l3 + 2);
      return f;
    }
    case 'ipv4-ihl':
      if (v6 || !has(l3, 1)) return undefined;
      f[l3] = (f[l3]! & 0xf0) | g.int(0, 15);
      return f;
    case 'ip-version':
      if (!has(l3, 1)) return undefined;
      f[l3] = (g.int(0, 15) << 4) | (f[l3]! & 15);
      return f;
    case 'ipv6-plen': {
      if (!v6 || !has(l3, 40)) return undefined;
      const real = f.readUInt16BE(l3 + 4);
      f.writeUInt16BE(g.pick([0, 0, real - 1, real + 1, g.int(1, 8), real - g.int(1, 40), g.int(0, 65535)]) & 0xffff, l3 + 4);
      return f;
    }
    case 'tcp-doff':
      if (layout.l4Proto !== 6 || !has(l4, 13)) return undefined;
      f[l4 + 12] = (g.int(0, 15) << 4) | (f[l4 + 12]! & 15);
      return f;
    case 'udp-len':
      if (layout.l4Proto !== 17 || !has(l4, 6)) return undefined;
      f.writeUInt16BE(g.pick([0, 7, 8, g.int(0, 65535)]), l4 + 4);
      return f;
    case 'ext-len': {
      const ext = layout.ext.filter((o) => has(o, 2));
      if (!ext.length) return undefined;
      const o = g.pick(ext);
      if (g.chance(0.5)) f[o + 1] = g.int(0, 255);
      else f[o] = g.pick([0, 43, 44, 51, 60, 6, 17, 59, g.int(0, 255)]);
      return f;
    }
    case 'frag-field': {
      if (!v6) {
        if (!has(l3, 8)) return undefined;
        f.writeUInt16BE(g.pick([0x2000, 0x0001, 0x1fff, 0x4000, g.int(0, 65535)]), l3 + 6);
        return f;
      }
      // bytes 2-3 of an extension header: the fragment header's offset and M flag, or options
      const ext = layout.ext.filter((o) => has(o, 4));
      if (!ext.length) return undefined;
      f.writeUInt16BE(g.pick([0x0001, 0x0008, 0xfff9, g.int(0, 65535)]), g.pick(ext) + 2);
      return f;
    }
    case 'flip-bytes': {
      if (f.length <= 12) return undefined;
      for (let i = g.int(1, 4); i > 0; i--) f[g.int(12, f.length - 1)] = g.int(0, 255);
      return f;
    }
    case 'link-padding':
      return Buffer.concat([f, randomBytes(g, g.int(1, 60))]);
    case 'ethertype':
      f.writeUInt16BE(g.pick([0x0806, 0x88cc, 0x8100, 0x88a8, 0x86dd, 0x0800, g.int(0, 65535)]), 12);
      return f;
  }
}

/** Random bytes, the EtherType mostly an IP one (else nearly every frame would be non-IP). */
function randomFrame(g: Gen): Buffer {
  const f = randomBytes(g, g.int(14, 300));
  const r = g.int(0, 9);
  if (r <= 3) f.writeUInt16BE(0x0800, 12);
  else if (r <= 6) f.writeUInt16BE(0x86dd, 12);
  else if (r <= 7) f.writeUInt16BE(0x8100, 12);
  if (r <= 3 && g.chance(0.7)) f[14] = 0x40 | (f[14]! & 15); // past the version check more often
  if ((r === 5 || r === 6) && g.chance(0.7)) f[14] = 0x60 | (f[14]! & 15);
  return f;
}

export function hostileFrame(g: Gen, p: DrawnPacket): HostileFrame {
  const classes: string[] = [];
  if (g.chance(0.08)) return { frame: randomFrame(g), classes: ['random-bytes'] };
  const { frame, layout } = wellFormed(g, p, classes);
  let f = frame;
  const n = g.chance(0.35) ? 0 : g.int(1, 3);
  for (let i = 0; i < n; i++) {
    const m = g.pick(MUTATIONS);
    const out = mutate(g, f, layout, p.src.includes(':'), m);
    if (out) {
      f = out;
      classes.push(m);
    }
  }
  if (f.length > MAX_FRAME) {
    f = f.subarray(0, MAX_FRAME);
    classes.push('capped');
  }
  return { frame: f, classes };
}
