// Resource limits of the datapath's maps (issue 8, item 5), through BPF_PROG_TEST_RUN on weir.o
// loaded with shrunken maps (TestDatapath.load({ maxEntries }): its own pin root, removed on close).
//  - Conntrack full: weir_ct_v3 is an LRU hash, so a full table evicts its least recently used
//    entry instead of refusing the new flow. The evicted flow's next packet is judged again by
//    policy (never passed as established), and counted (CT_MISS_MIDSTREAM). Refusals, if the
//    kernel ever cannot evict, are counted as CT_CREATE_FAILED / DROP_CT_FULL.
//  - Endpoint and policy maps full: a policy state larger than a map is refused before anything
//    is written (MapCapacityError naming the map and sizes); the policy in force keeps judging.
// Figures go to stdout as `# figure ...` lines (docs/reliability.md: Resource limits).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TestDatapath, requireBpf } from '../helpers/datapath.js';
import { tcpPacket, TcpFlag } from '../helpers/packets.js';
import * as abi from '../../src/datapath/abi.js';
import { MapCapacityError } from '../../src/datapath/datapath.js';
import { ClusterState } from '../../src/datastore/cluster.js';
import { parseManifestText } from '../../src/datastore/manifest.js';
import { compilePolicy, type CompiledDatapath } from '../../src/policy/compile.js';
import { IdAllocator } from '../../src/policy/ids.js';

const OK = 0;
const SHOT = 2;

const CT_CAPACITY = 256;
const FLOWS_OFFERED = 4 * CT_CAPACITY;

const POD_A = '10.71.0.1'; // local, ingress-isolated without rules: only conntrack lets replies in
const POD_B = '10.71.0.2'; // local, not isolated: opens the flood of flows
const WORLD = '192.0.2.71';

