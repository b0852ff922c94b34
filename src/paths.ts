// Where the build puts things, resolved from this file so the CLI works from any directory.
import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** The repository (or installed package) root: dist/src/paths.js lives two levels below it. */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A compiled BPF object, e.g. bpfObjectPath('weir') -> <root>/bpf/build/weir.o */
export function bpfObjectPath(name: string): string {
  return path.join(repoRoot, 'bpf', 'build', `${name}.o`);
}

export const nativeAddonPath = path.join(repoRoot, 'native', 'build', 'weir_bpf.node');
