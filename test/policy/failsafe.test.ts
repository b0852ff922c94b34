// Failsafe ports: the defaults, the config string, disabling, and the CLI's "a policy would
// close a failsafe port" check.
import test from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_FAILSAFES, FAILSAFES_DISABLED, FailsafeConfigError, failsafesFrom, matchFailsafe, parseFailsafePorts, shadowedFailsafes,
} from '../../src/policy/failsafe.js';
import type { GlobalNetworkPolicy, GlobalRule } from '../../src/datastore/host-objects.js';

const list = (ports: readonly { protocol: string; port: number }[]) => ports.map((p) => `${p.protocol.toLowerCase()}:${p.port}`).join(',');

test('defaults: inbound TCP 22, UDP 68, TCP 179, 2379, 2380, 5473, 6443, 6666, 6667; outbound UDP 53, UDP 67 and the same TCP ports', () => {
  assert.equal(DEFAULT_FAILSAFES.enabled, true);
  assert.equal(list(DEFAULT_FAILSAFES.inbound), 'tcp:22,udp:68,tcp:179,tcp:2379,tcp:2380,tcp:5473,tcp:6443,tcp:6666,tcp:6667');
  assert.equal(list(DEFAULT_FAILSAFES.outbound), 'udp:53,udp:67,tcp:179,tcp:2379,tcp:2380,tcp:5473,tcp:6443,tcp:6666,tcp:6667');
});

test('the config string: protocol:port, case-insensitive, spaces allowed, duplicates dropped, empty = none', () => {
  assert.deepEqual(parseFailsafePorts(' TCP:22, udp:68 ,sctp:9,tcp:22', 'f'), [
    { protocol: 'TCP', port: 22 }, { protocol: 'UDP', port: 68 }, { protocol: 'SCTP', port: 9 },
  ]);
  assert.deepEqual(parseFailsafePorts('', 'f'), []);
  assert.deepEqual(parseFailsafePorts('  ', 'f'), []);
});

test('config errors name the setting, the entry and the reason', () => {
  const bad = (text: string, message: string) => assert.throws(() => parseFailsafePorts(text, 'failsafeInbound'), (e: unknown) => {
    assert.ok(e instanceof FailsafeConfigError);
    assert.equal(e.message, message);
    return true;
  });
  bad('tcp:22,tcp:99999', 'failsafeInbound: entry 2 "tcp:99999": port must be 1-65535');
  bad('tcp:0', 'failsafeInbound: entry 1 "tcp:0": port must be 1-65535');
  bad('tcp:022', 'failsafeInbound: entry 1 "tcp:022": port must be 1-65535');
  bad('icmp:8', 'failsafeInbound: entry 1 "icmp:8": protocol must be tcp, udp or sctp');
  bad('22', 'failsafeInbound: entry 1 "22": must be protocol:port, e.g. "tcp:22" (comma-separated)');
  bad('tcp:22,', 'failsafeInbound: entry 2 "": must be protocol:port, e.g. "tcp:22" (comma-separated)');
  bad('tcp:22;udp:68', 'failsafeInbound: entry 1 "tcp:22;udp:68": must be protocol:port, e.g. "tcp:22" (comma-separated)');
});

test('settings: defaults, custom lists, and disabled (which wins over any list)', () => {
  assert.deepEqual(failsafesFrom(), DEFAULT_FAILSAFES);
  const custom = failsafesFrom({ inbound: 'tcp:2222' });
  assert.deepEqual(custom.inbound, [{ protocol: 'TCP', port: 2222 }]);
  assert.deepEqual(custom.outbound, DEFAULT_FAILSAFES.outbound);
  assert.throws(() => failsafesFrom({ outbound: 'udp:x' }), /failsafeOutbound: entry 1 "udp:x"/);
  assert.deepEqual(failsafesFrom({ disabled: true, inbound: 'tcp:22' }), FAILSAFES_DISABLED);
  assert.equal(FAILSAFES_DISABLED.enabled, false);
});

test('matching: direction, protocol (by name or number) and destination port', () => {
  assert.deepEqual(matchFailsafe(DEFAULT_FAILSAFES, 'Ingress', 'TCP', 22), { protocol: 'TCP', port: 22 });
  assert.deepEqual(matchFailsafe(DEFAULT_FAILSAFES, 'Ingress', 6, 22), { protocol: 'TCP', port: 22 });
  assert.equal(matchFailsafe(DEFAULT_FAILSAFES, 'Ingress', 'UDP', 22), undefined);
  assert.equal(matchFailsafe(DEFAULT_FAILSAFES, 'Egress', 'TCP', 22), undefined, 'SSH is an inbound failsafe only');
  assert.deepEqual(matchFailsafe(DEFAULT_FAILSAFES, 'Egress', 'UDP', 53), { protocol: 'UDP', port: 53 });
  assert.equal(matchFailsafe(DEFAULT_FAILSAFES, 'Ingress', 'UDP', 53), undefined);
  assert.equal(matchFailsafe(DEFAULT_FAILSAFES, 'Ingress', 'ICMP', undefined), undefined);
  assert.equal(matchFailsafe(FAILSAFES_DISABLED, 'Ingress', 'TCP', 22), undefined);
});

test('shadowedFailsafes: the Deny rules a policy has over failsafe ports, so the CLI can say failsafes still win', () => {
  const entity = (ports: GlobalRule['destination']['ports'] = [], notPorts: GlobalRule['destination']['notPorts'] = []) => ({ nets: [], notNets: [], ports, notPorts });
  const rule = (r: Partial<GlobalRule>): GlobalRule => ({ action: 'Deny', source: entity(), destination: entity(), ...r });
  const policy: GlobalNetworkPolicy = {
    kind: 'GlobalNetworkPolicy', name: 'p', annotations: {}, selector: { matchLabels: {}, matchExpressions: [] },
    types: ['Ingress', 'Egress'], applyOnForward: false,
    ingress: [
      rule({ protocol: 'TCP', destination: entity([{ from: 20, to: 23 }]) }),
      rule({ action: 'Allow', protocol: 'TCP' }),
      rule({ protocol: 'UDP', destination: entity([], [{ from: 68, to: 68 }]) }),
      rule({ protocol: 'ICMP' }),
    ],
    egress: [rule({})],
  };
  const got = shadowedFailsafes(policy, DEFAULT_FAILSAFES).map((s) => `${s.direction}[${s.index}] ${s.failsafe.protocol}/${s.failsafe.port}`);
  assert.deepEqual(got.filter((s) => s.startsWith('Ingress')), ['Ingress[0] TCP/22']);
  assert.equal(got.filter((s) => s.startsWith('Egress[0]')).length, DEFAULT_FAILSAFES.outbound.length, 'a Deny of everything covers every outbound failsafe');
  assert.deepEqual(shadowedFailsafes(policy, FAILSAFES_DISABLED), []);
});
