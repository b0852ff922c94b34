// The node agent's command line: `weir agent --datastore ...` (flags registered on the agent
// command in src/agent/cli.ts, run here) and `weir node uninstall`.
import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import type { WorldName } from '../flows/registry.js';
import { CNI_STYLES, type CniStyleName } from '../datapath/discovery/styles.js';
import { AgentStoreError } from '../agent/agent.js';
import type { MetricsOptions } from '../metrics/agent-metrics.js';
import { DEFAULT_PIN_ROOT, runNodeAgent, type DatastoreChoice } from './node-agent.js';
import { uninstallNode } from './uninstall.js';

/** The flags of `weir agent` a node agent reads. */
export interface NodeFlags {
  datastore?: 'kubernetes' | 'files';
  kubeconfig?: string;
  manifests?: string;
  node?: string;
  dataDir?: string;
  clickhouseUrl?: string;
  clickhouseUser?: string;
  clickhousePassword?: string;
  clickhousePasswordFile?: string;
  clickhouseDatabase?: string;
  interval: number;
  listen: { host: string; port: number };
  token?: string;
  tokenFile?: string;
  keepIps?: boolean;
  worldName?: WorldName[];
  autoHostEndpoints?: boolean;
  failsafeInbound?: string;
  failsafeOutbound?: string;
  /** false with --no-failsafes */
  failsafes: boolean;
  cni: string;
  hostInterfaces?: string;
  pinRoot: string;
}

function readSecret(file: string, flag: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new InvalidArgumentError(`${flag}: ${JSON.stringify(file)}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  const value = text.replace(/\r?\n$/, ''); // a Secret's file often ends with a newline
  if (value === '') throw new InvalidArgumentError(`${flag}: ${JSON.stringify(file)} is empty`);
  return value;
}

/** --token-file and --clickhouse-password-file into token / clickhousePassword. */
export function readSecretFlags(o: Pick<NodeFlags, 'token' | 'tokenFile' | 'clickhousePassword' | 'clickhousePasswordFile'>): void {
  if (o.tokenFile !== undefined) {
    if (o.token !== undefined) throw new InvalidArgumentError('give --token (or WEIR_API_TOKEN) or --token-file, not both');
    o.token = readSecret(o.tokenFile, '--token-file');
  }
  if (o.clickhousePasswordFile !== undefined) {
    if (o.clickhousePassword !== undefined) throw new InvalidArgumentError('give --clickhouse-password (or WEIR_CLICKHOUSE_PASSWORD) or --clickhouse-password-file, not both');
    o.clickhousePassword = readSecret(o.clickhousePasswordFile, '--clickhouse-password-file');
  }
}

/** `weir agent --datastore ...`: runs until SIGINT/SIGTERM, then stops reading and flushes,
 * leaving the programs and pins in place. */
export async function runNodeFlags(o: NodeFlags, metrics?: MetricsOptions): Promise<void> {
  const log = (line: string): void => { process.stderr.write(`weir agent: ${line}\n`); };
  if (!o.node) throw new InvalidArgumentError('--node: required with --datastore (this node\'s name; in a pod: the downward API\'s spec.nodeName)');
  if (!o.dataDir) throw new InvalidArgumentError('--data-dir: required with --datastore (the agent\'s state, spool and embedded store)');
  let datastore: DatastoreChoice;
  if (o.datastore === 'files') {
    if (!o.manifests) throw new InvalidArgumentError('--manifests: required with --datastore files');
    if (o.kubeconfig !== undefined) throw new InvalidArgumentError('--kubeconfig: only with --datastore kubernetes');
    datastore = { kind: 'files', dir: o.manifests };
  } else {
    if (o.manifests !== undefined) throw new InvalidArgumentError('--manifests: only with --datastore files');
    datastore = { kind: 'kubernetes', ...(o.kubeconfig !== undefined ? { kubeconfig: o.kubeconfig } : {}) };
  }
  if (!o.failsafes && (o.failsafeInbound !== undefined || o.failsafeOutbound !== undefined)) {
    throw new InvalidArgumentError('give --failsafe-inbound/--failsafe-outbound or --no-failsafes, not both');
  }
  if (!(o.cni in CNI_STYLES)) throw new InvalidArgumentError(`--cni: ${JSON.stringify(o.cni)} is not one of ${Object.keys(CNI_STYLES).join(', ')}`);
  readSecretFlags(o);
  const agent = await runNodeAgent({
    datastore, node: o.node, dataDir: o.dataDir, listen: o.listen, intervalMs: o.interval,
    ...(o.clickhouseUrl ? {
      store: {
        url: o.clickhouseUrl,
        ...(o.clickhouseUser !== undefined ? { username: o.clickhouseUser } : {}),
        ...(o.clickhousePassword !== undefined ? { password: o.clickhousePassword } : {}),
        ...(o.clickhouseDatabase !== undefined ? { database: o.clickhouseDatabase } : {}),
      },
    } : {}),
    ...(o.token !== undefined ? { token: o.token } : {}),
    ...(o.keepIps ? { keepIps: true } : {}),
    ...(o.worldName ? { worldNames: o.worldName } : {}),
    autoHostEndpoints: o.autoHostEndpoints === true,
    failsafes: o.failsafes
      ? { ...(o.failsafeInbound !== undefined ? { inbound: o.failsafeInbound } : {}), ...(o.failsafeOutbound !== undefined ? { outbound: o.failsafeOutbound } : {}) }
      : { disabled: true },
    cni: o.cni as CniStyleName,
    ...(o.hostInterfaces !== undefined ? { hostInterfaces: o.hostInterfaces } : {}),
    pinRoot: o.pinRoot,
    ...(metrics ? { metrics } : {}),
    log,
  }).catch((err: Error) => {
    if (err instanceof AgentStoreError) throw new Error(`${err.message} (nothing was changed on the node)`);
    throw err;
  });
  if (!o.failsafes) log('warning: failsafes are disabled: a host policy can lock operators out of this node');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  log('stopping: flushing flows; programs and pins stay (enforcement continues; `weir node uninstall` removes them)');
  await agent.stop();
  const s = agent.flowAgent.stats();
  log(`stopped; ${s.rowsWritten} rows written, ${s.lost.total} events lost`);
  process.exitCode = 0;
}

export function addNodeCommand(program: Command): void {
  const node = program.command('node').description('a real node\'s Weir installation (the agent itself is `weir agent --datastore ...`)');
  node.command('uninstall')
    .description('remove Weir from this node: its tc programs from every interface of this network namespace, then the pins (stop the agent first, or it attaches again)')
    .option('--pin-root <dir>', 'where the datapath is pinned (bpffs)', DEFAULT_PIN_ROOT)
    .action(async (o: { pinRoot: string }) => {
      const r = await uninstallNode(o.pinRoot, (line) => console.error(`weir node uninstall: ${line}`));
      console.log(`detached from ${r.detached.length} interface(s)${r.detached.length ? `: ${r.detached.join(', ')}` : ''}; ${r.pinsRemoved ? `removed ${o.pinRoot}` : `nothing pinned under ${o.pinRoot}`}`);
    });
}
