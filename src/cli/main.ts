#!/usr/bin/env node
// The `weir` command line. Each subcommand is a thin shell over a library call; errors print one
// clear message (no stack trace) and exit non-zero.
import { spawnSync } from 'node:child_process';
import { Command, Option, InvalidArgumentError } from 'commander';
import { Lab, DEFAULT_LAB, type LabSettings } from '../lab/lab.js';
import { labHostEndpoints } from '../lab/host-protection.js';
import { readLabState } from '../lab/state.js';
import { formatProbeTable, probeLab } from '../lab/probe.js';
import { formatLabStatus } from '../lab/status.js';
import { observeLab } from '../flows/observe.js';
import { runDemo } from './demo.js';
import { addAgentCommand, parseDuration } from '../agent/cli.js';
import { addNodeCommand } from '../node/cli.js';
import { defaultDataDir } from '../agent/agent.js';
import { formatLabAgentStatus, labAgentLog, labAgentStatus, LAB_AGENT_INTERVAL_MS, startLabAgent } from '../lab/lab-agent.js';
import { addObserveCommand } from './observe.js';
import { openStore } from '../store/store.js';
import { explainBpfFailure } from '../datapath/privileges.js';
import { checkPolicies, formatCheck } from '../policy/check.js';
import { explainLab, formatExplanation } from '../policy/explain.js';
import { requirePrivileges } from '../datapath/privileges.js';
import { formatProblem, ManifestError } from '../datastore/manifest.js';
import { ClusterStateError } from '../datastore/cluster.js';
import { DEFAULT_FAILSAFE_INBOUND, DEFAULT_FAILSAFE_OUTBOUND, FailsafeConfigError } from '../policy/failsafe.js';

function portNumber(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new InvalidArgumentError(`"${value}" is not a port number (1-65535)`);
  return n;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`"${value}" is not a positive integer`);
  return n;
}

function podRef(value: string): string {
  if (!/^[a-z0-9-]+\/[a-z0-9.-]+$/.test(value)) throw new InvalidArgumentError(`"${value}" is not NAMESPACE/POD`);
  return value;
}

function probeEndpoint(value: string): string {
  if (value === 'host' || value === 'world') return value;
  if (!/^[a-z0-9-]+\/[a-z0-9.-]+$/.test(value)) throw new InvalidArgumentError(`"${value}" is not NAMESPACE/POD, host or world`);
  return value;
}

function printChange(change: { created: string[]; updated: string[]; deleted: string[] }, settings: string[] = []): void {
  for (const c of change.created) console.log(`created ${c}`);
  for (const c of change.updated) console.log(`updated ${c}`);
  for (const c of change.deleted) console.log(`deleted ${c}`);
  for (const c of settings) console.log(`set ${c}`);
  if (change.created.length + change.updated.length + change.deleted.length + settings.length === 0) console.log('no changes');
}

/** The lab's host protection settings in words, one per setting. */
function settingsText(s: Lab['settings']): string[] {
  const f = s.failsafes;
  return [
    `auto-host-endpoints ${s.autoHostEndpoints ? 'on' : 'off'}`,
    f.disabled ? 'failsafes disabled' : 'failsafes enabled',
    `failsafe-inbound ${f.inbound === undefined ? '(default)' : JSON.stringify(f.inbound)}`,
    `failsafe-outbound ${f.outbound === undefined ? '(default)' : JSON.stringify(f.outbound)}`,
  ];
}

/** The host protection flags of `weir lab up` and `weir lab apply`. */
interface HostFlags {
  autoHostEndpoints?: boolean;
  failsafeInbound?: string;
  failsafeOutbound?: string;
  failsafes?: boolean;
}

function addHostFlags(cmd: Command, persisted: string): Command {
  return cmd
    .option('--auto-host-endpoints', `one automatic HostEndpoint for the lab node ("*", the Node's labels and addresses; an applied HostEndpoint of the node for "*" wins)${persisted}`)
    .option('--no-auto-host-endpoints', 'no automatic HostEndpoint')
    .option('--failsafe-inbound <spec>', `failsafe ports to the node, no host policy can close them ("" for none; default "${DEFAULT_FAILSAFE_INBOUND}")${persisted}`)
    .option('--failsafe-outbound <spec>', `failsafe ports from the node ("" for none; default "${DEFAULT_FAILSAFE_OUTBOUND}")${persisted}`)
    .option('--failsafes', 'failsafe ports enabled (the default; undoes --no-failsafes)')
    .option('--no-failsafes', 'disable failsafe ports: host policy alone decides, and can lock operators out of the node');
}

