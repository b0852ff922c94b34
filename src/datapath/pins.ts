// What a newer agent does with the pins an older one left. Maps are pinned by name with a layout
// version (weir_ct_v3, weir_endpoints_v3_0): a layout change bumps the suffix, so libbpf creates
// the new map beside the old pin instead of misreading it. Without this module the old pin would
// stay behind forever, unused and unmentioned. Here every weir_* pin under the pin root is
// classified (current / an older version of a current map / unknown), and each older one is
// migrated or replaced by a rule decided per map family, and said so.
//
// Order matters (docs/datapath.md, Upgrades and pinned maps):
//   1. scan() before the object is loaded: which pins were there (reused vs created);
//   2. migrate() right after the load, before any new program is attached: conntrack entries of
//      a convertible older layout are copied into the new map;
//   3. finish() after the new programs are attached and the first policy is applied: a second
//      conntrack pass (flows the old programs created in between), the old event ring drained and
//      its unread records counted, then the older pins removed. Until then the old programs, still
//      attached where the new ones are not yet, keep enforcing with the old maps. Removing a pin
//      never pulls a map from under a program still using it: the kernel frees a map when the last
//      reference (pin, program, fd) goes.
// Unknown weir_* pins (another family, or a newer version than this build knows: a downgrade) are
// reported and never touched: we do not delete what we do not understand.
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { BpfMap, BpfProgram, RingBufferReader } from './libbpf.js';
import * as abi from './abi.js';

/** weir_<family>_v<version>[_<slot>] */
const VERSIONED = /^weir_([a-z][a-z0-9_]*?)_v(\d+)(?:_(\d+))?$/;

export interface ParsedMapName {
  readonly family: string;
  readonly version: number;
  readonly slot?: number;
}

export function parseMapName(name: string): ParsedMapName | undefined {
  const m = VERSIONED.exec(name);
  if (!m) return undefined;
  return { family: m[1]!, version: Number(m[2]), ...(m[3] !== undefined ? { slot: Number(m[3]) } : {}) };
}

/** How an older version of a family is dealt with. */
export type FamilyRule =
  /** policy state, config, the sync barrier: the agent writes it again from the datastore */
  | 'rebuilt'
  /** weir_ct: entries copied when a converter exists, otherwise flows are re-judged */
  | 'conntrack'
  /** the ring buffer: drained (unread records counted) and replaced */
  | 'events'
  /** counters: start again from zero */
  | 'counters'
  /** the deny verdict cache: refilled by the next denied packet */
  | 'cache';

/** One rule per map family this build pins. A family missing here is treated as unknown (its
 * older pins are left alone), and test/datapath/upgrade.test.ts fails, so a new map forces a
 * decision. */
export const FAMILY_RULES: Readonly<Record<string, FamilyRule>> = {
  endpoints: 'rebuilt', policy: 'rebuilt', prange: 'rebuilt', ipcache: 'rebuilt',
  hostif: 'rebuilt', gtier: 'rebuilt', grules: 'rebuilt', gset: 'rebuilt', gport: 'rebuilt',
  config: 'rebuilt', sync: 'rebuilt',
  ct: 'conntrack',
  events: 'events',
  stats: 'counters', counters: 'counters', lost_pend: 'counters',
  deny_rl: 'cache',
};

/** A conversion of conntrack entries from one pinned layout to the current one. */
interface CtConverter {
  readonly keySize: number;
  readonly valueSize: number;
  convert(key: Buffer, value: Buffer): [Buffer, Buffer];
}

/** Flags weir_ct_v2 knew (WEIR_CT_* up to bit 10, commit cb012df); v3 added the host-device
 * bits 11-14. */
const CT_V2_FLAGS = (1 << 11) - 1;

/**
 * Converters keyed "from->to", only for layouts that really existed (git log -p
 * bpf/include/weir_abi.h). weir_ct_v2 -> weir_ct_v3 (commit a779a69): the key is unchanged (40
 * bytes); the entry keeps its size (88) and offsets, its trailing `pad` became
 * `forward_rule_id` (0 = no host endpoint forwarded the flow, which is true of every v2 flow) and
 * new flags mark host-device hooks as judged. A v2 entry has none of them, so a host-device hook
 * judges the flow once more: stricter, never looser. weir_ct_v1 is not converted (its entry had
 * no rev_ifindex, which anti-spoofing now trusts): replaced, its flows re-judged.
 */
