// The TypeScript codecs (src/datapath/abi.ts) against the BTF clang emitted for weir_abi.h into
// bpf/build/weir.o: every struct must exist with the same size, member names, offsets and sizes,
// and every enum with the same values. A change to the C header that is not mirrored in abi.ts
// fails here instead of silently misreading memory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Enums, Layouts, type FieldSpec } from '../../src/datapath/abi.js';
import { bpfObjectPath, repoRoot } from '../../src/paths.js';

interface BtfMember {
  name: string;
  type_id: number;
  bits_offset: number;
  bitfield_size?: number;
}
interface BtfType {
  id: number;
  kind: string;
  name: string;
  size?: number;
  type_id?: number;
  nr_elems?: number;
  members?: BtfMember[];
  values?: Array<{ name: string; val: number }>;
}

function loadBtf(): Map<number, BtfType> {
  const obj = bpfObjectPath('weir');
  assert.ok(existsSync(obj), `${obj} is missing: build it first (bash scripts/build.sh)`);
  let out: string;
  try {
    out = execFileSync('bpftool', ['-j', 'btf', 'dump', 'file', obj, 'format', 'raw'], {
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    });
  } catch (err) {
    throw new Error(`bpftool btf dump failed (is bpftool installed? npm run setup): ${(err as Error).message}`);
  }
  const types = (JSON.parse(out) as { types: BtfType[] }).types;
  return new Map(types.map((t) => [t.id, t]));
}

function sizeOf(btf: Map<number, BtfType>, id: number): number {
  const t = btf.get(id);
  assert.ok(t, `BTF type ${id} missing`);
  switch (t.kind) {
    case 'INT':
    case 'STRUCT':
    case 'UNION':
    case 'ENUM':
    case 'ENUM64':
      return t.size!;
    case 'TYPEDEF':
    case 'CONST':
    case 'VOLATILE':
    case 'RESTRICT':
    case 'TYPE_TAG':
      return sizeOf(btf, t.type_id!);
    case 'ARRAY':
      return t.nr_elems! * sizeOf(btf, t.type_id!);
    case 'PTR':
      return 8;
    default:
      throw new Error(`unexpected BTF kind ${t.kind} (type ${id})`);
  }
}

const btf = loadBtf();
const byName = (kind: string, name: string): BtfType | undefined =>
  [...btf.values()].find((t) => t.kind === kind && t.name === name);

for (const [codec, l] of Object.entries(Layouts)) {
  test(`struct ${l.name} (abi.Layouts.${codec}) matches the BTF of weir.o`, () => {
    const t = byName('STRUCT', l.name);
    assert.ok(t, `struct ${l.name} is not in weir.o's BTF: is it used in bpf/weir.c?`);
    assert.equal(t.size, l.size, `sizeof(struct ${l.name})`);
    const fromBtf: FieldSpec[] = t.members!.map((m) => {
      assert.equal(m.bitfield_size ?? 0, 0, `${l.name}.${m.name} is a bitfield`);
      assert.equal(m.bits_offset % 8, 0, `${l.name}.${m.name} is not byte aligned`);
      return { name: m.name, offset: m.bits_offset / 8, size: sizeOf(btf, m.type_id) };
    });
    assert.deepEqual([...l.fields], fromBtf, `fields of struct ${l.name}`);
  });
}

for (const [name, e] of Object.entries(Enums)) {
  test(`enum ${name} matches the BTF of weir.o`, () => {
    const t = byName('ENUM', name);
    assert.ok(t, `enum ${name} is not in weir.o's BTF`);
    const fromBtf = Object.fromEntries(t.values!.map((v) => [v.name, v.val]));
    const fromTs = Object.fromEntries(Object.entries(e.values).map(([k, v]) => [`${e.prefix}${k}`, v]));
    assert.deepEqual(fromTs, fromBtf, `values of enum ${name}`);
  });
}

test('every struct of weir_abi.h has a codec', () => {
  const known = new Set(Object.values(Layouts).map((l) => l.name));
  // The header decides what is ABI; structs private to the programs (bpf/lib/*.h) are not.
  const header = readFileSync(path.join(repoRoot, 'bpf', 'include', 'weir_abi.h'), 'utf8');
  const abiStructs = [...header.matchAll(/^struct (weir_\w+) \{/gm)].map((m) => m[1]!);
  assert.ok(abiStructs.length > 0, 'no struct found in weir_abi.h');
  for (const s of abiStructs) assert.ok(known.has(s), `struct ${s} of weir_abi.h has no codec in abi.ts`);
});
