// A newer agent finding an older one's pins (src/datapath/pins.ts). The older agent is played by
// the real object: installed under a pin root, policy applied, packets run, then some of its map
// pins renamed to the older names those layouts really had (weir_ct_v2, weir_events_v1, ...), so
// its programs (still open, as if still attached) keep using exactly those maps. Unknown weir_*
// pins are made with bpftool. Then Datapath.install runs the upgrade on the same pin root.
// Pins under /sys/fs/bpf/weir-test-upg-<pid>-<n>, removed after each test.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync } from 'node:fs';
import path from 'node:path';
import { Datapath } from '../../src/datapath/datapath.js';
import { BpfMap, BpfObject, tcAttach, tcQuery } from '../../src/datapath/libbpf.js';
import { TC_HANDLE, TC_PRIORITY } from '../../src/datapath/datapath.js';
import { InterfaceDiscovery } from '../../src/datapath/discovery/discovery.js';
import { PodInterfaceReconciler } from '../../src/datapath/discovery/reconciler.js';
import { bpfObjectPath } from '../../src/paths.js';
import { NodeLayout, removeLeftovers } from './discovery-layouts.js';
import * as abi from '../../src/datapath/abi.js';
import { FAMILY_RULES, classifyPins, parseMapName, upgradeLines, type UpgradeSummary } from '../../src/datapath/pins.js';
import type { CompiledDatapath, PolicyEntry } from '../../src/policy/compile.js';
import { requireBpf } from '../helpers/datapath.js';
import { tcpPacket, TcpFlag } from '../helpers/packets.js';
import { testPinRoot } from '../helpers/pins.js';

const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;

const POD_A = '10.77.0.1'; // identity 100, ingress isolated: TCP 80 from identity 200 only (rule 7)
const POD_B = '10.77.0.2'; // identity 200, not isolated

const newRoot = () => testPinRoot('weir-test-upg');

/** The policy both agents apply, as the compiler would emit it. */
function compiled(): CompiledDatapath {
  const E = abi.EndpointFlag;
  const entry: PolicyEntry = { identity: 100, peer: 200, direction: abi.Direction.INGRESS as 0, proto: abi.Proto.TCP, port: 80, portBits: 16, ruleId: 7, rank: 7 };
  return {
    endpoints: new Map([
      [POD_A, { key: 'ns/a', id: 1, identity: 100, ifindex: 0, flags: E.LOCAL | E.ISOLATED_INGRESS | E.PEER_RULES_INGRESS }],
      [POD_B, { key: 'ns/b', id: 2, identity: 200, ifindex: 0, flags: E.LOCAL }],
    ]),
    policy: new Map([['a', entry]]),
    cidrClasses: new Map(),
    identities: new Map(),
    hostInterfaces: new Map(),
    globalTiers: new Map(),
    globalRules: [],
    globalSets: new Map(),
    globalPorts: new Map(),
  };
}

const syn = (sport: number, dport: number) => tcpPacket(POD_B, POD_A, sport, dport, TcpFlag.SYN);
const ack = (sport: number, dport: number) => tcpPacket(POD_B, POD_A, sport, dport, TcpFlag.ACK);
const ctKey = (sport: number, dport: number) => abi.encodeCtKey({ saddr: POD_B, daddr: POD_A, sport, dport, proto: abi.Proto.TCP });
const toPod = (dp: Datapath, data: Buffer) => dp.program(abi.ProgramName.toPod).testRun({ data, dataOutSize: 0 }).retval;

/** Renames the older agent's pins to the names their layouts had before (same layouts: what the
 * renamed map holds is exactly what such an agent left). */
const OLDER_NAMES: Record<string, string> = {
  [abi.MapName.ct]: 'weir_ct_v2',
  [abi.MapName.events]: 'weir_events_v1',
  [abi.MapName.endpoints]: 'weir_endpoints_v2_0',
  [abi.MapName.endpoints1]: 'weir_endpoints_v2_1',
  [abi.MapName.policy]: 'weir_policy_v2_0',
  [abi.MapName.policy1]: 'weir_policy_v2_1',
  [abi.MapName.denyRateLimit]: 'weir_deny_rl_v1',
  [abi.MapName.stats]: 'weir_stats_v1',
};

