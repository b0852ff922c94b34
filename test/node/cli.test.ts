// `weir agent --datastore ...` refuses bad flags before it loads or creates anything, naming the
// flag (the real command line, in a child process).
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { MAIN } from './rig.js';
import { testPinRoot } from '../helpers/pins.js';

const execFileP = promisify(execFile);

async function weir(args: readonly string[]): Promise<{ code: number; stderr: string }> {
  try {
    await execFileP(process.execPath, [MAIN, ...args], { timeout: 30_000 });
    return { code: 0, stderr: '' };
  } catch (err) {
    const e = err as { code?: number; stderr?: string };
    return { code: e.code ?? -1, stderr: e.stderr ?? '' };
  }
}

test('bad node agent flags are refused, naming the flag, and nothing is made', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wnc-'));
  const data = path.join(dir, 'data');
  const pins = testPinRoot('weir-test-wnc');
  const empty = path.join(dir, 'empty');
  writeFileSync(path.join(dir, 'token'), '');
  const base = ['agent', '--datastore', 'files', '--manifests', dir, '--node', 'n1', '--data-dir', data, '--pin-root', pins];
  const cases: [string, string[], RegExp][] = [
    ['no --node', ['agent', '--datastore', 'kubernetes', '--data-dir', data], /--node: required with --datastore/],
    ['no --data-dir', ['agent', '--datastore', 'kubernetes', '--node', 'n1'], /--data-dir: required with --datastore/],
    ['no --manifests', ['agent', '--datastore', 'files', '--node', 'n1', '--data-dir', data], /--manifests: required with --datastore files/],
    ['--manifests not a directory', [...base, '--manifests', empty], /--manifests: ".*empty" is not a directory/],
    ['--manifests with kubernetes', ['agent', '--datastore', 'kubernetes', '--manifests', dir, '--node', 'n1', '--data-dir', data], /--manifests: only with --datastore files/],
    ['a bad datastore', ['agent', '--datastore', 'etcd', '--node', 'n1', '--data-dir', data], /--datastore.*etcd.*(kubernetes|choices)/],
    ['a bad node name', [...base, '--node', 'Node_1'], /--node: "Node_1" is not a node name/],
    ['failsafes both ways', [...base, '--no-failsafes', '--failsafe-inbound', 'tcp:22'], /--failsafe-inbound\/--failsafe-outbound or --no-failsafes, not both/],
    ['a bad failsafe port', [...base, '--failsafe-outbound', 'udp:70000'], /--failsafe-outbound: entry 1 "udp:70000"/],
    ['a bad CNI style', [...base, '--cni', 'weave'], /--cni: "weave" is not one of calico/],
    ['a bad interface pattern', [...base, '--host-interfaces', 'eth0,a b'], /--host-interfaces: "a b" is not an interface name/],
    ['an empty token file', [...base, '--token-file', path.join(dir, 'token')], /--token-file: ".*token" is empty/],
    ['a missing kubeconfig', ['agent', '--datastore', 'kubernetes', '--kubeconfig', path.join(dir, 'nope'), '--node', 'n1', '--data-dir', data, '--pin-root', pins], /--kubeconfig: ".*nope": no such file/],
    ['--lab with --datastore', [...base, '--lab', 'x'], /give --lab .* or --datastore .*, not both/],
    ['node flags without --datastore', ['agent', '--lab', 'x', '--node', 'n1'], /--node needs --datastore/],
  ];
  try {
    for (const [what, args, want] of cases) {
      const r = await weir(args);
      assert.notEqual(r.code, 0, `${what}: exit code`);
      assert.match(r.stderr, want, what);
      assert.equal(existsSync(data), false, `${what}: nothing made (${data})`);
      assert.equal(existsSync(pins), false, `${what}: nothing pinned`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(pins, { recursive: true, force: true });
  }
});
