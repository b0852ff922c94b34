// `weir agent`: the flow agent of a lab as a long-running process. Registered on the `weir`
// command by src/cli/main.ts; everything it does is in agent.ts.
import { Command, Option, InvalidArgumentError } from 'commander';
import { DEFAULT_LAB } from '../lab/lab.js';
import { parseCidr } from '../datastore/cidr.js';
import type { WorldName } from '../flows/registry.js';
import { metricsFlagOptions, metricsOptionsOf, type MetricsFlags } from '../metrics/cli.js';
import { runAgent, AgentStoreError, DEFAULT_INTERVAL_MS, defaultDataDir, type StoreTarget } from './agent.js';
import { readSecretFlags, runNodeFlags, type NodeFlags } from '../node/cli.js';
import { DEFAULT_PIN_ROOT } from '../node/node-agent.js';

/** "15s", "1m", "500ms", or plain seconds. */
export function parseDuration(value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
  if (!m) throw new InvalidArgumentError(`"${value}" is not a duration (e.g. 15s, 1m, 500ms)`);
  const n = Number(m[1]) * ({ ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? 's'] ?? 1000);
  if (!(n >= 100) || n > 3_600_000) throw new InvalidArgumentError(`"${value}": the interval must be between 100ms and 1h`);
  return Math.round(n);
}

/** HOST:PORT, [V6]:PORT or PORT (on 127.0.0.1); port 0 picks a free one. */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value) ?? /^()()(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new InvalidArgumentError(`"${value}" is not HOST:PORT (e.g. 127.0.0.1:9470)`);
  return { host: m[1] || m[2] || '127.0.0.1', port };
}

/** CIDR=NAME, e.g. 10.0.0.0/8=corp */
function worldName(value: string, previous: WorldName[] = []): WorldName[] {
  const m = /^([0-9a-fA-F.:]+\/\d{1,3})=(.+)$/.exec(value);
  if (!m || !parseCidr(m[1]!)) throw new InvalidArgumentError(`"${value}" is not CIDR=NAME (e.g. 10.0.0.0/8=corp)`);
  return [...previous, { cidr: m[1]!, name: m[2]! }];
}

interface AgentFlags extends NodeFlags, MetricsFlags {
  lab: string;
  dataDir?: string;
  clickhouseUrl?: string;
  clickhouseUser?: string;
  clickhousePassword?: string;
  clickhouseDatabase?: string;
  interval: number;
  listen: { host: string; port: number };
  token?: string;
  keepIps?: boolean;
  worldName?: WorldName[];
}