test(`conntrack full (${CT_CAPACITY} entries, ${FLOWS_OFFERED} flows): LRU eviction, an evicted flow is judged again, counted`, async () => {
  requireBpf();
  const dp = await TestDatapath.load({ maxEntries: { [abi.MapName.ct]: CT_CAPACITY } });
  try {
    assert.equal(dp.map(abi.MapName.ct).maxEntries, CT_CAPACITY, 'the shrunken conntrack map');
    dp.pod(POD_A, { id: 1, identity: 100, isolate: 'ingress' });
    dp.pod(POD_B, { id: 2, identity: 200 });
    const before = {
      created: dp.counter('CT_CREATED'), failed: dp.counter('CT_CREATE_FAILED'), miss: dp.counter('CT_MISS_MIDSTREAM'),
      full: dp.stat('DROP_CT_FULL').packets, deny: dp.stat('DENY_DEFAULT').packets,
    };

    // A's connection to the world: allowed out (A's egress is open), its reply in as established.
    assert.equal(dp.run('fromPod', tcpPacket(POD_A, WORLD, 40000, 443, TcpFlag.SYN)), OK);
    assert.equal(dp.run('toPod', tcpPacket(WORLD, POD_A, 443, 40000, TcpFlag.SYN | TcpFlag.ACK)), OK, 'reply of an allowed flow');
    assert.ok(dp.ct({ saddr: POD_A, daddr: WORLD, sport: 40000, dport: 443, proto: abi.Proto.TCP }));

    // The flood: four times the table's size, every one a new flow answered once (the kernel's
    // LRU gives entries that were looked up since their insertion a second chance: the flood's
    // must be as alive as A's for A's to go).
    let accepted = 0;
    let refused = 0;
    for (let i = 0; i < FLOWS_OFFERED; i++) {
      const rc = dp.run('fromPod', tcpPacket(POD_B, WORLD, 20000 + i, 80, TcpFlag.SYN));
      if (rc === OK) {
        accepted++;
        dp.run('toPod', tcpPacket(WORLD, POD_B, 80, 20000 + i, TcpFlag.SYN | TcpFlag.ACK));
      } else refused++;
    }
    const live = dp.ctCount();
    const created = dp.counter('CT_CREATED') - before.created;
    const failed = dp.counter('CT_CREATE_FAILED') - before.failed;
    const fullDrops = dp.stat('DROP_CT_FULL').packets - before.full;
    // Nothing was collected (no GC run) and no tuple was reused: whatever was created and is not
    // in the table any more was evicted by the LRU.
    const evicted = created - BigInt(live);
    console.log(`# conntrack flood: accepted=${accepted} refused=${refused} live=${live} created=${created} evicted=${evicted} failed=${failed}`);
    assert.ok(live <= CT_CAPACITY, `the table never holds more than its size (${live})`);
    assert.equal(BigInt(accepted + refused), BigInt(FLOWS_OFFERED));
    assert.equal(BigInt(refused), failed, 'every refused flow is counted as CT_CREATE_FAILED');
    assert.equal(failed, fullDrops, '... and dropped under DROP_CT_FULL');
    assert.equal(created, BigInt(accepted + 1), 'every accepted flow (and A\'s) made an entry');
    assert.ok(evicted >= BigInt(FLOWS_OFFERED + 1 - CT_CAPACITY), `old entries were evicted (${evicted})`);

    // A's entry is long gone (least recently used). Its next reply finds no entry either way: it
    // is judged as a new flow into A, whose ingress allows nothing: denied, not passed as
    // established, and counted as a mid-stream miss.
    assert.equal(dp.ct({ saddr: POD_A, daddr: WORLD, sport: 40000, dport: 443, proto: abi.Proto.TCP }), undefined, 'A\'s entry was evicted');
    const missBefore = dp.counter('CT_MISS_MIDSTREAM');
    assert.equal(dp.run('toPod', tcpPacket(WORLD, POD_A, 443, 40000, TcpFlag.ACK, 100)), SHOT, 'an evicted flow\'s reply is judged by A\'s ingress: denied');
    assert.equal(dp.stat('DENY_DEFAULT').packets - before.deny, 1n);
    assert.equal(dp.counter('CT_MISS_MIDSTREAM') - missBefore, 1n, 'counted as a conntrack miss mid-stream');
    // A's own next segment is judged by A's egress policy (open): the flow is tracked again, and
    // from then on its replies pass.
    assert.equal(dp.run('fromPod', tcpPacket(POD_A, WORLD, 40000, 443, TcpFlag.ACK, 10)), OK, 're-judged by A\'s egress: allowed');
    assert.equal(dp.counter('CT_MISS_MIDSTREAM') - missBefore, 2n);
    assert.equal(dp.run('toPod', tcpPacket(WORLD, POD_A, 443, 40000, TcpFlag.ACK, 100)), OK, 'tracked again: the reply passes');
    const miss = dp.counter('CT_MISS_MIDSTREAM') - before.miss;
    console.log(`# figure conntrack-full capacity=${CT_CAPACITY} offered=${FLOWS_OFFERED} accepted=${accepted} refused=${refused} ` +
      `live=${live} created=${created} evicted=${evicted} create_failed=${failed} drop_ct_full=${fullDrops} midstream_miss=${miss}`);
  } finally {
    dp.close();
  }
});

// ---- endpoint and policy maps full ----------------------------------------------------------

const EP_CAPACITY = 16;
const POLICY_CAPACITY = 64;

function cluster(yaml: string): ClusterState {
  const problems: { message: string }[] = [];
  const loaded = parseManifestText(yaml, 'map-limits.yaml', problems as never);
  assert.deepEqual(problems, [], 'test manifest parses');
  return new ClusterState(loaded.map((l) => l.object));
}

const podYaml = (name: string, app: string, ip: string): string =>
  `apiVersion: v1\nkind: Pod\nmetadata: {name: ${name}, namespace: lim, labels: {app: ${app}}}\nspec: {containers: [{name: c}]}\nstatus: {podIP: ${ip}}\n---\n`;
const NS = 'apiVersion: v1\nkind: Namespace\nmetadata: {name: lim}\n---\n';
const allow = (name: string, ports: number[]) =>
  `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: ${name}, namespace: lim}\nspec:\n  podSelector: {matchLabels: {app: a}}\n` +
  `  ingress: [{from: [{podSelector: {matchLabels: {app: b}}}], ports: [${ports.map((p) => `{port: ${p}}`).join(', ')}]}]\n---\n`;

const A = '10.72.0.1';
const B = '10.72.0.2';

