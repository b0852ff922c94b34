import test from 'node:test';
import assert from 'node:assert/strict';
import { cidrContainsIp, cidrStrictlyInside, parseCidr, parseIp } from '../../src/datastore/cidr.js';

test('addresses of both families, IPv6 in every spelling', () => {
  assert.deepEqual(parseIp('10.1.2.3'), { family: 4, value: 0x0a010203n });
  assert.equal(parseIp('fd00::1')!.value, (0xfd00n << 112n) | 1n);
  assert.equal(parseIp('fd00:0:0:0:0:0:0:1')!.value, parseIp('fd00::1')!.value);
  assert.equal(parseIp('::')!.value, 0n);
  assert.equal(parseIp('::ffff:10.1.2.3')!.value, (0xffffn << 32n) | 0x0a010203n);
  assert.equal(parseIp('1::')!.value, 1n << 112n);
  for (const bad of ['10.1.2', 'fe80::1%eth0', '10.0.0.256', 'x', '']) assert.equal(parseIp(bad), undefined, bad);
});

test('CIDRs: the network is computed, host bits are noted; containment is by prefix', () => {
  assert.deepEqual(parseCidr('10.0.0.1/8'), { family: 4, network: 0x0a000000n, prefix: 8, hostBitsSet: true });
  assert.equal(parseCidr('10.0.0.0/8')!.hostBitsSet, false);
  assert.equal(parseCidr('0.0.0.0/0')!.prefix, 0);
  for (const bad of ['10.0.0.0', '10.0.0.0/33', '10.0.0.0/08', '10.0.0.0/-1', 'fd00::/129', '/8']) assert.equal(parseCidr(bad), undefined, bad);
  const net = parseCidr('10.1.0.0/16')!;
  assert.equal(cidrContainsIp(net, parseIp('10.1.255.255')!), true);
  assert.equal(cidrContainsIp(net, parseIp('10.2.0.0')!), false);
  assert.equal(cidrContainsIp(parseCidr('0.0.0.0/0')!, parseIp('1.2.3.4')!), true);
  assert.equal(cidrContainsIp(parseCidr('::/0')!, parseIp('1.2.3.4')!), false, 'families never mix');
  assert.equal(cidrStrictlyInside(parseCidr('10.1.2.0/24')!, net), true);
  assert.equal(cidrStrictlyInside(parseCidr('10.1.0.0/16')!, net), false, 'equal is not strictly inside');
  assert.equal(cidrStrictlyInside(parseCidr('10.0.0.0/8')!, net), false);
  assert.equal(cidrStrictlyInside(parseCidr('fd00:1::/32')!, parseCidr('fd00::/16')!), true);
});