export function addAgentCommand(program: Command): void {
  program.command('agent')
    .description('the flow agent of a lab: ring buffer -> enrichment -> aggregation -> flow store, plus the query API (runs until SIGINT/SIGTERM)')
    .addOption(new Option('--lab <lab>', 'the lab whose datapath to read (its ring buffer has one reader: `weir lab up` starts an agent unless --no-agent; while one runs, `weir lab observe` follows its stream)').env('WEIR_LAB').default(DEFAULT_LAB))
    .option('--data-dir <dir>', 'embedded store (chDB) data directory (default /var/lib/weir/flows/<lab>)')
    .option('--clickhouse-url <url>', 'a ClickHouse server instead of the embedded store, e.g. http://localhost:8123')
    .option('--clickhouse-user <user>', 'ClickHouse user')
    .addOption(new Option('--clickhouse-password <password>', 'ClickHouse password').env('WEIR_CLICKHOUSE_PASSWORD'))
    .option('--clickhouse-database <db>', 'ClickHouse database')
    .addOption(new Option('--interval <duration>', 'aggregation interval of allowed flows').argParser(parseDuration).default(DEFAULT_INTERVAL_MS, '15s'))
    .addOption(new Option('--listen <host:port>', 'the query API\'s address (port 0: any free port; the address is written to the lab\'s agent.json)')
      .argParser(parseListen).default({ host: '127.0.0.1', port: 0 }, '127.0.0.1:0'))
    .addOption(new Option('--token <token>', 'bearer token the API requires').env('WEIR_API_TOKEN'))
    .option('--keep-ips', 'allowed-flow aggregates keep the endpoints\' addresses')
    .option('--world-name <cidr=name>', 'a name for outside addresses in CIDR (repeatable)', worldName)
    .addOption(metricsFlagOptions[0]!).addOption(metricsFlagOptions[1]!).addOption(metricsFlagOptions[2]!)
    // a real node (docs/node.md): the agent programs the datapath itself from a datastore
    .addOption(new Option('--datastore <kind>', 'run as a node\'s agent: policy from the Kubernetes API or a directory of manifests (instead of --lab)').choices(['kubernetes', 'files']))
    .option('--kubeconfig <path>', 'with --datastore kubernetes: this kubeconfig (default: in-cluster service account, else $KUBECONFIG/~/.kube/config)')
    .option('--manifests <dir>', 'with --datastore files: the directory of YAML manifests (watched)')
    .option('--node <name>', 'with --datastore: this node\'s name (pods\' spec.nodeName)')
    .option('--token-file <file>', 'a file holding the bearer token the API requires')
    .option('--clickhouse-password-file <file>', 'a file holding the ClickHouse password')
    .option('--auto-host-endpoints', 'with --datastore: a HostEndpoint <node>-auto-hep for all of the node\'s host interfaces')
    .option('--failsafe-inbound <list>', 'with --datastore: inbound failsafe ports, e.g. "tcp:22,udp:68" (default Calico\'s)')
    .option('--failsafe-outbound <list>', 'with --datastore: outbound failsafe ports, e.g. "udp:53,tcp:443" (default Calico\'s)')
    .option('--no-failsafes', 'with --datastore: no failsafe ports (a host policy can lock operators out)')
    .option('--cni <style>', 'with --datastore: how pod interfaces look: calico, cilium, flannel, bridge, kindnet, auto', 'auto')
    .option('--host-interfaces <patterns>', 'with --datastore: the interfaces a "*" host endpoint covers, e.g. "eth*,bond0" (default: those with a global address that are no pod veth, bridge, tunnel or dummy)')
    .option('--pin-root <dir>', 'with --datastore: where the datapath is pinned (bpffs)', DEFAULT_PIN_ROOT)
    .action(async (o: AgentFlags, cmd: Command) => {
      if (o.datastore !== undefined) {
        if (cmd.getOptionValueSource('lab') === 'cli') throw new InvalidArgumentError('give --lab (a lab\'s flow agent) or --datastore (a node\'s agent), not both');
        await runNodeFlags(o, metricsOptionsOf(o));
        return;
      }
      for (const f of ['node', 'manifests', 'kubeconfig', 'autoHostEndpoints', 'failsafeInbound', 'failsafeOutbound', 'hostInterfaces'] as const) {
        if (o[f] !== undefined) throw new InvalidArgumentError(`--${f.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} needs --datastore (a node's agent)`);
      }
      readSecretFlags(o);
      if (o.dataDir && o.clickhouseUrl) throw new InvalidArgumentError('give --data-dir or --clickhouse-url, not both');
      const store: StoreTarget = o.clickhouseUrl
        ? {
          url: o.clickhouseUrl,
          ...(o.clickhouseUser !== undefined ? { username: o.clickhouseUser } : {}),
          ...(o.clickhousePassword !== undefined ? { password: o.clickhousePassword } : {}),
          ...(o.clickhouseDatabase !== undefined ? { database: o.clickhouseDatabase } : {}),
        }
        : { dataDir: o.dataDir ?? defaultDataDir(o.lab) };
      let labGone = (): void => undefined;
      let agent;
      try {
        agent = await runAgent({
          lab: o.lab, store, intervalMs: o.interval, listen: o.listen,
          ...(o.token !== undefined ? { token: o.token } : {}),
          ...(o.keepIps ? { keepIps: true } : {}),
          ...(o.worldName ? { worldNames: o.worldName } : {}),
          metrics: metricsOptionsOf(o),
          log: (line) => console.error(`weir agent: ${line}`),
          onLabGone: () => labGone(),
        });
      } catch (err) {
        if (err instanceof AgentStoreError) {
          // The datapath does not depend on the agent: enforcement goes on without it.
          throw new Error(`${err.message} (the lab's datapath keeps enforcing policy without the agent)`);
        }
        throw err;
      }
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
        labGone = resolve; // nothing left to read
      });
      console.error('weir agent: stopping: flushing rows to the store');
      await agent.close();
      const s = agent.stats();
      console.error(`weir agent: stopped; ${s.rowsWritten} rows written, ${s.lost.total} events lost`);
      process.exitCode = 0;
    });
}