function compile(yaml: string, ids: IdAllocator): CompiledDatapath {
  const c = cluster(yaml);
  const placed = [...c.pods.values()].map((pod) => ({ pod, ips: pod.ips, ifindex: 0 }));
  return compilePolicy(c, placed, ids);
}

/** Every slot map's entries, as hex, for "nothing changed" comparisons. */
function slotContents(dp: TestDatapath): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const kind of ['endpoints', 'policy'] as const) {
    for (let slot = 0; slot < abi.SLOTS; slot++) {
      out[abi.slotMapName(kind, slot)] = [...dp.slotMap(kind, slot).entries()].map(([k, v]) => `${k.toString('hex')}=${v.toString('hex')}`).sort();
    }
  }
  return out;
}

test(`endpoint (${EP_CAPACITY}) and policy (${POLICY_CAPACITY}) maps full: the apply is refused naming the map, the policy in force stays`, async () => {
  requireBpf();
  const maxEntries: Record<string, number> = {};
  for (let slot = 0; slot < abi.SLOTS; slot++) {
    maxEntries[abi.slotMapName('endpoints', slot)] = EP_CAPACITY;
    maxEntries[abi.slotMapName('policy', slot)] = POLICY_CAPACITY;
  }
  const dp = await TestDatapath.load({ maxEntries });
  try {
    const ids = new IdAllocator();
    // In force: b may reach a on 80 only.
    const small = compile(NS + podYaml('a', 'a', A) + podYaml('b', 'b', B) + allow('web', [80]), ids);
    dp.apply(small);
    const probe = (sport: number, dport: number): number => dp.run('toPod', tcpPacket(B, A, sport, dport, TcpFlag.SYN));
    let sport = 30000;
    const enforced = (when: string): void => {
      assert.equal(probe(sport++, 80), OK, `${when}: b -> a:80 allowed`);
      assert.equal(probe(sport++, 81), SHOT, `${when}: b -> a:81 denied`);
      assert.equal(probe(sport++, 5000), SHOT, `${when}: b -> a:5000 denied`);
    };
    enforced('before');
    const gen = dp.generation();
    const contents = slotContents(dp);

    // Too many endpoints: 40 pods (and the 80 policy keys it would bring would not fit either;
    // the endpoints come first). This set would also open a:5000.
    let big = NS + podYaml('a', 'a', A) + podYaml('b', 'b', B) + allow('web', [80, 5000]);
    for (let i = 0; i < 40; i++) big += podYaml(`x${i}`, 'x', `10.72.1.${i + 1}`);
    const tooManyPods = compile(big, ids);
    assert.ok(tooManyPods.endpoints.size > EP_CAPACITY);
    assert.throws(() => dp.apply(tooManyPods), (err: unknown) => {
      assert.ok(err instanceof MapCapacityError, String(err));
      assert.equal(err.kind, 'endpoints');
      assert.match(err.map, /^weir_endpoints_v3_[01]$/);
      assert.equal(err.needed, tooManyPods.endpoints.size);
      assert.equal(err.capacity, EP_CAPACITY);
      assert.match(err.message, new RegExp(`${err.map} \\(endpoints\\) needs ${err.needed} entries, it holds at most ${EP_CAPACITY}`));
      console.log(`# figure endpoints-full error: ${err.message}`);
      return true;
    });
    assert.equal(dp.generation(), gen, 'no flip');
    assert.deepEqual(slotContents(dp), contents, 'neither slot was written');
    enforced('after the refused endpoints');

    // Too many policy keys: a few pods, 100 ports (opens a:5000 too).
    const ports = Array.from({ length: 100 }, (_, i) => 5000 + i);
    const tooManyKeys = compile(NS + podYaml('a', 'a', A) + podYaml('b', 'b', B) + allow('web', ports), ids);
    assert.ok(tooManyKeys.endpoints.size <= EP_CAPACITY);
    assert.throws(() => dp.apply(tooManyKeys), (err: unknown) => {
      assert.ok(err instanceof MapCapacityError, String(err));
      assert.equal(err.kind, 'policy');
      assert.equal(err.capacity, POLICY_CAPACITY);
      assert.ok(err.needed > POLICY_CAPACITY);
      console.log(`# figure policy-full error: ${err.message}`);
      return true;
    });
    assert.equal(dp.generation(), gen, 'no flip');
    assert.deepEqual(slotContents(dp), contents, 'neither slot was written');
    enforced('after the refused policy keys');

    // A set that fits still applies afterwards, exactly: a:81 opens, nothing of the refused sets leaks in.
    const next = compile(NS + podYaml('a', 'a', A) + podYaml('b', 'b', B) + allow('web', [81]), ids);
    dp.apply(next);
    assert.notEqual(dp.generation(), gen, 'flipped');
    assert.equal(probe(sport++, 81), OK, 'the new set is in force');
    assert.equal(probe(sport++, 80), SHOT, 'the old rule is gone');
    assert.equal(probe(sport++, 5000), SHOT, 'nothing of the refused sets');
    const active = dp.generation() & 1;
    assert.equal([...dp.slotMap('endpoints', active).keys()].length, next.endpoints.size, 'the slot in force holds exactly the new endpoints');
  } finally {
    dp.close();
  }
});