function bpftoolMap(pin: string, spec: string[]): void {
  execFileSync('bpftool', ['map', 'create', pin, ...spec], { stdio: 'pipe' });
}

function cleanup(root: string): void {
  Datapath.uninstall(root);
}

describe('upgrade: pins an older agent left', () => {
  test('every map family this build pins has an upgrade rule, and every name a layout version', () => {
    for (const name of Object.values(abi.MapName)) {
      const p = parseMapName(name);
      assert.ok(p, `${name}: no _v<N>`);
      assert.ok(p.family in FAMILY_RULES, `${name}: family ${p.family} has no rule in FAMILY_RULES (pins.ts)`);
    }
    assert.deepEqual(parseMapName('weir_endpoints_v3_1'), { family: 'endpoints', version: 3, slot: 1 });
    assert.deepEqual(parseMapName('weir_deny_rl_v2'), { family: 'deny_rl', version: 2 });
    assert.equal(parseMapName('weir_ct'), undefined);
  });

  test('older pins are migrated or replaced after the first apply, current ones reused, unknown ones left', async () => {
    requireBpf();
    const root = newRoot();
    let old: Datapath | undefined;
    let next: Datapath | undefined;
    try {
      // ---- the older agent: policy in force, one established flow, records nobody read
      old = await Datapath.install(root);
      old.apply(compiled());
      assert.equal(toPod(old, syn(40001, 80)), TC_ACT_OK, 'older agent: allowed by rule 7');
      assert.equal(toPod(old, syn(40002, 81)), TC_ACT_SHOT, 'older agent: port 81 denied');
      const oldGeneration = old.generation();
      // a value in a map both builds share (weir_counters_v1): reused, so it survives
      const counters = old.map(abi.MapName.counters);
      const ctCreatedKey = abi.encodeIndexKey(abi.Counter.CT_CREATED);
      const ctCreatedBefore = abi.decodePerCpuCounter(counters.lookup(ctCreatedKey)!);
      assert.ok(ctCreatedBefore >= 1n);
      for (const [now, before] of Object.entries(OLDER_NAMES)) renameSync(path.join(root, now), path.join(root, before));
      // what we do not know: another family, and a newer layout of a family we know
      bpftoolMap(path.join(root, 'weir_mystery_v1'), ['type', 'hash', 'key', '4', 'value', '4', 'entries', '8', 'name', 'weir_mystery_v1']);
      bpftoolMap(path.join(root, 'weir_ct_v9'), ['type', 'hash', 'key', '4', 'value', '4', 'entries', '8', 'name', 'weir_ct_v9']);

      const classes = new Map(classifyPins(root, { maps: Object.values(abi.MapName), programs: Object.values(abi.ProgramName) }).map((p) => [p.pin, p]));
      assert.equal(classes.get('weir_ct_v2')?.class, 'older');
      assert.deepEqual(classes.get('weir_ct_v2')?.successors, [abi.MapName.ct]);
      assert.deepEqual(classes.get('weir_policy_v2_1')?.successors, [abi.MapName.policy1], 'a slot is succeeded by the same slot');
      assert.equal(classes.get('weir_ct_v9')?.class, 'unknown');
      assert.equal(classes.get('weir_mystery_v1')?.class, 'unknown');
      assert.equal(classes.get(abi.MapName.config)?.class, 'current');
      assert.equal(classes.get(`prog_${abi.ProgramName.toPod}`)?.class, 'current');

      // ---- the newer agent installs: older pins found, conntrack copied before any new program runs
      next = await Datapath.install(root);
      const found = next.upgradeSummary()!;
      assert.equal(found.finished, false);
      assert.deepEqual(found.older.map((o) => o.pin).sort(), Object.values(OLDER_NAMES).sort());
      assert.deepEqual(found.unknown.map((u) => u.pin).sort(), ['weir_ct_v9', 'weir_mystery_v1']);
      assert.ok(found.reused.includes(abi.MapName.config) && found.reused.includes(abi.MapName.counters));
      assert.ok(!found.reused.includes(abi.MapName.ct), 'weir_ct_v3 was not there: created');
      for (const pin of Object.values(OLDER_NAMES)) assert.ok(existsSync(path.join(root, pin)), `${pin} stays until the first apply`);
      assert.equal(next.generation(), oldGeneration, 'weir_config_v1 reused: the generation survives');
      assert.equal(abi.decodePerCpuCounter(next.map(abi.MapName.counters).lookup(ctCreatedKey)!), ctCreatedBefore, 'weir_counters_v1 reused: its values survive');
      assert.ok(next.map(abi.MapName.ct).lookup(ctKey(40001, 80)), 'the established flow was copied into weir_ct_v3');
      assert.equal(next.map(abi.MapName.endpoints).lookup(abi.ipToKey16(POD_A)), undefined, 'weir_endpoints_v3_0 is new and empty until the apply');

      // the older programs still run (attached where the new ones are not yet): with the old maps
      assert.equal(toPod(old, syn(40003, 80)), TC_ACT_OK, 'older program, older policy: still enforcing');
      assert.equal(toPod(old, syn(40004, 81)), TC_ACT_SHOT);
      assert.equal(next.map(abi.MapName.ct).lookup(ctKey(40003, 80)), undefined, 'that flow is in weir_ct_v2 only, so far');

      // the agent attaches the new programs over the old ones: the same tc priority/handle with
      // BPF_TC_F_REPLACE, one filter per hook throughout (cls_bpf swaps the program under RCU:
      // each packet runs either the old or the new one, never none)
      const ns = `wupg-${process.pid}`;
      execFileSync('ip', ['netns', 'add', ns]);
      try {
        execFileSync('ip', ['-n', ns, 'link', 'add', 'wupg0', 'type', 'veth', 'peer', 'name', 'wupg1']);
        const target = { ifname: 'wupg0', netns: ns };
        const attached = () => tcQuery({ ...target, direction: 'egress', priority: 1, handle: 0x5745 })?.progId;
        const filters = () => execFileSync('tc', ['-n', ns, 'filter', 'show', 'dev', 'wupg0', 'egress'], { encoding: 'utf8' }).split('\n').filter((l) => / handle 0x/.test(l)).length;
        old.attachPod(target);
        assert.equal(attached(), old.program(abi.ProgramName.toPod).id);
        next.attachPod(target);
        assert.equal(attached(), next.program(abi.ProgramName.toPod).id, 'replaced in place');
        assert.equal(filters(), 1, 'one filter on the hook: replaced, not added beside');
      } finally {
        execFileSync('ip', ['netns', 'del', ns]);
      }

      // ---- the first apply, then finish
      next.apply(compiled());
      const lines: string[] = [];
      const done: UpgradeSummary = next.finishUpgrade((l) => lines.push(l))!;
      assert.equal(done.finished, true);
      const byPin = new Map(done.older.map((o) => [o.pin, o]));
      const ct = byPin.get('weir_ct_v2')!;
      assert.equal(ct.action, 'migrated');
      assert.equal(ct.migrated, 2, 'the established flow (install) and the one the old program made since (finish)');
      assert.ok(next.map(abi.MapName.ct).lookup(ctKey(40003, 80)), 'second pass copied it');
      const events = byPin.get('weir_events_v1')!;
      assert.equal(events.action, 'replaced');
      // each new flow the older programs saw left one record: FLOW_START for 40001 and 40003,
      // DENY for 40002 and 40004
      assert.equal(events.droppedRecords, 4);
      for (const o of done.older) {
        assert.equal(o.removed, true);
        assert.ok(!existsSync(path.join(root, o.pin)), `${o.pin} removed`);
      }
      assert.ok(existsSync(path.join(root, 'weir_mystery_v1')) && existsSync(path.join(root, 'weir_ct_v9')), 'unknown pins left alone');
      assert.ok(lines.includes('pins: weir_ct_v2 -> weir_ct_v3: migrated 2 entries; established flows keep their entries'), lines.join('\n'));
      assert.ok(lines.includes(`pins: weir_events_v1 -> ${abi.MapName.events}: replaced; 4 unread records in the old ring dropped`), lines.join('\n'));
      assert.ok(lines.some((l) => l.startsWith('pins: weir_policy_v2_0 -> weir_policy_v3_0: replaced;')), lines.join('\n'));
      assert.ok(lines.some((l) => l.startsWith('pins: weir_ct_v9: unknown, left alone (a newer layout')), lines.join('\n'));
      assert.equal(next.finishUpgrade()!.finished, true, 'idempotent');
      assert.deepEqual(upgradeLines(next.finishUpgrade()!), lines.map((l) => l.slice('pins: '.length)));

      // ---- the new programs on the new maps: policy applies, the migrated flow is established
      assert.equal(toPod(next, syn(40005, 80)), TC_ACT_OK, 'rule 7 in the new maps');
      assert.equal(toPod(next, syn(40006, 81)), TC_ACT_SHOT, 'port 81 still denied');
      // a mid-stream packet that finds no entry is counted (CT_MISS_MIDSTREAM) and re-judged; the
      // migrated flow's finds its entry: no miss, no new entry
      const counter = (name: abi.CounterName) => abi.decodePerCpuCounter(next!.map(abi.MapName.counters).lookup(abi.encodeIndexKey(abi.Counter[name]))!);
      const [miss0, created0] = [counter('CT_MISS_MIDSTREAM'), counter('CT_CREATED')];
      assert.equal(toPod(next, ack(40001, 80)), TC_ACT_OK, 'the migrated flow goes on');
      assert.deepEqual([counter('CT_MISS_MIDSTREAM'), counter('CT_CREATED')], [miss0, created0], 'judged from its migrated entry');
      assert.equal(toPod(next, ack(40099, 80)), TC_ACT_OK, 'a never-seen flow on port 80: re-judged, allowed');
      assert.equal(counter('CT_MISS_MIDSTREAM'), miss0 + 1n, 'the contrast: a flow without an entry is a miss');
    } finally {
      old?.close();
      next?.close();
      cleanup(root);
    }
  });

  test('an old conntrack that cannot be converted is replaced: its flows are re-judged by policy', async () => {
    requireBpf();
    const root = newRoot();
    let dp: Datapath | undefined;
    try {
      // weir_ct_v1 (before rev_ifindex, commit cb012df): no converter
      mkdirSync(root, { recursive: true });
      bpftoolMap(path.join(root, 'weir_ct_v1'), ['type', 'lru_hash', 'key', '40', 'value', '88', 'entries', '64', 'name', 'weir_ct_v1']);
      const oldCt = BpfMap.fromPin(path.join(root, 'weir_ct_v1'));
      oldCt.update(ctKey(41000, 81), Buffer.alloc(88, 1));
      oldCt.close();
      dp = await Datapath.install(root);
      assert.equal([...dp.map(abi.MapName.ct).keys()].length, 0, 'nothing copied');
      dp.apply(compiled());
      const s = dp.finishUpgrade()!;
      assert.deepEqual(s.older.map((o) => [o.pin, o.action, o.migrated]), [['weir_ct_v1', 'replaced', 0]]);
      assert.match(s.older[0]!.detail, /re-judged by policy/);
      assert.ok(!existsSync(path.join(root, 'weir_ct_v1')));
      // the flow the old entry stood for meets policy again: port 81 is not allowed
      assert.equal(toPod(dp, ack(41000, 81)), TC_ACT_SHOT);
    } finally {
      dp?.close();
      cleanup(root);
    }
  });

  test('a pin root with only current pins reports nothing', async () => {
    requireBpf();
    const root = newRoot();
    let first: Datapath | undefined;
    let second: Datapath | undefined;
    try {
      first = await Datapath.install(root);
      const fresh = first.upgradeSummary()!;
      assert.deepEqual([fresh.reused, fresh.older, fresh.unknown], [[], [], []], 'an empty pin root');
      first.apply(compiled());
      first.close();
      first = undefined;
      second = await Datapath.install(root);
      const s = second.finishUpgrade()!;
      assert.deepEqual([s.older, s.unknown], [[], []]);
      assert.deepEqual([...s.reused].sort(), Object.values(abi.MapName).sort(), 'every map reused');
      assert.deepEqual(upgradeLines(s), []);
      assert.deepEqual(readdirSync(root).filter((f) => f.startsWith('weir_')).sort(), Object.values(abi.MapName).sort());
    } finally {
      first?.close();
      second?.close();
      cleanup(root);
    }
  });
});

