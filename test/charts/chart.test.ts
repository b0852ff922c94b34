// The Helm chart charts/weir, tested without helm (none is installable here): values against
// values.schema.json, every value read and documented, templates well-formed, and the objects that
// matter (RBAC, the DaemonSet's privileges, the agent's arguments) read from the templates by a
// small line-based renderer that understands exactly the template constructs the chart uses (and
// fails on any other, so a new construct cannot slip past unchecked).
import test from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import AjvModule from 'ajv';
import { parse, parseAllDocuments } from 'yaml';
import { repoRoot } from '../../src/paths.js';
import { WATCHED_RESOURCES, WRITTEN_RESOURCES } from '../../src/datastore/kubernetes/resources.js';

const Ajv = AjvModule.default;
const CHART = path.join(repoRoot, 'charts', 'weir');
const TEMPLATES = path.join(CHART, 'templates');
const read = (p: string) => readFileSync(path.join(CHART, p), 'utf8');

type Values = Record<string, unknown>;
const VALUES_TEXT = read('values.yaml');
const VALUES = parse(VALUES_TEXT) as Values;
const SCHEMA = JSON.parse(read('values.schema.json')) as object;
const templateFiles = readdirSync(TEMPLATES).sort();

const clone = <T>(v: T): T => structuredClone(v);
function get(values: unknown, dotted: string): unknown {
  let cur: unknown = values;
  for (const k of dotted.split('.')) {
    if (cur === null || typeof cur !== 'object' || !(k in (cur as object))) return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}
function set(values: Values, dotted: string, v: unknown): Values {
  const keys = dotted.split('.');
  let cur = values as Record<string, unknown>;
  for (const k of keys.slice(0, -1)) cur = (cur[k] ??= {}) as Record<string, unknown>;
  cur[keys.at(-1)!] = v;
  return values;
}
const has = (values: unknown, dotted: string) => {
  const parent = dotted.includes('.') ? get(values, dotted.slice(0, dotted.lastIndexOf('.'))) : values;
  return parent !== null && typeof parent === 'object' && dotted.slice(dotted.lastIndexOf('.') + 1) in (parent as object);
};

/** Value paths down to scalars, lists and empty maps. */
function leafPaths(v: unknown, prefix = ''): string[] {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || Object.keys(v).length === 0) return [prefix];
  return Object.entries(v).flatMap(([k, x]) => leafPaths(x, prefix ? `${prefix}.${k}` : k));
}
const covers = (a: string, b: string) => a === b || b.startsWith(`${a}.`) || a.startsWith(`${b}.`);

// ---- values and their schema ----

function validator() {
  const ajv = new Ajv({ strict: true, allowUnionTypes: true, allErrors: true });
  return ajv.compile(SCHEMA);
}

test('values.yaml validates against values.schema.json', () => {
  const validate = validator();
  assert.ok(validate(VALUES), JSON.stringify(validate.errors));
});

test('values.schema.json refuses bad values, naming the field', () => {
  const validate = validator();
  const bad: [string, (v: Values) => Values, RegExp][] = [
    ['a port that is a string', (v) => set(v, 'agent.apiPort', '9470'), /\/agent\/apiPort/],
    ['a port out of range', (v) => set(v, 'agent.apiPort', 70000), /\/agent\/apiPort/],
    ['an unknown key (a typo)', (v) => set(v, 'agent.intervall', '15s'), /additional properties.*intervall|intervall/],
    ['an unknown store mode', (v) => set(v, 'store.mode', 'sqlite'), /\/store\/mode/],
    ['clickhouse without a URL', (v) => set(v, 'store.mode', 'clickhouse'), /\/store\/clickhouse\/url/],
    ['a URL that is not http(s)', (v) => set(set(v, 'store.mode', 'clickhouse'), 'store.clickhouse.url', 'clickhouse:9000'), /\/store\/clickhouse\/url/],
    ['a bad failsafe list', (v) => set(v, 'hostProtection.failsafes.inbound', 'ssh'), /\/hostProtection\/failsafes\/inbound/],
    ['a failsafes switch that is a string', (v) => set(v, 'hostProtection.failsafes.enabled', 'false'), /\/hostProtection\/failsafes\/enabled/],
    ['a bad interval', (v) => set(v, 'agent.interval', '15 seconds'), /\/agent\/interval/],
    ['a relative data directory', (v) => set(v, 'agent.dataDir', 'var/lib/weir'), /\/agent\/dataDir/],
    ['a capability with its CAP_ prefix in lower case', (v) => set(v, 'securityContext.extraCapabilities', ['cap_sys_resource']), /extraCapabilities\/0/],
    ['a world name without its CIDR', (v) => set(v, 'agent.worldNames', [{ name: 'corp' }]), /\/agent\/worldNames\/0/],
    ['a bad pull policy', (v) => set(v, 'image.pullPolicy', 'Sometimes'), /\/image\/pullPolicy/],
  ];
  for (const [what, mutate, where] of bad) {
    const ok = validate(mutate(clone(VALUES)));
    assert.equal(ok, false, `${what}: accepted`);
    const errors = JSON.stringify(validate.errors);
    assert.match(errors, where, `${what}: ${errors}`);
  }
  // and a good non-default one passes
  const ch = set(set(clone(VALUES), 'store.mode', 'clickhouse'), 'store.clickhouse.url', 'http://ch:8123');
  assert.ok(validate(set(ch, 'hostProtection.failsafes.inbound', 'tcp:22,udp:68')), JSON.stringify(validate.errors));
});

