import test from 'node:test';
import assert from 'node:assert/strict';
import { FilterError, buildWhere, checkGroupBy, normalizeCidr, normalizeIp } from '../../src/store/sql.js';
import { decodeCursor, encodeCursor } from '../../src/store/cursor.js';
import type { FlowFilter } from '../../src/store/filter.js';
import { INJECTIONS, injectedFilters } from './fixtures.js';

test('an empty filter is TRUE with no parameters', () => {
  assert.deepEqual(buildWhere({}), { sql: '1', params: {} });
});

test('values become parameters; only our column names and operators are SQL text', () => {
  const w = buildWhere({
    either: { namespace: ['api'], labels: [{ key: 'app', op: '=', value: 'orders' }] },
    src: { pod: ['web/frontend', 'debug'], ip: ['10.0.0.1'], cidr: ['10.0.0.0/8', 'fd00::/64'] },
    dst: { labels: [{ key: 'tier', op: '!=', value: 'db' }, { key: 'x', op: 'exists' }, { key: 'y', op: '!exists' }] },
    port: [8080], protocol: [6, 17], verdict: ['denied'], policy: ['api/allow'], since: 1000, until: 2000,
  });
  // either: the same conditions on one side or on the other (Hubble's model)
  assert.match(w.sql, /^\(\(src_namespace IN \{p0:Array\(String\)\} AND \(mapContains\(src_labels, \{p1:String\}\) AND src_labels\[\{p1:String\}\] = \{p2:String\}\)\) OR \(dst_namespace IN \{p3:Array\(String\)\}/);
  assert.match(w.sql, /\(src_pod = \{p\d+:String\} OR \(src_namespace = \{p\d+:String\} AND src_pod = \{p\d+:String\}\)\)|\(\(src_namespace = \{p\d+:String\} AND src_pod = \{p\d+:String\}\) OR src_pod = \{p\d+:String\}\)/);
  assert.match(w.sql, /\(src_ip IN \{p\d+:Array\(IPv6\)\} OR isIPAddressInRange\(toString\(src_ip\), \{p\d+:String\}\) OR isIPAddressInRange/);
  assert.match(w.sql, /NOT \(mapContains\(dst_labels, \{p\d+:String\}\) AND dst_labels\[\{p\d+:String\}\] = \{p\d+:String\}\)/);
  assert.match(w.sql, /\(src_port IN \{(p\d+):Array\(UInt16\)\} OR dst_port IN \{\1:Array\(UInt16\)\}\)/);
  assert.match(w.sql, /multiSearchAny\(policy, \{(p\d+):Array\(String\)\}\) OR multiSearchAny\(egress_policy, \{\1/);
  assert.match(w.sql, /ts >= fromUnixTimestamp64Milli\(\{p\d+:Int64\}, 'UTC'\)/);
  assert.match(w.sql, /ts < fromUnixTimestamp64Milli/);
  const values = Object.values(w.params);
  assert.ok(values.some((v) => Array.isArray(v) && v[0] === '::ffff:10.0.0.1'), 'IPv4 is stored IPv4-mapped');
  assert.ok(values.includes('::ffff:10.0.0.0/104'), 'IPv4 prefixes become mapped prefixes');
  assert.ok(values.includes('web') && values.includes('frontend') && values.includes('debug'));
  // nothing but placeholders, column names, keywords and our own literals
  const literals = w.sql.replace(/\{p\d+:[A-Za-z0-9()]+\}/g, '').match(/'[^']*'/g);
  assert.deepEqual([...new Set(literals)], ["'UTC'"]);
});

test('SQL-injection attempts in every string field stay parameter values', () => {
  for (const s of INJECTIONS) {
    for (const f of injectedFilters(s)) {
      const w = buildWhere(f);
      assert.ok(!w.sql.includes(s), `${JSON.stringify(f)} leaked into SQL: ${w.sql}`);
      assert.ok(!/DROP|SELECT|OR 1=1|'1'='1/.test(w.sql), w.sql);
      const flat = JSON.stringify(Object.values(w.params));
      assert.ok(flat.includes(JSON.stringify(s).slice(1, -1)), `${s} is not among the parameters`);
    }
  }
});

test('values with a syntax are checked and the error names the field and quotes the value', () => {
  const bad: Array<[FlowFilter, RegExp]> = [
    [{ src: { ip: ["10.0.0.1' OR 1=1"] } }, /^src\.ip\[0\]: "10\.0\.0\.1' OR 1=1" is not an IPv4 or IPv6 address$/],
    [{ either: { cidr: ['10.0.0.0/8', '10.0.0.0/33'] } }, /^either\.cidr\[1\]: "10\.0\.0\.0\/33" is not a CIDR prefix/],
    [{ dst: { cidr: ['fd00::/64; DROP TABLE flows'] } }, /^dst\.cidr\[0\]/],
    [{ port: [80, 70000] }, /^port\[1\]: 70000 is not a whole number from 0 to 65535$/],
    [{ port: ['80 OR 1=1' as unknown as number] }, /^port\[0\]/],
    [{ protocol: [256] }, /^protocol\[0\]/],
    [{ verdict: ["denied' OR 1=1" as 'denied'] }, /^verdict\[0\]: .* is not allowed, denied or audit$/],
    [{ policy: [''] }, /^policy\[0\]: is empty$/],
    [{ since: '2026-01-01' as unknown as number }, /^since: /],
    [{ until: 1.5 }, /^until: /],
    [{ src: { labels: [{ key: '', op: 'exists' }] } }, /^src\.labels\[0\]/],
    [{ src: { labels: [{ key: 'a', op: '~' as '=', value: 'b' }] } }, /^src\.labels\[0\]: operator "~"/],
    [{ src: { namespace: [1 as unknown as string] } }, /^src\.namespace\[0\]: 1 is not a string$/],
  ];
  for (const [f, re] of bad) {
    assert.throws(() => buildWhere(f), (err: unknown) => err instanceof FilterError && re.test(err.message), JSON.stringify(f));
  }
});

test('addresses and prefixes are normalized into the store\'s IPv6 space', () => {
  assert.equal(normalizeIp('ip', '10.1.2.3'), '::ffff:10.1.2.3');
  assert.equal(normalizeIp('ip', 'FD00::1'), 'fd00::1');
  assert.equal(normalizeCidr('cidr', '10.0.0.0/8'), '::ffff:10.0.0.0/104');
  assert.equal(normalizeCidr('cidr', '0.0.0.0/0'), '::ffff:0.0.0.0/96');
  assert.equal(normalizeCidr('cidr', 'fd00:10:244::/64'), 'fd00:10:244::/64');
  assert.throws(() => normalizeCidr('cidr', '10.0.0.0'), FilterError);
  assert.throws(() => normalizeCidr('cidr', 'fd00::/129'), FilterError);
  assert.throws(() => normalizeIp('ip', 'fe80::1%eth0'), FilterError);
  assert.throws(() => normalizeCidr('cidr', 'fe80::%eth0/64'), FilterError);
});

test('group_by takes only allow-listed columns', () => {
  assert.deepEqual(checkGroupBy(['src_namespace', 'dst_pod', 'verdict']), ['src_namespace', 'dst_pod', 'verdict']);
  assert.throws(() => checkGroupBy(['src_namespace; DROP TABLE flows']), /group_by\[0\]: .* is not one of/);
  assert.throws(() => checkGroupBy(['src_labels']), /group_by\[0\]/);
  assert.throws(() => checkGroupBy(['verdict', 'verdict']), /given twice/);
  assert.throws(() => checkGroupBy([]), /group_by/);
});

test('cursors round-trip and refuse anything else', () => {
  const c = encodeCursor({ ts: 1795683600123, id: '18446744073709551615' });
  assert.deepEqual(decodeCursor(c), { ts: 1795683600123, id: '18446744073709551615' });
  for (const bad of ['', 'abc', Buffer.from("1.2' OR 1=1").toString('base64url'), Buffer.from('1.18446744073709551616').toString('base64url')]) {
    assert.throws(() => decodeCursor(bad), (e: unknown) => e instanceof FilterError && e.field === 'cursor');
  }
});
