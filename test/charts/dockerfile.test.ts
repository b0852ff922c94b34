// The Dockerfile, without docker (none here): its stages and packages, every COPY source there and
// not excluded by .dockerignore, and its build stage replayed: the files its COPY lines copy go to
// a temporary directory, its make/tsc step runs there, and the runtime stage's COPY --from=build
// sources, laid out as the runtime image has them, start `weir agent --help` from the ENTRYPOINT.
// Not replayed: the base images, apt-get, npm ci (the repository's node_modules stands in for it)
// and npm prune.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { repoRoot } from '../../src/paths.js';

interface Instruction { op: string; args: string; stage: string }

function instructions(): Instruction[] {
  const text = readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const out: Instruction[] = [];
  let stage = '';
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z]+)\s+(.*)$/.exec(line);
    if (!m || line.trimStart().startsWith('#')) continue;
    if (m[1] === 'FROM') stage = /\bAS\s+(\S+)/i.exec(m[2]!)?.[1] ?? m[2]!;
    out.push({ op: m[1]!, args: m[2]!.trim(), stage });
  }
  return out;
}

interface Copy { from?: string; sources: string[]; dest: string; into: boolean; stage: string }
function copies(all: Instruction[]): Copy[] {
  const workdir = new Map<string, string>();
  const out: Copy[] = [];
  for (const i of all) {
    if (i.op === 'WORKDIR') workdir.set(i.stage, i.args);
    if (i.op !== 'COPY') continue;
    const words = i.args.split(/\s+/);
    const from = words[0]!.startsWith('--from=') ? words.shift()!.slice('--from='.length) : undefined;
    const dest = words.pop()!;
    // a destination ending in / (or several sources) is a directory the sources go into
    out.push({ ...(from ? { from } : {}), sources: words, dest: path.posix.resolve(workdir.get(i.stage) ?? '/', dest), into: dest.endsWith('/') || words.length > 1, stage: i.stage });
  }
  return out;
}