// ---- values: read by templates, documented ----

const ALL_TEMPLATE_TEXT = templateFiles.map((f) => readFileSync(path.join(TEMPLATES, f), 'utf8')).join('\n');
const REFERENCES = [...new Set([...ALL_TEMPLATE_TEXT.matchAll(/\$?\.Values((?:\.[A-Za-z0-9_]+)+)/g)].map((m) => m[1]!.slice(1)))];

test('every value a template reads exists in values.yaml, and every value is read', () => {
  assert.ok(REFERENCES.length > 30, `only ${REFERENCES.length} references found`);
  for (const ref of REFERENCES) assert.ok(has(VALUES, ref), `templates read .Values.${ref}, which values.yaml does not have`);
  for (const leaf of leafPaths(VALUES)) {
    assert.ok(REFERENCES.some((r) => covers(r, leaf)), `values.yaml has ${leaf}, which no template reads`);
  }
});

/** "# -- text" comments right above a key, by the key's path. */
function valueComments(): Map<string, string> {
  const out = new Map<string, string>();
  const stack: string[] = [];
  let pending: string[] = [];
  for (const line of VALUES_TEXT.split('\n')) {
    const c = /^\s*# -- (.*)$/.exec(line);
    if (c) { pending.push(c[1]!); continue; }
    const k = /^(\s*)([A-Za-z0-9_]+):/.exec(line);
    if (k) {
      stack.length = k[1]!.length / 2;
      stack.push(k[2]!);
      if (pending.length > 0) out.set(stack.join('.'), pending.join(' '));
      pending = [];
    } else if (!/^\s*#/.test(line)) pending = [];
  }
  return out;
}

function readmeValueRows(): Map<string, string> {
  const rows = new Map<string, string>();
  for (const m of read('README.md').matchAll(/^\| `([A-Za-z0-9_.]+)` \| `(.*)` \| .* \|$/gm)) rows.set(m[1]!, m[2]!);
  return rows;
}

test('every value is in the README\'s table with its default, and commented in values.yaml', () => {
  const rows = readmeValueRows();
  const comments = valueComments();
  for (const leaf of leafPaths(VALUES)) {
    const row = [...rows.keys()].find((r) => r === leaf || leaf.startsWith(`${r}.`));
    assert.ok(row, `charts/weir/README.md has no row for ${leaf}`);
  }
  for (const [row, def] of rows) {
    assert.ok(has(VALUES, row), `the README lists ${row}, which values.yaml does not have`);
    assert.equal(def, JSON.stringify(get(VALUES, row)), `the README's default of ${row}`);
    assert.ok(comments.has(row), `values.yaml: ${row} has no "# -- " comment above it`);
  }
});

// ---- templates: well-formed ----

interface Action { text: string; line: number }
function actionsOf(text: string, file: string): Action[] {
  const out: Action[] = [];
  let i = 0;
  for (;;) {
    const open = text.indexOf('{{', i);
    const close = text.indexOf('}}', i);
    if (open < 0) {
      assert.equal(close, -1, `${file}: "}}" without "{{"`);
      return out;
    }
    assert.ok(close > open, `${file}: "}}" before "{{" at offset ${close}`);
    const next = text.indexOf('{{', open + 2);
    assert.ok(next < 0 || next > close, `${file}: "{{" inside an action at offset ${next}`);
    out.push({ text: text.slice(open + 2, close).replace(/^-\s*/, '').replace(/\s*-$/, '').trim(), line: text.slice(0, open).split('\n').length });
    i = close + 2;
  }
}

const OPENERS = new Set(['if', 'with', 'range', 'define', 'block']);
function checkBlocks(text: string, file: string): void {
  const stack: Action[] = [];
  for (const a of actionsOf(text, file)) {
    if (a.text.startsWith('/*')) { assert.ok(a.text.endsWith('*/'), `${file}:${a.line}: unclosed comment`); continue; }
    const word = a.text.split(/[\s(]/)[0]!;
    if (OPENERS.has(word)) stack.push(a);
    else if (word === 'else') assert.ok(stack.length > 0 && ['if', 'with', 'range'].includes(stack.at(-1)!.text.split(/\s/)[0]!), `${file}:${a.line}: else outside if/with/range`);
    else if (word === 'end') assert.ok(stack.pop(), `${file}:${a.line}: end without a block`);
  }
  assert.deepEqual(stack.map((a) => `${a.line}: ${a.text}`), [], `${file}: blocks left open`);
}

test('every template: {{ }} balanced, every block closed by its end', () => {
  assert.ok(templateFiles.length >= 11, templateFiles.join(', '));
  for (const f of templateFiles) checkBlocks(readFileSync(path.join(TEMPLATES, f), 'utf8'), f);
  // the check itself: a missing end and a stray brace are caught
  assert.throws(() => checkBlocks('{{- if .Values.a }}\nx: 1\n', 't'), /blocks left open/);
  assert.throws(() => checkBlocks('x: {{ .Values.a }\ny: {{ .Values.b }}', 't'), /inside an action/);
});

// ---- a line-based renderer for the constructs the chart uses ----

interface RenderContext { values: Values; kubeVersion: string; vars?: Map<string, unknown> }

/** Evaluates the conditions of if/with: .Values paths, literals, not/and/or/eq, kindIs, semverCompare. */
function evaluate(expr: string, ctx: RenderContext): unknown {
  const tokens = expr.match(/"[^"]*"|\(|\)|[^\s()]+/g) ?? [];
  let i = 0;
  const cmp = (v: string, op: string, want: string) => {
    const n = (s: string) => s.replace(/^v/, '').split(/[.-]/).slice(0, 2).map(Number);
    const [a, b] = [n(v), n(want)];
    const d = a[0]! - b[0]! || a[1]! - b[1]!;
    return op === '<' ? d < 0 : op === '>=' ? d >= 0 : assert.fail(`semverCompare ${op}`);
  };
  const term = (): unknown => {
    const t = tokens[i++];
    if (t === undefined) assert.fail(`incomplete condition: ${expr}`);
    if (t === '(') { const v = call(); assert.equal(tokens[i++], ')', expr); return v; }
    if (t.startsWith('"')) return t.slice(1, -1);
    if (/^\$?\.Values\./.test(t)) return get(ctx.values, t.replace(/^\$?\.Values\./, ''));
    if (t === '.Capabilities.KubeVersion.Version') return ctx.kubeVersion;
    if (/^\$[a-z]\w*$/i.test(t)) { assert.ok(ctx.vars?.has(t), `${t} is not set`); return ctx.vars!.get(t); }
    if (['not', 'and', 'or', 'eq', 'kindIs', 'semverCompare'].includes(t)) { i--; return call(); }
    return assert.fail(`condition not understood: ${expr} (at ${t})`);
  };
  const call = (): unknown => {
    const t = tokens[i++]!;
    switch (t) {
      case 'not': return !truthy(term());
      case 'and': { const a = term(); const b = term(); return truthy(a) ? b : a; }
      case 'or': { const a = term(); const b = term(); return truthy(a) ? a : b; }
      case 'eq': return term() === term();
      case 'kindIs': { const kind = term(); const v = term(); assert.equal(kind, 'invalid', 'only kindIs "invalid"'); return v === null || v === undefined; }
      case 'semverCompare': { const c = term() as string; const v = term() as string; const m = /^(<|>=)(\d+\.\d+)-0$/.exec(c)!; return cmp(v, m[1]!, m[2]!); }
      default: i--; return term();
    }
  };
  const v = call();
  assert.equal(i, tokens.length, `condition not understood: ${expr}`);
  return v;
}
const truthy = (v: unknown) => !(v === undefined || v === null || v === false || v === '' || v === 0
  || (Array.isArray(v) && v.length === 0) || (typeof v === 'object' && v !== null && Object.keys(v).length === 0));

/** Keeps the lines of the branches the values select; a line holding only actions is dropped (what
 * include/toYaml would add is not rendered); inline `.Values.x` (| quote) is substituted, any other
 * inline action becomes the placeholder X. */
function render(text: string, rctx: RenderContext): string {
  const ctx = { ...rctx, vars: new Map<string, unknown>() };
  const out: string[] = [];
  const stack: { on: boolean; taken: boolean }[] = [];
  const active = () => stack.every((s) => s.on);
  for (const line of text.split('\n')) {
    const only = /^\s*(\{\{[^}]*\}\}\s*)+$/.test(line);
    if (only) {
      for (const a of actionsOf(line, 'render')) {
        const [word, ...rest] = a.text.split(/\s+/);
        const cond = rest.join(' ');
        if (word === 'if' || word === 'with') { const on = truthy(evaluate(cond, ctx)); stack.push({ on, taken: on }); }
        else if (word === 'range') {
          // range over the chart's files (.Files.Glob "dir/*.ext"), or a list of the values
          const glob = /\.Files\.Glob "([^"]+)\/\*(\.[a-z]+)"$/.exec(cond);
          const on = glob
            ? existsSync(path.join(CHART, glob[1]!)) && readdirSync(path.join(CHART, glob[1]!)).some((f) => f.endsWith(glob[2]!))
            : truthy(evaluate(cond, ctx));
          stack.push({ on, taken: true });
        } else if (/^\$\w+$/.test(word!) && rest[0] === ':=') {
          const file = /^\.Files\.Get "([^"]+)"$/.exec(rest.slice(1).join(' '));
          assert.ok(file, `assignment not understood: ${a.text}`);
          const p = path.join(CHART, file[1]!);
          ctx.vars.set(word!, existsSync(p) ? readFileSync(p, 'utf8') : '');
        } else if (word === 'fail' && active()) throw new Error(`fail: ${cond}`);
        else if (word === 'define') stack.push({ on: false, taken: false });
        else if (word === 'else') { const top = stack.at(-1)!; top.on = !top.taken; top.taken = true; }
        else if (word === 'end') stack.pop();
      }
      continue;
    }
    if (!active()) continue;
    out.push(line.replace(/\{\{-?\s*(.*?)\s*-?\}\}/g, (_, a: string) => {
      const m = /^(?:required ("[^"]*") )?\$?\.Values\.([A-Za-z0-9_.]+)(\s*\|\s*quote)?$/.exec(a);
      if (!m) return 'X';
      const v = get(ctx.values, m[2]!);
      if (m[1] && !truthy(v)) throw new Error(`required: ${m[1]}`);
      return m[3] ? JSON.stringify(String(v)) : String(v);
    }));
  }
  return out.join('\n');
}