function hostSettings(o: HostFlags): LabSettings {
  const failsafes = {
    ...(o.failsafeInbound !== undefined ? { inbound: o.failsafeInbound } : {}),
    ...(o.failsafeOutbound !== undefined ? { outbound: o.failsafeOutbound } : {}),
    ...(o.failsafes !== undefined ? { disabled: !o.failsafes } : {}),
  };
  return {
    ...(o.autoHostEndpoints !== undefined ? { autoHostEndpoints: o.autoHostEndpoints } : {}),
    ...(Object.keys(failsafes).length > 0 ? { failsafes } : {}),
  };
}

/** Warnings about host protection (failsafes disabled, Deny rules failsafes override) go to
 * stderr, as `weir policy check` prints them. */
function printWarnings(l: Lab): void {
  for (const w of l.warnings()) console.error(`weir: warning: ${w}`);
  for (const n of l.notes()) console.error(`weir: note: ${n}`);
}

export function buildCli(): Command {
  const program = new Command('weir')
    .description('eBPF network policy enforcement and flow logging for Kubernetes nodes and Linux hosts')
    .showHelpAfterError();

  const lab = program.command('lab').description('a Kubernetes node on this machine: pods as network namespaces, real traffic through the real datapath');
  const labName = () => new Option('--name <lab>', 'lab name, so several labs can coexist').env('WEIR_LAB').default(DEFAULT_LAB);
  const KINDS = 'Kubernetes YAML files (Namespace, Pod, NetworkPolicy, Node, HostEndpoint, GlobalNetworkPolicy)';
  const files = () => new Option('-f, --filename <file...>', KINDS).makeOptionMandatory();

  addHostFlags(lab.command('up').description('create the lab from manifests, load and attach the datapath, apply policy, start the lab\'s flow agent')
    .addOption(files()).addOption(labName())
    .option('--no-agent', 'start no flow agent (`weir lab observe` then reads the ring buffer itself, one line per record)')
    .option('--agent-data-dir <dir>', `the flow agent's embedded store (default ${defaultDataDir('<lab>')}: flows outlive the lab)`)
    .addOption(new Option('--agent-interval <duration>', 'the flow agent\'s aggregation interval of allowed flows').argParser(parseDuration)
      .default(LAB_AGENT_INTERVAL_MS, `${LAB_AGENT_INTERVAL_MS / 1000}s`)), ' (kept until changed by `weir lab apply`)')
    .action(async (o: { filename: string[]; name: string; agent: boolean; agentDataDir?: string; agentInterval: number } & HostFlags) => {
      const { lab: l, change } = await Lab.up(o.name, o.filename, hostSettings(o));
      try {
        printChange(change);
        const heps = labHostEndpoints(l.snapshot).map((h) => h.name);
        console.log(`lab "${o.name}" is up: ${Object.keys(l.snapshot.pods).length} pods${heps.length > 0 ? `, host endpoints ${heps.join(', ')}` : ''}`);
        printWarnings(l);
      } finally { l.close(); }
      if (!o.agent) return;
      try {
        const a = await startLabAgent(o.name, { intervalMs: o.agentInterval, ...(o.agentDataDir !== undefined ? { dataDir: o.agentDataDir } : {}) });
        console.log(`flow agent: pid ${a.pid}, API ${a.url}, store ${a.store}, log ${a.log}`);
      } catch (err) {
        // The datapath does not depend on the agent: the lab stays up and enforces policy.
        const reason = (err as Error).message.replace(/ \(the lab's datapath keeps enforcing policy without the agent\)$/, '');
        throw new Error(`lab "${o.name}" is up and enforces policy, but its flow agent did not start: ${reason} `
          + `(log ${labAgentLog(o.name)}; start one with \`weir agent --lab ${o.name}\`, or remove the lab with \`weir lab down --name ${o.name}\`)`);
      }
    });

  addHostFlags(lab.command('apply').description('create or replace objects, change host protection settings; returns once the datapath enforces them')
    .addOption(new Option('-f, --filename <file...>', `${KINDS}; optional when only settings change`)).addOption(labName()), ' (kept)')
    .action(async (o: { filename?: string[]; name: string } & HostFlags) => {
      const settings = hostSettings(o);
      if (!o.filename && Object.keys(settings).length === 0) {
        throw new Error('nothing to apply: give -f FILE, or a setting (--auto-host-endpoints, --failsafe-inbound, --failsafe-outbound, --[no-]failsafes)');
      }
      const l = Lab.open(o.name);
      try {
        const before = settingsText(l.settings);
        const change = await l.apply(o.filename ?? [], settings);
        printChange(change, settingsText(l.settings).filter((t) => !before.includes(t)));
        printWarnings(l);
      } finally { l.close(); }
    });

  lab.command('delete').description('delete the objects the manifests name; returns once the datapath enforces it')
    .addOption(files()).addOption(labName())
    .action(async (o: { filename: string[]; name: string }) => {
      const l = Lab.open(o.name);
      try {
        const change = await l.delete(o.filename);
        printChange(change);
        for (const m of change.missing) console.log(`not found: ${m}`);
      } finally { l.close(); }
    });

  lab.command('probe').description('try every pod to every pod (itself included) and print the reachability matrix')
    .option('--port <port>', 'destination port', portNumber, 80)
    .addOption(new Option('--protocol <protocol>', 'TCP or UDP').choices(['TCP', 'UDP']).default('TCP'))
    .option('--from <ns/pod|host|world>', 'only from this pod, the node (host) or the outside (world)', probeEndpoint)
    .option('--to <ns/pod|host|world>', 'only to this pod, the node (host) or the outside (world)', probeEndpoint)
    .option('-6, --ipv6', 'probe the pods\' IPv6 addresses')
    .option('--timeout <ms>', 'per-probe timeout', positiveInt)
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
    .addOption(labName())
    .action(async (o: { port: number; protocol: 'TCP' | 'UDP'; from?: string; to?: string; ipv6?: boolean; timeout?: number; output: string; name: string }) => {
      const report = await probeLab(readLabState(o.name), {
        port: o.port, protocol: o.protocol, family: o.ipv6 ? 6 : 4,
        ...(o.from ? { from: o.from } : {}), ...(o.to ? { to: o.to } : {}), ...(o.timeout ? { timeoutMs: o.timeout } : {}),
      });
      console.log(o.output === 'json' ? JSON.stringify(report) : formatProbeTable(report));
    });

  lab.command('exec').description('run a command inside a pod\'s network namespace')
    .argument('<ns/pod>', 'the pod', podRef).argument('<command...>', 'command and arguments (after --)')
    .addOption(labName())
    .action((pod: string, command: string[], o: { name: string }) => {
      const state = readLabState(o.name);
      const p = state.pods[pod];
      if (!p) throw new Error(`${pod}: no such pod in lab "${o.name}"`);
      const r = spawnSync('ip', ['netns', 'exec', p.netns, ...command], { stdio: 'inherit' });
      process.exitCode = r.status ?? 1;
    });

  lab.command('status').description('pods, addresses, policies, datapath counters and the flow agent')
    .addOption(labName())
    .action(async (o: { name: string }) => {
      const l = Lab.open(o.name);
      try { console.log(formatLabStatus(l)); } finally { l.close(); }
      console.log(`\n${formatLabAgentStatus(o.name, await labAgentStatus(o.name))}`);
    });

  lab.command('observe').description('live flows with pod names: from the lab\'s flow agent when it runs, else from the datapath\'s ring buffer')
    .addHelpText('after', `
Where the lines come from:
  With the lab's flow agent running (\`weir lab up\` starts one), the agent is the ring buffer's one
  reader, and observe follows its live stream (GET /api/v1/flows/stream): the rows the agent stores.
  Allowed flows arrive aggregated, one row per source, destination, port and rule at the end of
  each interval (--agent-interval of \`weir lab up\`, default ${LAB_AGENT_INTERVAL_MS / 1000}s), with packet and byte counts;
  denied (and audit, log) flows arrive one row each with their original 5-tuple, also at the
  interval's end; lost events as LOST rows. --json prints the rows (src/store/row.ts).
  Without an agent (\`weir lab up --no-agent\`, or after it stopped), observe reads the ring buffer
  itself and prints every record as it comes: each policy decision (flow start, deny, log) and
  each flow end, per hook, with the deciding rule. --json prints the records.`)
    .option('--json', 'one JSON object per row (agent) or record (ring buffer)')
    .option('--duration <seconds>', 'stop after this long', positiveInt)
    .addOption(labName())
    .action(async (o: { json?: boolean; duration?: number; name: string }) => {
      await observeLab(o.name, { json: !!o.json, ...(o.duration ? { durationMs: o.duration * 1000 } : {}) });
    });

  lab.command('down').description('stop the lab\'s flow agent, remove every namespace, link, route, qdisc, process and pin of the lab (safe to run twice)')
    .addOption(labName())
    .action(async (o: { name: string }) => {
      const { wasUp, agentsStopped } = await Lab.down(o.name);
      if (agentsStopped.length > 0) console.log(`stopped the flow agent (pid ${agentsStopped.join(', ')})`);
      console.log(wasUp ? `lab "${o.name}" is down` : `lab "${o.name}" was not up; nothing left behind`);
    });

  const policy = program.command('policy').description('NetworkPolicy tools: check works offline with no privileges; explain asks a running lab');
  policy.command('check').description('validate manifests offline (every error with its field path); with pods, print who may talk to whom per port')
    .addOption(new Option('-f, --filename <file...>', 'Kubernetes YAML files (NetworkPolicy, Namespace, Pod, HostEndpoint, GlobalNetworkPolicy)').makeOptionMandatory())
    .option('--pods <file...>', 'Pod manifests (status.podIP used when given, else addresses as the lab assigns them)')
    .option('--port <port>', 'only this port (default: every port the policies name)', portNumber)
    .addOption(new Option('--protocol <protocol>', 'with --port its protocol (default TCP); without, only the policies\' ports of it').choices(['TCP', 'UDP', 'SCTP']))
    .option('-6, --ipv6', 'evaluate the pods\' IPv6 addresses')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
    .option('--failsafe-inbound <spec>', `failsafe ports to the host, for host policy warnings ("" for none; default "${DEFAULT_FAILSAFE_INBOUND}")`)
    .option('--failsafe-outbound <spec>', `failsafe ports from the host ("" for none; default "${DEFAULT_FAILSAFE_OUTBOUND}")`)
    .option('--no-failsafes', 'assume failsafe ports are disabled (a host policy can then lock you out of the node)')
    .action((o: { filename: string[]; pods?: string[]; port?: number; protocol?: 'TCP' | 'UDP' | 'SCTP'; ipv6?: boolean; output: string;
      failsafeInbound?: string; failsafeOutbound?: string; failsafes: boolean }) => {
      let result;
      try {
        result = checkPolicies({
          files: o.filename, family: o.ipv6 ? 6 : 4,
          ...(o.pods ? { pods: o.pods } : {}), ...(o.port !== undefined ? { port: o.port } : {}), ...(o.protocol ? { protocol: o.protocol } : {}),
          failsafes: {
            ...(o.failsafeInbound !== undefined ? { inbound: o.failsafeInbound } : {}),
            ...(o.failsafeOutbound !== undefined ? { outbound: o.failsafeOutbound } : {}),
            disabled: !o.failsafes,
          },
        });
      } catch (err) {
        // Every problem on its own line, then exit 1.
        if (err instanceof ManifestError) {
          console.error(`weir: ${err.problems.length} problem${err.problems.length === 1 ? '' : 's'}:`);
          for (const p of err.problems) console.error(`  ${formatProblem(p)}`);
        } else if (err instanceof ClusterStateError) {
          console.error(`weir: ${err.problems.length} problem${err.problems.length === 1 ? '' : 's'}:`);
          for (const p of err.problems) console.error(`  ${p}`);
        } else if (err instanceof FailsafeConfigError) {
          console.error(`weir: ${err.message}`);
        } else {
          throw err;
        }
        process.exitCode = 1;
        return;
      }
      if (o.output === 'json') {
        // stdout stays one JSON object; the warnings are in it and, so nobody misses them, on stderr
        for (const w of result.warnings) console.error(`weir: warning: ${w}`);
        console.log(JSON.stringify(result));
      } else {
        console.log(formatCheck(result));
      }
    });

  policy.command('explain').description('in the lab: the verdict of one flow and the policies/rules that decide it, from the reference evaluator and from the datapath, side by side')
    .requiredOption('--from <ns/pod>', 'the sending pod', podRef)
    .requiredOption('--to <ns/pod>', 'the receiving pod', podRef)
    .requiredOption('--port <port>', 'destination port', portNumber)
    .addOption(new Option('--protocol <protocol>', 'protocol').choices(['TCP', 'UDP', 'SCTP']).default('TCP'))
    .option('-6, --ipv6', 'the pods\' IPv6 addresses')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
    .addOption(labName())
    .action((o: { from: string; to: string; port: number; protocol: 'TCP' | 'UDP' | 'SCTP'; ipv6?: boolean; output: string; name: string }) => {
      const state = readLabState(o.name);
      requirePrivileges('weir policy explain');
      const e = explainLab(state, { from: o.from, to: o.to, port: o.port, protocol: o.protocol, family: o.ipv6 ? 6 : 4 });
      console.log(o.output === 'json' ? JSON.stringify(e) : formatExplanation(e));
    });

  addObserveCommand(program, openStore);

  addAgentCommand(program);
  addNodeCommand(program);

  program.command('demo').description('bring up a small lab, send allowed and denied traffic, show the flows, tear down')
    .action(async () => { await runDemo(); });

  return program;
}

async function main(): Promise<void> {
  try {
    await buildCli().parseAsync(process.argv);
  } catch (err) {
    const e = err as Error;
    console.error(`weir: ${e.message}`);
    const hint = explainBpfFailure(err);
    if (hint) console.error(`weir: ${hint}`);
    if (process.env.WEIR_DEBUG) console.error(e.stack);
    process.exitCode = 1;
  }
}

await main();