test('an older agent\'s programs on a pod veth are replaced by the new ones; someone else\'s are left', async () => {
  requireBpf();
  const root = newRoot();
  const layout = new NodeLayout('wupg', 'calico', 96);
  await removeLeftovers(layout.prefix);
  const older = BpfObject.open(bpfObjectPath('noop'));
  let dp: Datapath | undefined;
  let rec: PodInterfaceReconciler | undefined;
  try {
    await layout.create();
    const a = await layout.addPod({ name: 'a', ifname: 'caliupg000000a', v4: '10.96.0.10' });
    const b = await layout.addPod({ name: 'b', ifname: 'caliupg000000b', v4: '10.96.0.11' });
    const ns = `/run/netns/${layout.node}`;
    await older.load();
    // the older build's programs (another tag), pinned under the pin root by its agent and
    // attached on a; the same code on b but never pinned here: someone else's
    const prog = older.program('weir_noop');
    mkdirSync(root, { recursive: true });
    prog.pin(path.join(root, `prog_${abi.ProgramName.fromPod}`));
    for (const direction of ['ingress', 'egress'] as const) {
      tcAttach({ ifname: a.ifname, netns: ns, direction, program: prog, priority: TC_PRIORITY, handle: TC_HANDLE });
    }
    // b: someone else's filter at Weir's priority/handle (a classic BPF one: no program of ours
    // has its id, or its name and tag)
    execFileSync('tc', ['-n', layout.node, 'qdisc', 'add', 'dev', b.ifname, 'clsact']);
    execFileSync('tc', ['-n', layout.node, 'filter', 'add', 'dev', b.ifname, 'ingress', 'pref', String(TC_PRIORITY), 'handle', `0x${TC_HANDLE.toString(16)}`, 'bpf', 'bytecode', '1,6 0 0 4294967295,']);

    dp = await Datapath.install(root);
    assert.deepEqual(dp.previousPrograms().map((p) => [p.pin, p.id]), [[`prog_${abi.ProgramName.fromPod}`, prog.id]]);
    rec = new PodInterfaceReconciler({ discovery: new InterfaceDiscovery({ netns: layout.node, style: 'calico' }), datapath: dp });
    rec.setPods([a, b].map((p) => ({ namespace: 'default', name: p.name, ips: [p.v4] })));
    await rec.resync();
    const q = (ifname: string, direction: 'ingress' | 'egress') => tcQuery({ ifname, netns: ns, direction, priority: TC_PRIORITY, handle: TC_HANDLE })?.progId;
    assert.equal(q(a.ifname, 'ingress'), dp.program(abi.ProgramName.fromPod).id, 'the older program replaced on a');
    assert.equal(q(a.ifname, 'egress'), dp.program(abi.ProgramName.toPod).id);
    assert.deepEqual([...rec.placements().keys()], ['default/a']);
    assert.equal(rec.unresolved().get('default/b')?.reason, 'foreign-program', 'b: not pinned by a Weir agent here, left alone');
    assert.match(execFileSync('tc', ['-n', layout.node, 'filter', 'show', 'dev', b.ifname, 'ingress'], { encoding: 'utf8' }), /bytecode/, 'b\'s filter untouched');
  } finally {
    await rec?.stop();
    dp?.close();
    older.close();
    await layout.destroy();
    cleanup(root);
  }
});