const DEFAULT_CTX: RenderContext = { values: VALUES, kubeVersion: 'v1.31.0' };
function objectsOf(file: string, ctx = DEFAULT_CTX): Record<string, unknown>[] {
  const docs = parseAllDocuments(render(readFileSync(path.join(TEMPLATES, file), 'utf8'), ctx));
  return (Array.isArray(docs) ? docs : [docs]).flatMap((d) => {
    assert.deepEqual(d.errors.map((e) => e.message), [], `${file}: not YAML once rendered`);
    const o = d.toJS() as Record<string, unknown> | null;
    return o ? [o] : [];
  });
}

/** The define'd body of a helper, rendered with the values, as YAML. */
function helper(name: string, ctx = DEFAULT_CTX): unknown {
  const lines = read('templates/_helpers.tpl').split('\n');
  const start = lines.findIndex((l) => l.includes(`define "${name}"`));
  assert.ok(start >= 0, `no define "${name}"`);
  let depth = 0;
  for (let i = start; i < lines.length; i++) {
    for (const a of actionsOf(lines[i]!, '_helpers.tpl')) {
      const word = a.text.split(/[\s(]/)[0]!;
      if (OPENERS.has(word)) depth++;
      else if (word === 'end') depth--;
    }
    if (depth === 0) return parse(render(lines.slice(start + 1, i).join('\n'), ctx));
  }
  return assert.fail(`define "${name}" is not closed`);
}

test('every template renders (line-based) to YAML of the expected kinds, with features on and off', () => {
  const everything = clone(VALUES);
  for (const k of ['serviceMonitor.enabled', 'dashboards.enabled', 'priorityClass.create', 'podNetns.enabled', 'hostProtection.autoHostEndpoints']) set(everything, k, true);
  const haveRules = existsSync(path.join(CHART, 'files', 'alerts', 'weir.rules.yaml'));
  set(everything, 'prometheusRule.enabled', haveRules);
  set(set(everything, 'store.mode', 'clickhouse'), 'store.clickhouse.passwordSecret.name', 'ch');
  // a ClickHouse store without its URL is refused by the template too (required)
  assert.throws(() => objectsOf('configmap.yaml', { values: everything, kubeVersion: 'v1.31.0' }), /required: "store.clickhouse.url is required/);
  set(everything, 'store.clickhouse.url', 'http://ch:8123');
  if (!haveRules) {
    assert.throws(() => objectsOf('prometheusrule.yaml', { values: set(clone(VALUES), 'prometheusRule.enabled', true), kubeVersion: 'v1.31.0' }), /fail: "prometheusRule.enabled: the chart has no files\/alerts/);
  }
  set(everything, 'agent.token.existingSecret', 'tok');
  const expected: Record<string, string> = {
    'daemonset.yaml': 'DaemonSet', 'serviceaccount.yaml': 'ServiceAccount', 'clusterrole.yaml': 'ClusterRole',
    'clusterrolebinding.yaml': 'ClusterRoleBinding', 'configmap.yaml': 'ConfigMap', 'service.yaml': 'Service',
    'servicemonitor.yaml': 'ServiceMonitor', 'prometheusrule.yaml': 'PrometheusRule', 'priorityclass.yaml': 'PriorityClass',
    'dashboards.yaml': 'ConfigMap',
  };
  for (const f of templateFiles.filter((x) => x.endsWith('.yaml'))) {
    assert.ok(expected[f], `a new template ${f}: add it here`);
    for (const values of [VALUES, everything]) {
      for (const o of objectsOf(f, { values, kubeVersion: 'v1.31.0' })) assert.equal(o.kind, expected[f], f);
    }
  }
  // off by default: the optional objects render to nothing
  for (const f of ['servicemonitor.yaml', 'prometheusrule.yaml', 'priorityclass.yaml']) assert.deepEqual(objectsOf(f), [], f);
});

// ---- RBAC: exactly what the agent watches and writes ----

test('the ClusterRole grants every verb of WATCHED_RESOURCES and WRITTEN_RESOURCES, and nothing more', () => {
  const [role] = objectsOf('clusterrole.yaml');
  const rules = (role as { rules: { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: unknown; nonResourceURLs?: unknown }[] }).rules;
  const granted = new Set<string>();
  for (const r of rules) {
    assert.equal(r.nonResourceURLs, undefined);
    for (const g of r.apiGroups) for (const res of r.resources) for (const v of r.verbs) {
      assert.ok(![g, res, v].includes('*'), `a wildcard in ${JSON.stringify(r)}`);
      granted.add(`${g}/${res}:${v}`);
    }
  }
  const needed = new Set<string>();
  for (const w of WATCHED_RESOURCES) for (const v of w.verbs) needed.add(`${w.group}/${w.resource}:${v}`);
  for (const w of WRITTEN_RESOURCES) for (const v of w.verbs) needed.add(`${w.group}/${w.resource}:${v}`);
  assert.deepEqual([...granted].sort(), [...needed].sort());
  const [binding] = objectsOf('clusterrolebinding.yaml');
  assert.deepEqual((binding as { roleRef: unknown }).roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'X' });
});

// ---- the DaemonSet's privileges ----

type Container = { securityContext: { capabilities: { add: string[]; drop: string[] }; privileged: boolean; allowPrivilegeEscalation: boolean; appArmorProfile?: unknown }; volumeMounts: { name: string; mountPath: string }[] };
type PodSpec = { hostNetwork: boolean; hostPID?: boolean; containers: Container[]; volumes: { name: string; hostPath?: { path: string } }[] };
const podSpec = (ctx = DEFAULT_CTX) => ((objectsOf('daemonset.yaml', ctx)[0] as { spec: { template: { spec: PodSpec } } }).spec.template.spec);

test('the DaemonSet\'s capabilities are exactly the README\'s list; not privileged; the mounts', () => {
  const documented = [...(/<!-- capabilities -->([\s\S]*?)<!-- \/capabilities -->/.exec(read('README.md'))?.[1] ?? '').matchAll(/^- `([A-Z_]+)`/gm)].map((m) => m[1]);
  assert.deepEqual(documented, ['BPF', 'PERFMON', 'NET_ADMIN']);
  const spec = podSpec();
  const sc = spec.containers[0]!.securityContext;
  assert.deepEqual(sc.capabilities.add, documented);
  assert.deepEqual(sc.capabilities.drop, ['ALL']);
  assert.equal(sc.privileged, false);
  assert.equal(sc.allowPrivilegeEscalation, false);
  assert.equal(spec.hostNetwork, true);
  assert.equal(spec.hostPID, undefined, 'no hostPID');
  const hostPaths = spec.volumes.filter((v) => v.hostPath).map((v) => v.hostPath!.path);
  assert.deepEqual(hostPaths, ['/sys/fs/bpf', '/var/lib/weir']);
  // pod discovery inside pods' namespaces: SYS_ADMIN and /run/netns, and only then
  const withNetns = podSpec({ values: set(clone(VALUES), 'podNetns.enabled', true), kubeVersion: 'v1.31.0' });
  assert.deepEqual(withNetns.containers[0]!.securityContext.capabilities.add, [...documented, 'SYS_ADMIN']);
  assert.deepEqual(withNetns.volumes.filter((v) => v.hostPath).map((v) => v.hostPath!.path), ['/sys/fs/bpf', '/var/lib/weir', '/run/netns']);
  // extra capabilities are added, never replace the list
  assert.equal(read('templates/daemonset.yaml').match(/- (BPF|PERFMON|NET_ADMIN|SYS_ADMIN)$/gm)?.length, 4);
  // AppArmor: the field from 1.30 (its content is toYaml of the value), the annotation before
  const annotations = (kubeVersion: string) => (objectsOf('daemonset.yaml', { values: VALUES, kubeVersion })[0] as { spec: { template: { metadata: { annotations: Record<string, string> } } } })
    .spec.template.metadata.annotations;
  assert.ok('appArmorProfile' in sc);
  assert.equal(annotations('v1.31.0')['container.apparmor.security.beta.kubernetes.io/agent'], undefined);
  assert.ok(!('appArmorProfile' in podSpec({ values: VALUES, kubeVersion: 'v1.29.4' }).containers[0]!.securityContext));
  assert.equal(annotations('v1.29.4')['container.apparmor.security.beta.kubernetes.io/agent'], 'unconfined');
});

// ---- the agent's command line and its settings ----

test('the agent\'s arguments follow the contract, with the settings the ConfigMap holds', () => {
  const args = (values: Values) => helper('weir.agentArgs', { values, kubeVersion: 'v1.31.0' }) as string[];
  assert.deepEqual(args(VALUES), ['agent', '--datastore=kubernetes', '--node=$(NODE_NAME)', '--data-dir=$(WEIR_DATA_DIR)', '--listen=$(WEIR_LISTEN)', '--interval=$(WEIR_INTERVAL)']);
  const v = clone(VALUES);
  set(set(v, 'store.mode', 'clickhouse'), 'store.clickhouse.url', 'http://ch:8123');
  set(v, 'store.clickhouse.passwordSecret.name', 'ch');
  set(v, 'agent.token.existingSecret', 'tok');
  set(v, 'hostProtection.autoHostEndpoints', true);
  set(v, 'hostProtection.failsafes.inbound', '');
  assert.deepEqual(args(v).slice(6), [
    '--token-file=/etc/weir/token/token',
    '--clickhouse-url=$(WEIR_CLICKHOUSE_URL)', '--clickhouse-user=$(WEIR_CLICKHOUSE_USER)', '--clickhouse-database=$(WEIR_CLICKHOUSE_DATABASE)',
    '--clickhouse-password-file=/etc/weir/clickhouse/password',
    '--auto-host-endpoints', '--failsafe-inbound=$(WEIR_FAILSAFE_INBOUND)',
  ]);
  assert.ok(args(set(clone(VALUES), 'hostProtection.failsafes.enabled', false)).includes('--no-failsafes'));
  // every $(VAR) an argument uses is a key of the ConfigMap for the same values, or NODE_NAME
  for (const values of [VALUES, v]) {
    const data = (objectsOf('configmap.yaml', { values, kubeVersion: 'v1.31.0' })[0] as { data: Record<string, string> }).data;
    for (const a of args(values)) {
      for (const m of a.matchAll(/\$\(([A-Z_]+)\)/g)) assert.ok(m[1] === 'NODE_NAME' || m[1]! in data, `${a}: ${m[1]} is not in the ConfigMap`);
    }
    assert.ok(Object.keys(data).every((k) => args(values).some((a) => a.includes(`$(${k})`))), 'every ConfigMap key is used');
  }
  // the DaemonSet mounts the files those arguments name
  const mounts = podSpec({ values: v, kubeVersion: 'v1.31.0' }).containers[0]!.volumeMounts.map((m) => m.mountPath);
  assert.ok(mounts.includes('/etc/weir/token') && mounts.includes('/etc/weir/clickhouse'), mounts.join(' '));
});

test('the chart\'s versions: appVersion is the agent\'s', () => {
  const chart = parse(read('Chart.yaml')) as { apiVersion: string; version: string; appVersion: string };
  const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  assert.equal(chart.apiVersion, 'v2');
  assert.equal(chart.appVersion, pkg.version);
  assert.match(chart.version, /^\d+\.\d+\.\d+$/);
});

// ---- alerts and dashboards: the chart's copies of the repository's files ----

test('the chart\'s alert rules and dashboards equal the repository\'s', (t) => {
  const pairs: [string, string][] = [];
  const rules = path.join(repoRoot, 'alerts', 'weir.rules.yaml');
  if (existsSync(rules) || existsSync(path.join(CHART, 'files', 'alerts', 'weir.rules.yaml'))) pairs.push([rules, path.join(CHART, 'files', 'alerts', 'weir.rules.yaml')]);
  const dashboards = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')) : []);
  const top = path.join(repoRoot, 'dashboards');
  const local = path.join(CHART, 'files', 'dashboards');
  for (const f of new Set([...dashboards(top), ...dashboards(local)])) pairs.push([path.join(top, f), path.join(local, f)]);
  if (pairs.length === 0) {
    t.skip('the repository has no alerts/weir.rules.yaml and no dashboards/*.json yet (issue 7): nothing to compare');
    return;
  }
  for (const [repoFile, chartFile] of pairs) {
    assert.ok(existsSync(repoFile), `${path.relative(repoRoot, chartFile)} has no ${path.relative(repoRoot, repoFile)}`);
    assert.ok(existsSync(chartFile), `${path.relative(repoRoot, repoFile)} has no chart copy: cp it to ${path.relative(repoRoot, chartFile)}`);
    assert.equal(readFileSync(chartFile, 'utf8'), readFileSync(repoFile, 'utf8'), `${path.relative(repoRoot, chartFile)} differs from ${path.relative(repoRoot, repoFile)}`);
  }
  // what the templates make of them: a rules file is a PrometheusRule's spec (groups only); a
  // dashboard is JSON that fits in a ConfigMap (1 MiB)
  const rulesCopy = path.join(CHART, 'files', 'alerts', 'weir.rules.yaml');
  if (existsSync(rulesCopy)) {
    const spec = parse(readFileSync(rulesCopy, 'utf8')) as Record<string, unknown>;
    assert.deepEqual(Object.keys(spec), ['groups']);
    assert.ok(Array.isArray(spec.groups) && spec.groups.length > 0);
  }
  for (const f of dashboards(local)) {
    const text = readFileSync(path.join(local, f), 'utf8');
    assert.doesNotThrow(() => JSON.parse(text), f);
    assert.ok(Buffer.byteLength(text) < 1024 * 1024, `${f}: too big for a ConfigMap`);
  }
});
