import test from 'node:test';
import assert from 'node:assert/strict';
import {
  FILTER_PARAMETERS, ParamError, parseDuration, parseFlowQuery, parseLabelMatch, parseRfc3339, parseStreamFilter, parseSummaryQuery,
} from '../../src/api/params.js';
import { DEFAULT_LIMIT, MAX_LIMIT } from '../../src/store/filter.js';

const NOW = Date.UTC(2026, 0, 2, 12, 0, 0);
const q = (s: string) => parseFlowQuery(new URLSearchParams(s), { now: () => NOW });

/** The ParamError a query string gets; fails if it parses. */
function refused(s: string, parse: (p: URLSearchParams) => unknown = (p) => parseFlowQuery(p, { now: () => NOW })): ParamError {
  try {
    parse(new URLSearchParams(s));
  } catch (err) {
    assert.ok(err instanceof ParamError, `${s}: ${String(err)}`);
    return err;
  }
  assert.fail(`${s} was accepted`);
}

test('no parameters: an empty filter and the default limit', () => {
  assert.deepEqual(q(''), { filter: {}, limit: DEFAULT_LIMIT });
});

test('side-less, src_ and dst_ filters land on their side; repeated values are alternatives', () => {
  const r = q('namespace=api&namespace=web&pod=api/orders&pod=frontend&label=app=x&label=tier!=db&label=canary&label=!legacy'
    + '&ip=10.0.0.1&ip=fd00::1&cidr=10.0.0.0/8&src_namespace=ops&src_label=example.com/team=sre&dst_pod=payments&dst_cidr=fd00::/64&dst_ip=::ffff:10.1.2.3');
  assert.deepEqual(r.filter, {
    either: {
      namespace: ['api', 'web'], pod: ['api/orders', 'frontend'],
      labels: [{ key: 'app', op: '=', value: 'x' }, { key: 'tier', op: '!=', value: 'db' }, { key: 'canary', op: 'exists' }, { key: 'legacy', op: '!exists' }],
      ip: ['10.0.0.1', 'fd00::1'], cidr: ['10.0.0.0/8'],
    },
    src: { namespace: ['ops'], labels: [{ key: 'example.com/team', op: '=', value: 'sre' }] },
    dst: { pod: ['payments'], ip: ['::ffff:10.1.2.3'], cidr: ['fd00::/64'] },
  });
});

test('port, protocol (names and numbers), verdict, policy, limit and cursor', () => {
  const r = q('port=8080&port=0&port=65535&protocol=tcp&protocol=UDP&protocol=sctp&protocol=icmp&protocol=icmpv6&protocol=47'
    + '&verdict=denied&verdict=audit&policy=api/allow-frontend&policy=gnp/deny-ssh ingress[0] Deny&limit=10000&cursor=MTIzLjQ1Ng');
  assert.deepEqual(r, {
    filter: { port: [8080, 0, 65535], protocol: [6, 17, 132, 1, 58, 47], verdict: ['denied', 'audit'], policy: ['api/allow-frontend', 'gnp/deny-ssh ingress[0] Deny'] },
    limit: MAX_LIMIT, cursor: 'MTIzLjQ1Ng',
  });
});

