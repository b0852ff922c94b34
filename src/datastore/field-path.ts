// kubectl-style field paths for validation errors: spec.ingress[0].ports[1].port. Its own module so
// manifest.ts and host-schema.ts can both use it without importing each other.

export function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out ? `.${String(seg)}` : String(seg);
  }
  return out;
}
