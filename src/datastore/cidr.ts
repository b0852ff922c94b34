// IP addresses and CIDR blocks as numbers, for validating ipBlock and for evaluating it. Both
// families are handled as bigints (32 or 128 bits), so containment is plain arithmetic.
import { isIPv4, isIPv6 } from 'node:net';

export interface ParsedIp {
  readonly family: 4 | 6;
  readonly value: bigint;
}

export interface ParsedCidr {
  readonly family: 4 | 6;
  /** the network: the given address with its host bits cleared */
  readonly network: bigint;
  readonly prefix: number;
  /** true when the given address had host bits set (10.0.0.1/8): accepted, as the API server does */
  readonly hostBitsSet: boolean;
}

function parseV4(s: string): bigint {
  return s.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
}

function parseV6(s: string): bigint {
  let text = s;
  // an embedded IPv4 tail (::ffff:1.2.3.4) becomes two groups
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const v4 = parseV4(tail);
    text = `${text.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const groups = (x: string) => (x === '' ? [] : x.split(':'));
  const left = groups(head);
  const right = rest === undefined ? [] : groups(rest);
  const all = rest === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return all.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

/** An address, or undefined when `s` is not an IPv4 or IPv6 address. */
export function parseIp(s: string): ParsedIp | undefined {
  if (s.includes('%')) return undefined; // a zone (fe80::1%eth0) names no address of a pod or a block
  if (isIPv4(s)) return { family: 4, value: parseV4(s) };
  if (isIPv6(s)) return { family: 6, value: parseV6(s) };
  return undefined;
}

/** "a.b.c.d/n" or "x::/n", or undefined when malformed (prefix missing, out of range, or with
 * leading zeros or a sign). */
export function parseCidr(s: string): ParsedCidr | undefined {
  const slash = s.indexOf('/');
  if (slash < 0) return undefined;
  const ip = parseIp(s.slice(0, slash));
  const len = s.slice(slash + 1);
  if (!ip || !/^(0|[1-9][0-9]{0,2})$/.test(len)) return undefined;
  const bits = ip.family === 4 ? 32 : 128;
  const prefix = Number(len);
  if (prefix > bits) return undefined;
  const hostMask = (1n << BigInt(bits - prefix)) - 1n;
  return { family: ip.family, network: ip.value & ~hostMask, prefix, hostBitsSet: (ip.value & hostMask) !== 0n };
}

export function cidrContainsIp(cidr: ParsedCidr, ip: ParsedIp): boolean {
  if (cidr.family !== ip.family) return false;
  const bits = cidr.family === 4 ? 32 : 128;
  return (ip.value >> BigInt(bits - cidr.prefix)) === (cidr.network >> BigInt(bits - cidr.prefix));
}

/** `inner` lies inside `outer` and is smaller (a strict subset). */
export function cidrStrictlyInside(inner: ParsedCidr, outer: ParsedCidr): boolean {
  return inner.family === outer.family && inner.prefix > outer.prefix
    && cidrContainsIp(outer, { family: inner.family, value: inner.network });
}