test('since/until: RFC 3339 with zones and fractions, or durations before now', () => {
  assert.equal(q('since=2026-01-02T10:00:00Z').filter.since, Date.UTC(2026, 0, 2, 10));
  assert.equal(q('since=2026-01-02T10:00:00.250%2B02:00').filter.since, Date.UTC(2026, 0, 2, 8, 0, 0, 250));
  // an unencoded `+` arrives as a space
  assert.equal(q('since=2026-01-02T10:00:00.250+02:00').filter.since, Date.UTC(2026, 0, 2, 8, 0, 0, 250));
  assert.equal(q('since=2026-01-02 10:00:00Z').filter.since, Date.UTC(2026, 0, 2, 10));
  assert.equal(q('since=2026-01-02t10:00:00.123456789-01:30').filter.since, Date.UTC(2026, 0, 2, 11, 30, 0, 123));
  assert.equal(q('since=15m').filter.since, NOW - 15 * 60_000);
  assert.equal(q('since=2h').filter.since, NOW - 2 * 3_600_000);
  assert.equal(q('since=7d&until=1h30m').filter.since, NOW - 7 * 86_400_000);
  assert.equal(q('since=7d&until=1h30m').filter.until, NOW - 90 * 60_000);
  assert.equal(q('since=500ms').filter.since, NOW - 500);
  assert.equal(q('since=2w').filter.since, NOW - 14 * 86_400_000);
  assert.equal(parseDuration('1x'), undefined);
  assert.equal(parseDuration('1000000000d'), undefined);
  assert.equal(parseRfc3339('2024-02-29T00:00:00Z'), Date.UTC(2024, 1, 29));
  for (const bad of ['2026-02-29T00:00:00Z', '2026-02-30T00:00:00Z', '2026-13-01T00:00:00Z', '2026-01-01T24:00:00Z', '2026-01-01T00:60:00Z',
    '2026-01-01T00:00:60Z', '2026-01-01', '2026-01-01T00:00:00', '2026-01-01T00:00:00+25:00', '1767355200000', 'yesterday', '-15m', '15', '15 m', 'now']) {
    const e = refused(`since=${encodeURIComponent(bad)}`);
    assert.equal(e.parameter, 'since', bad);
    assert.match(e.message, /^since: ".*" is not a time \(RFC 3339/);
  }
  const e = refused('since=1h&until=2h');
  assert.equal(e.parameter, 'until');
  assert.match(e.message, /is not after since/);
  assert.equal(refused('since=1h&until=1h').parameter, 'until');
});

test('limit: whole numbers 1..MAX_LIMIT', () => {
  assert.equal(q('limit=1').limit, 1);
  for (const [bad, why] of [['0', /0 is out of range \(1-10000\)/], ['10001', /10001 is out of range/], ['-1', /is not a whole number/], ['1.5', /is not a whole number/],
    ['1e3', /is not a whole number/], ['abc', /is not a whole number/], ['99999999999999', /is not a whole number/]] as const) {
    const e = refused(`limit=${encodeURIComponent(bad)}`);
    assert.equal(e.parameter, 'limit');
    assert.match(e.message, why);
  }
});

test('unknown, repeated single-valued and empty parameters are refused, named', () => {
  let e = refused('namespace=a&foo=1');
  assert.equal(e.parameter, 'foo');
  assert.match(e.message, /^foo: unknown parameter "foo" \(known: namespace, pod/);
  for (const name of ['Namespace', 'src-namespace', 'source_namespace', 'namespace[]', 'label[app]', 'group_by', '__proto__', 'constructor']) {
    assert.equal(refused(`${encodeURIComponent(name)}=x`).parameter, name);
  }
  e = refused('a%0Ab%1B[31m=1');
  assert.equal(e.parameter, 'a\nb\u001b[31m');
  assert.equal(e.message.split('\n').length, 1);
  assert.doesNotMatch(e.message, /[\u0000-\u001f]/);
  e = refused('limit=1&limit=2');
  assert.deepEqual([e.parameter, e.message], ['limit', 'limit: given more than once']);
  assert.equal(refused('since=1h&since=2h').parameter, 'since');
  assert.equal(refused('cursor=a&cursor=b').parameter, 'cursor');
  e = refused('namespace=');
  assert.deepEqual([e.parameter, e.message], ['namespace', 'namespace: empty value']);
  assert.equal(refused('label').parameter, 'label');
  // the stream takes no limit or cursor
  assert.equal(refused('limit=5', (p) => parseStreamFilter(p)).parameter, 'limit');
  assert.equal(refused('cursor=abc', (p) => parseStreamFilter(p)).parameter, 'cursor');
});

test('namespace, pod, ip, cidr, port, protocol, verdict: bad syntax named per side', () => {
  const cases: [string, string, RegExp][] = [
    ['namespace', 'API', /is not a namespace name/],
    ['namespace', '-api', /is not a namespace name/],
    ['namespace', 'a'.repeat(64), /longer than 63/],
    ['namespace', 'a/b', /is not a namespace name/],
    ['pod', 'api/Orders', /is not a pod \(NAMESPACE\/NAME or NAME/],
    ['pod', 'a/b/c', /is not a pod/],
    ['pod', '/orders', /is not a pod/],
    ['pod', 'orders/', /is not a pod/],
    ['pod', 'orders_1', /is not a pod name/],
    ['ip', '10.0.0.256', /is not an IPv4 or IPv6 address/],
    ['ip', '10.0.0.1/32', /is not an IPv4 or IPv6 address/],
    ['ip', 'fe80::1%eth0', /is not an IPv4 or IPv6 address/],
    ['ip', 'localhost', /is not an IPv4 or IPv6 address/],
    ['cidr', '10.0.0.0/33', /is not a CIDR prefix/],
    ['cidr', 'fd00::/129', /is not a CIDR prefix/],
    ['cidr', '10.0.0.0', /is not a CIDR prefix/],
    ['cidr', '10.0.0.0/8/8', /is not a CIDR prefix/],
  ];
  for (const [field, value, why] of cases) {
    for (const prefix of ['', 'src_', 'dst_']) {
      const e = refused(`${prefix}${field}=${encodeURIComponent(value)}`);
      assert.equal(e.parameter, `${prefix}${field}`, `${prefix}${field}=${value}`);
      assert.match(e.message, why, `${prefix}${field}=${value}`);
      assert.ok(e.message.startsWith(`${prefix}${field}: ${JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value)}`), e.message);
    }
  }
  for (const [p, v, why] of [['port', '65536', /is not a port number/], ['port', 'http', /is not a port number/], ['port', '-1', /is not a port number/], ['port', '80,443', /is not a port number/],
    ['protocol', 'tcp6', /is not a protocol/], ['protocol', '256', /is not a protocol/], ['protocol', 'gre', /is not a protocol/],
    ['verdict', 'dropped', /is not a verdict \(allowed, denied or audit\)/], ['verdict', 'DENIED', /is not a verdict/], ['verdict', 'allow', /is not a verdict/],
    ['policy', 'a'.repeat(257), /longer than 256/], ['cursor', 'a'.repeat(1025), /longer than 1024/]] as const) {
    const e = refused(`${p}=${encodeURIComponent(v)}`);
    assert.equal(e.parameter, p, `${p}=${v}`);
    assert.match(e.message, why, `${p}=${v}`);
  }
});

test('label matches: Kubernetes key and value syntax, four operators', () => {
  const ok: [string, unknown][] = [
    ['app=web', { key: 'app', op: '=', value: 'web' }],
    ['app=', { key: 'app', op: '=', value: '' }],
    ['app!=web', { key: 'app', op: '!=', value: 'web' }],
    ['app!=', { key: 'app', op: '!=', value: '' }],
    ['app.kubernetes.io/name=my_app-1.0', { key: 'app.kubernetes.io/name', op: '=', value: 'my_app-1.0' }],
    ['A_b.c-D', { key: 'A_b.c-D', op: 'exists' }],
    ['!example.com/legacy', { key: 'example.com/legacy', op: '!exists' }],
    [`${'k'.repeat(63)}=${'v'.repeat(63)}`, { key: 'k'.repeat(63), op: '=', value: 'v'.repeat(63) }],
  ];
  for (const [text, want] of ok) assert.deepEqual(parseLabelMatch('label', text), want, text);
  const bad = ['=web', '!=web', 'app==web', 'app=web=x', 'app=-web', 'app=web-', 'app=we b', '!app=web', '!!app', '!', 'app!', 'Example.com/app=x', '/app', 'example.com/=x',
    'a/b/c', '-app', 'app-', `${'k'.repeat(64)}`, `app=${'v'.repeat(64)}`, `${'a'.repeat(254)}/app`, 'app in (a,b)', 'app=x,tier=y'];
  for (const text of bad) {
    for (const name of ['label', 'src_label', 'dst_label']) {
      const e = refused(`${name}=${encodeURIComponent(text)}`);
      assert.equal(e.parameter, name, text);
      assert.match(e.message, new RegExp(`^${name}: ".*" is not a label match`), text);
    }
  }
  // messages say which part is wrong
  assert.match(refused('label=app%3D-x').message, /value "-x" is not a label value/);
  assert.match(refused('label=Bad.Prefix%2Fapp').message, /key "Bad.Prefix\/app" is not a label key/);
});

test('injection-looking values are refused or kept as plain values, never anything else', () => {
  const attempts = [
    "' OR 1=1 --", "api' OR '1'='1", 'api; DROP TABLE flows', 'api) OR (1=1', "{p0:String}", 'api\\', '"api"', 'api%00', 'api\u0000x',
    'api\nOR 1', '1 UNION SELECT * FROM system.users', 'SLEEP(10)', '${jndi:ldap://x}', '<script>', "app') OR ('a'='a", '*', '%', '_', '../../etc/passwd',
  ];
  for (const value of attempts) {
    for (const name of [...FILTER_PARAMETERS, 'limit', 'cursor']) {
      const params = new URLSearchParams([[name, value]]);
      let filter: unknown;
      try {
        filter = parseFlowQuery(params, { now: () => NOW });
      } catch (err) {
        assert.ok(err instanceof ParamError, `${name}=${value}: ${String(err)}`);
        assert.equal(err.parameter, name);
        // the bad value is quoted with escapes: no raw control characters reach a message or a log
        assert.doesNotMatch(err.message, /[\u0000-\u001f]/);
        continue;
      }
      // accepted: only free-text fields, and then verbatim as one plain value
      if (name === 'policy') assert.deepEqual(filter, { filter: { policy: [value] }, limit: DEFAULT_LIMIT }, value);
      else if (name === 'cursor') assert.deepEqual(filter, { filter: {}, limit: DEFAULT_LIMIT, cursor: value }, value);
      else assert.fail(`${name}=${JSON.stringify(value)} was accepted as ${JSON.stringify(filter)}`);
    }
  }
  // what does pass in policy is a plain substring, verbatim
  assert.deepEqual(q('policy=api/allow (x) [0]: y#1').filter.policy, ['api/allow (x) [0]: y#1']);
  // label keys/values that look like SQL cannot be label syntax; a value like "or" is just a value
  assert.deepEqual(q('label=or=and').filter.either?.labels, [{ key: 'or', op: '=', value: 'and' }]);
});

test('summary: group_by from the store\'s allow-list, limit up to 1000', () => {
  const s = parseSummaryQuery(new URLSearchParams('group_by=src_namespace,dst_port,verdict&limit=5&namespace=api'));
  assert.deepEqual(s, { filter: { either: { namespace: ['api'] } }, groupBy: ['src_namespace', 'dst_port', 'verdict'], limit: 5 });
  assert.ok(parseSummaryQuery(new URLSearchParams('')).groupBy.length > 0);
  for (const [s2, param, why] of [['group_by=src_namespace,password', 'group_by', /"password" is not a group key/], ['group_by=src_namespace;DROP TABLE flows', 'group_by', /is not a group key/],
    ['group_by=verdict,verdict', 'group_by', /given twice/], ['group_by=', 'group_by', /empty value/], ['group_by=a&group_by=b', 'group_by', /more than once/],
    ['limit=1001', 'limit', /out of range \(1-1000\)/], ['cursor=x', 'cursor', /unknown parameter/]] as const) {
    const e = refused(s2, (p) => parseSummaryQuery(p));
    assert.equal(e.parameter, param, s2);
    assert.match(e.message, why, s2);
  }
});
