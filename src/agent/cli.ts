// `weir agent`: the flow agent of a lab as a long-running process. Registered on the `weir`
// command by src/cli/main.ts; everything it does is in agent.ts.
import { Command, Option, InvalidArgumentError } from 'commander';
import { DEFAULT_LAB } from '../lab/lab.js';
import { parseCidr } from '../datastore/cidr.js';
import type { WorldName } from '../flows/registry.js';
import { runAgent, AgentStoreError, DEFAULT_INTERVAL_MS, defaultDataDir, type StoreTarget } from './agent.js';

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

interface AgentFlags {
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
    .action(async (o: AgentFlags) => {
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