test('a write that fails half way through the inactive slot (E2BIG) flips nothing, and the next apply cleans the slot', async () => {
  requireBpf();
  const maxEntries: Record<string, number> = {};
  for (let slot = 0; slot < abi.SLOTS; slot++) maxEntries[abi.slotMapName('policy', slot)] = POLICY_CAPACITY;
  const dp = await TestDatapath.load({ maxEntries });
  try {
    const ids = new IdAllocator();
    const pods = NS + podYaml('a', 'a', A) + podYaml('b', 'b', B);
    dp.apply(compile(pods + allow('web', [80]), ids)); // S1, into one slot
    dp.apply(compile(pods + allow('web', [81]), ids)); // S2, in force now; S1 is in the other slot
    const gen = dp.generation();
    const inactive = (gen & 1) ^ 1;
    // Someone else (an older agent on the same pins, a crash half way through an earlier apply)
    // left keys in the inactive slot that this process does not know of: written straight to
    // the object's map, past TestDatapath's bookkeeping, so apply()'s cache still says "S1".
    const stray = dp.obj.map(abi.slotMapName('policy', inactive));
    for (let i = 0; i < 60; i++) {
      stray.update(abi.encodePolicyKey({ identity: 9999, peer: abi.Identity.ANY, port: 1000 + i, portBits: 16, proto: abi.Proto.TCP, direction: abi.Direction.INGRESS }),
        abi.encodePolicyValue({ ruleId: 1, rank: 1 }));
    }
    const ports = Array.from({ length: 40 }, (_, i) => 6000 + i);
    const s3 = compile(pods + allow('web', ports), ids);
    assert.ok(s3.policy.size <= POLICY_CAPACITY, 'S3 fits the map on its own');
    let sport = 31000;
    const probe = (dport: number): number => dp.run('toPod', tcpPacket(B, A, sport++, dport, TcpFlag.SYN));
    assert.throws(() => dp.apply(s3), (err: unknown) => {
      const msg = (err as Error).message;
      assert.match(msg, new RegExp(`writing ${abi.slotMapName('policy', inactive)} \\(policy: ${s3.policy.size} entries wanted, capacity ${POLICY_CAPACITY}\\) with E2BIG`));
      assert.match(msg, new RegExp(`generation ${gen} stays in force`));
      console.log(`# figure half-written error: ${msg}`);
      return true;
    });
    assert.equal(dp.generation(), gen, 'no flip');
    assert.equal(probe(81), OK, 'S2 still enforced: a:81 open');
    assert.equal(probe(6000), SHOT, 'nothing of S3 enforced');
    assert.equal(probe(1000), SHOT, 'nor of the stray keys');
    // The next apply reads the slot back (the failed one dropped the cache), removes the strays
    // and the half-written keys, and flips to exactly S3.
    dp.apply(s3);
    assert.notEqual(dp.generation(), gen);
    assert.equal(dp.generation() & 1, inactive);
    assert.equal([...stray.keys()].length, s3.policy.size, 'the slot holds exactly S3\'s keys');
    assert.equal(probe(6000), OK, 'S3 in force');
    assert.equal(probe(81), SHOT, 'S2 gone');
  } finally {
    dp.close();
  }
});