const CT_CONVERTERS: Readonly<Record<string, CtConverter>> = {
  'weir_ct_v2->weir_ct_v3': {
    keySize: 40,
    valueSize: 88,
    convert(key, value) {
      const v = Buffer.from(value);
      v.writeUInt16LE(v.readUInt16LE(80) & CT_V2_FLAGS, 80); // flags
      v.writeUInt32LE(0, 84); // pad -> forward_rule_id
      return [Buffer.from(key), v];
    },
  },
};

export type PinClass = 'current' | 'older' | 'unknown';

export interface PinInfo {
  /** file name under the pin root */
  readonly pin: string;
  readonly kind: 'map' | 'program';
  readonly class: PinClass;
  /** older: the current maps of its family that take its place */
  readonly successors?: readonly string[];
  /** unknown: why it is left alone */
  readonly reason?: string;
}

export interface OlderPinOutcome {
  readonly pin: string;
  readonly successors: readonly string[];
  readonly action: 'migrated' | 'replaced';
  /** the log line's explanation */
  readonly detail: string;
  /** conntrack: entries copied into the new map (both passes) */
  readonly migrated?: number;
  /** event ring: records nobody had read, dropped with the old ring */
  readonly droppedRecords?: number;
  /** false until finish() unpinned it */
  readonly removed: boolean;
}

export interface UpgradeSummary {
  readonly pinRoot: string;
  /** current pins that were already there: reused, their contents kept */
  readonly reused: readonly string[];
  readonly older: readonly OlderPinOutcome[];
  readonly unknown: readonly { pin: string; reason: string }[];
  /** true once finish() ran (older pins removed) */
  readonly finished: boolean;
}

/** A program the previous agent pinned under this pin root (read before install re-pins the
 * names): the evidence that a filter at Weir's tc priority/handle is an older Weir's, to be
 * replaced, not someone else's, to be left alone. Name as the kernel keeps it (15 chars). */
export interface PreviousProgram {
  readonly pin: string;
  readonly id: number;
  readonly name: string;
  /** hash of its instructions: the same code loaded again (a restart after a restart) has it too */
  readonly tag?: string;
}

/** Classifies every weir_* pin (maps) and prog_weir_* pin (programs) under pinRoot against the
 * names this build uses. Anything else in the directory is not ours to judge and is skipped. */