/** .dockerignore patterns as the builder reads these simple ones: a path or a glob, from the root. */
function ignored(rel: string): boolean {
  const patterns = readFileSync(path.join(repoRoot, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  return patterns.some((p) => {
    const re = new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}(/.*)?$`);
    return re.test(rel);
  });
}

const ALL = instructions();
const stageOf = (name: string) => ALL.filter((i) => i.stage === name);
const aptPackages = (stage: string) => stageOf(stage).filter((i) => i.op === 'RUN' && i.args.includes('apt-get install'))
  .flatMap((i) => i.args.split(/\s+/)).filter((w) => /^[a-z0-9][a-z0-9.+-]+$/.test(w) && !['apt-get', 'install', 'update', 'rm'].includes(w));

test('two stages: build on Debian bookworm with Node 20, runtime on bookworm-slim with Node 20', () => {
  const froms = ALL.filter((i) => i.op === 'FROM').map((i) => i.args);
  assert.deepEqual(froms, ['node:20-bookworm AS build', 'node:20-bookworm-slim AS runtime']);
  const engines = (JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { engines: { node: string } }).engines.node;
  assert.equal(engines, '>=20', 'the images\' Node (20) must satisfy package.json engines');
});

test('the build stage installs every build package scripts/setup.sh installs; the runtime, libbpf and iproute2', () => {
  const setup = readFileSync(path.join(repoRoot, 'scripts', 'setup.sh'), 'utf8');
  // the toolchain (by the tool setup.sh looks for) and every header package it checks for
  const byTool = new Map([...setup.matchAll(/\[([a-z0-9+-]+)\]=([a-z0-9.+-]+)/g)].map((m) => [m[1]!, m[2]!]));
  const fromSetup = new Set<string>();
  for (const tool of ['clang', 'llc', 'make', 'g++', 'pkg-config']) {
    assert.ok(byTool.has(tool), `scripts/setup.sh no longer installs ${tool}: update this test`);
    fromSetup.add(byTool.get(tool)!);
  }
  for (const m of setup.matchAll(/missing\+=\(([a-z0-9.+-]+)\)/g)) fromSetup.add(m[1]!);
  assert.ok(fromSetup.size >= 9, [...fromSetup].join(' '));
  const build = new Set(aptPackages('build'));
  for (const p of fromSetup) assert.ok(build.has(p), `the build stage does not install ${p}, which scripts/setup.sh installs for the build`);
  const runtime = aptPackages('runtime');
  for (const p of ['libbpf1', 'libelf1', 'zlib1g', 'iproute2']) assert.ok(runtime.includes(p), `the runtime stage does not install ${p}`);
  const runs = stageOf('build').filter((i) => i.op === 'RUN').map((i) => i.args);
  assert.ok(runs.some((r) => r.startsWith('npm ci')), 'npm ci');
  assert.ok(runs.some((r) => /make -s -C bpf && make -s -C native && npx tsc -p \./.test(r)), 'the three build steps of scripts/build.sh');
  assert.ok(runs.at(-1)!.startsWith('npm prune --omit=dev'), 'npm prune --omit=dev last');
});

test('every COPY source from the build context exists and is not excluded by .dockerignore', () => {
  const fromContext = copies(ALL).filter((c) => !c.from);
  assert.ok(fromContext.length >= 6);
  for (const c of fromContext) {
    for (const s of c.sources) {
      assert.ok(existsSync(path.join(repoRoot, s)), `COPY ${s}: not in the repository`);
      assert.ok(!ignored(s), `COPY ${s}: excluded by .dockerignore`);
    }
  }
  // and .dockerignore does keep the build outputs and dependencies out of the context
  for (const p of ['node_modules', 'dist', 'bpf/build', 'native/build', '.git']) assert.ok(ignored(p), `${p} is sent to the builder`);
});

test('the build stage, replayed on exactly what it copies, builds what the runtime stage copies; the ENTRYPOINT starts', () => {
  const work = mkdtempSync(path.join(tmpdir(), 'weir-docker-'));
  try {
    const src = path.join(work, 'src-stage'); // the build stage's WORKDIR /src
    mkdirSync(src);
    const all = copies(ALL);
    const toStage = (dest: string, stageRoot: string, workdir: string) => path.join(stageRoot, path.posix.relative(workdir, dest));
    for (const c of all.filter((x) => x.stage === 'build')) {
      for (const s of c.sources) {
        const dest = c.into ? path.join(toStage(c.dest, src, '/src'), path.basename(s)) : toStage(c.dest, src, '/src');
        // what .dockerignore keeps out of the context is not there to copy
        cpSync(path.join(repoRoot, s), dest, { recursive: true, filter: (f) => !ignored(path.relative(repoRoot, f)) });
      }
    }
    // npm ci: the repository's own node_modules (same lock) stands in
    symlinkSync(path.join(repoRoot, 'node_modules'), path.join(src, 'node_modules'));
    const step = stageOf('build').find((i) => i.op === 'RUN' && i.args.includes('make -s -C bpf'))!;
    try {
      execFileSync('bash', ['-c', step.args], { cwd: src, stdio: 'pipe', timeout: 240_000 });
    } catch (err) {
      const e = err as { stdout?: Buffer; stderr?: Buffer };
      assert.fail(`the build stage's step failed: ${step.args}\n${String(e.stdout ?? '')}${String(e.stderr ?? '')}`);
    }

    // the runtime image's /opt/weir, from its COPY lines
    const root = path.join(work, 'runtime'); // the runtime stage's WORKDIR /opt/weir
    for (const c of all.filter((x) => x.stage === 'runtime')) {
      for (const s of c.sources) {
        const from = c.from === 'build' ? path.join(src, path.posix.relative('/src', s)) : path.join(repoRoot, s);
        assert.ok(existsSync(from), `COPY ${c.from ? `--from=${c.from} ` : ''}${s}: the ${c.from ? 'build stage did not make it' : 'repository has no such file'}`);
        const dest = c.into ? path.join(toStage(c.dest, root, '/opt/weir'), path.basename(s)) : toStage(c.dest, root, '/opt/weir');
        mkdirSync(path.dirname(dest), { recursive: true });
        cpSync(from, dest, { recursive: true, dereference: false, verbatimSymlinks: true });
      }
    }
    const entry = JSON.parse(ALL.find((i) => i.op === 'ENTRYPOINT')!.args) as string[];
    assert.equal(entry[0], 'node');
    const main = toStage(entry[1]!, root, '/opt/weir');
    assert.ok(existsSync(main), `ENTRYPOINT ${entry[1]}: not in the runtime image`);
    for (const need of ['bpf/build/weir.o', 'native/build/weir_bpf.node']) assert.ok(existsSync(path.join(root, need)), need);
    const help = execFileSync('node', [main, 'agent', '--help'], { cwd: root, encoding: 'utf8', timeout: 60_000 });
    assert.match(help, /Usage: weir agent/);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