export function classifyPins(pinRoot: string, current: { maps: readonly string[]; programs: readonly string[] }): PinInfo[] {
  let names: string[];
  try {
    names = readdirSync(pinRoot).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const maps = new Set(current.maps);
  const programs = new Set(current.programs.map((p) => `prog_${p}`));
  const byFamily = new Map<string, ParsedMapName & { name: string }>();
  for (const name of current.maps) {
    const p = parseMapName(name);
    if (!p) throw new Error(`pins: current map name ${JSON.stringify(name)} has no _v<N> layout version`);
    byFamily.set(`${p.family}/${p.slot ?? ''}`, { ...p, name });
  }
  const out: PinInfo[] = [];
  for (const pin of names) {
    if (pin.startsWith('prog_weir_')) {
      out.push(programs.has(pin)
        ? { pin, kind: 'program', class: 'current' }
        : { pin, kind: 'program', class: 'unknown', reason: 'not a program of this build' });
      continue;
    }
    if (!pin.startsWith('weir_')) continue;
    if (maps.has(pin)) {
      out.push({ pin, kind: 'map', class: 'current' });
      continue;
    }
    const p = parseMapName(pin);
    const family = p && [...byFamily.values()].filter((c) => c.family === p.family);
    if (!p || !family || family.length === 0) {
      out.push({ pin, kind: 'map', class: 'unknown', reason: 'no map of this build has its family' });
      continue;
    }
    const newest = Math.max(...family.map((c) => c.version));
    if (p.version > newest) {
      out.push({ pin, kind: 'map', class: 'unknown', reason: `a newer layout (v${p.version}) than this build's (v${newest}): left for the agent that made it` });
      continue;
    }
    if (!(p.family in FAMILY_RULES)) {
      out.push({ pin, kind: 'map', class: 'unknown', reason: `no upgrade rule for the ${p.family} family` });
      continue;
    }
    // an older slot's pin is succeeded by the same slot; an older unslotted map (weir_endpoints_v1
    // before the policy state had two slots) by every slot of the family
    const same = family.filter((c) => p.slot !== undefined && c.slot === p.slot);
    const successors = (same.length > 0 ? same : family).map((c) => c.name);
    out.push({ pin, kind: 'map', class: 'older', successors });
  }
  return out;
}

/** The names this build pins (abi.ts, kept true to the object by the BTF test). */
export const currentPinNames = () => ({ maps: Object.values(abi.MapName), programs: Object.values(abi.ProgramName) });

interface Pending {
  readonly pin: string;
  readonly successors: readonly string[];
  readonly rule: FamilyRule;
  converter?: CtConverter;
  migrated: number;
  droppedRecords?: number;
  removed: boolean;
  detail: string;
}

/** One upgrade of one pin root: scan() before the load, migrate() after it, finish() after the
 * new programs are attached and the first policy is applied. */
export class PinUpgrade {
  private finished = false;

  private constructor(
    readonly pinRoot: string,
    /** programs pinned before this install (prog_weir_*), see PreviousProgram */
    readonly previousPrograms: readonly PreviousProgram[],
    private readonly reused: readonly string[],
    private readonly pending: Pending[],
    private readonly unknown: readonly { pin: string; reason: string }[],
  ) {}

  static scan(pinRoot: string, current = currentPinNames()): PinUpgrade {
    const pins = classifyPins(pinRoot, current);
    const pending: Pending[] = [];
    for (const p of pins) {
      if (p.class !== 'older') continue;
      const family = parseMapName(p.pin)!.family;
      pending.push({ pin: p.pin, successors: p.successors!, rule: FAMILY_RULES[family]!, migrated: 0, removed: false, detail: '' });
    }
    const previous: PreviousProgram[] = [];
    for (const p of pins) {
      if (p.kind !== 'program') continue;
      let prog: BpfProgram | undefined;
      try {
        prog = BpfProgram.fromPin(path.join(pinRoot, p.pin));
        const tag = progTag(prog.fd);
        previous.push({ pin: p.pin, id: prog.id, name: prog.name, ...(tag ? { tag } : {}) });
      } catch {
        // not a program after all, or gone: no evidence, nothing to replace by it
      } finally {
        prog?.close();
      }
    }
    return new PinUpgrade(
      pinRoot,
      previous,
      pins.filter((p) => p.class === 'current' && p.kind === 'map').map((p) => p.pin),
      pending,
      pins.filter((p) => p.class === 'unknown').map((p) => ({ pin: p.pin, reason: p.reason! })),
    );
  }

  /** First conntrack pass, before the new programs run: established flows keep their entries in
   * the new map. Other families need nothing yet (the old maps stay in use by the old programs). */
  migrate(mapOf: (name: string) => BpfMap): void {
    for (const p of this.pending) {
      if (p.rule !== 'conntrack') continue;
      const to = p.successors[0]!;
      const converter = CT_CONVERTERS[`${p.pin}->${to}`];
      const old = this.openPin(p.pin);
      try {
        if (converter && old.keySize === converter.keySize && old.valueSize === converter.valueSize) {
          p.converter = converter;
          p.migrated += copyEntries(old, mapOf(to), converter);
        } else if (converter) {
          p.detail = `its layout (key ${old.keySize}, value ${old.valueSize} bytes) is not the ${p.pin} the converter knows; `;
        }
      } finally {
        old.close();
      }
    }
  }

  /** After attach + first apply: second conntrack pass, the old ring drained, older pins removed.
   * Idempotent; returns the summary. */
  finish(mapOf: (name: string) => BpfMap): UpgradeSummary {
    if (this.finished) return this.summary();
    for (const p of this.pending) {
      if (p.removed) continue;
      let old: BpfMap;
      try {
        old = this.openPin(p.pin);
      } catch (err) {
        // gone meanwhile (another process finished first) or unreadable: say so, go on with the rest
        p.detail = `not finished: ${(err as Error).message}`;
        continue;
      }
      try {
        switch (p.rule) {
          case 'conntrack':
            if (p.converter) {
              // flows the old programs created after migrate(); never overwrites what the new
              // programs wrote since
              p.migrated += copyEntries(old, mapOf(p.successors[0]!), p.converter);
              p.detail = `migrated ${p.migrated} entries; established flows keep their entries`;
            } else {
              p.detail += `replaced (no converter from ${p.pin}); established flows are re-judged by policy`;
            }
            break;
          case 'events':
            p.droppedRecords = drainRing(old);
            p.detail = `replaced; ${p.droppedRecords} unread records in the old ring dropped`;
            break;
          case 'rebuilt':
            p.detail = 'replaced; refilled from the datastore by the first apply';
            break;
          case 'counters':
            p.detail = 'replaced; counters start again from zero';
            break;
          case 'cache':
            p.detail = 'replaced; denied flows are judged again and cached anew';
            break;
        }
      } finally {
        old.close();
      }
      rmSync(path.join(this.pinRoot, p.pin), { force: true });
      p.removed = true;
    }
    this.finished = true;
    return this.summary();
  }

  summary(): UpgradeSummary {
    return {
      pinRoot: this.pinRoot,
      reused: this.reused,
      older: this.pending.map((p) => ({
        pin: p.pin,
        successors: p.successors,
        action: p.rule === 'conntrack' && p.converter ? 'migrated' : 'replaced',
        detail: p.detail || 'pending: removed once the new programs are attached and the first policy applied',
        ...(p.rule === 'conntrack' ? { migrated: p.migrated } : {}),
        ...(p.droppedRecords !== undefined ? { droppedRecords: p.droppedRecords } : {}),
        removed: p.removed,
      })),
      unknown: this.unknown,
      finished: this.finished,
    };
  }

  private openPin(pin: string): BpfMap {
    try {
      return BpfMap.fromPin(path.join(this.pinRoot, pin));
    } catch (err) {
      throw new Error(`pins: opening the older pin ${path.join(this.pinRoot, pin)} failed: ${(err as Error).message}`, { cause: err });
    }
  }
}

/** One log line per older or unknown pin: "weir_ct_v2 -> weir_ct_v3: migrated 4 entries; ...". */
export function upgradeLines(s: UpgradeSummary): string[] {
  return [
    ...s.older.map((o) => `${o.pin} -> ${o.successors.join(', ')}: ${o.detail}`),
    ...s.unknown.map((u) => `${u.pin}: unknown, left alone (${u.reason})`),
  ];
}

function copyEntries(from: BpfMap, to: BpfMap, converter: CtConverter): number {
  let n = 0;
  for (const [k, v] of from.entries()) {
    const [key, value] = converter.convert(k, v);
    try {
      to.update(key, value, 'noexist');
      n++;
    } catch (err) {
      if ((err as { code?: string }).code === 'EEXIST') continue; // the new programs have it already
      throw err;
    }
  }
  return n;
}

/** Consumes what is left in an old ring buffer and returns how many records that was. Nobody can
 * decode them for the store (an older record layout), so they are counted, not kept. */
function drainRing(map: BpfMap): number {
  if (map.type !== BPF_MAP_TYPE_RINGBUF) return 0;
  const reader = new RingBufferReader(map, () => undefined);
  try {
    reader.unref();
    let total = 0;
    for (let n = reader.consume(); n > 0; n = reader.consume()) total += n;
    return total;
  } finally {
    reader.close();
  }
}

const BPF_MAP_TYPE_RINGBUF = 27;

/** The program's tag from /proc/self/fdinfo (what `tc filter show` and bpftool print). */
function progTag(fd: number): string | undefined {
  try {
    return /^prog_tag:\s*([0-9a-f]{16})$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}
