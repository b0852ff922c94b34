// `npm run demo`: the whole story in one minute. A small lab from examples/, traffic that policy
// allows and denies, the flows the datapath reported (who, to whom, port, verdict, policy), the
// denied flows as the flow agent stored them (`weir observe --verdict denied`), then a clean
// teardown and what to try next.
//
// The lab's ring buffer has one reader: the flow agent, run in this process into an embedded chDB
// store in a temporary directory (removed at the end), not the background agent `weir lab up`
// starts (the library's Lab.up starts none), because step 3 prints the agent's raw batches,
// decoded and named, before its pipeline aggregates them: only a listener in the agent's own
// process sees those (the background agent's stream carries rows).
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Lab } from '../lab/lab.js';
import { labExists, type LabState } from '../lab/state.js';
import { formatProbeTable, probeLab } from '../lab/probe.js';
import { labResolver } from '../lab/resolver.js';
import { decodeRecord } from '../datapath/abi.js';
import { describeRecord, formatFlow, type FlowView } from '../flows/describe.js';
import { runAgent, type Agent } from '../agent/agent.js';
import { openStore } from '../store/store.js';
import { runObserve } from './observe.js';
import { repoRoot } from '../paths.js';

const LAB = 'demo';
const example = (f: string) => path.join(repoRoot, 'examples', f);

/** The store steps must not hold the demo (and its teardown) hostage. */
const STORE_STEP_TIMEOUT_MS = 30_000;

async function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} within ${STORE_STEP_TIMEOUT_MS / 1000} s`)), STORE_STEP_TIMEOUT_MS);
    })]);
  } finally {
    clearTimeout(timer);
  }
}

function step(text: string): void {
  console.log(`\n== ${text}`);
}

export async function runDemo(): Promise<void> {
  if (labExists(LAB)) {
    console.log(`a lab "${LAB}" is left from an earlier run; removing it first`);
    await Lab.down(LAB);
  }
  step('weir lab up -f examples/demo.yaml   (4 pods in 3 namespaces, no policy yet)');
  const { lab } = await Lab.up(LAB, [example('demo.yaml')]);
  const flows: FlowView[] = [];
  const storeDir = mkdtempSync(path.join(os.tmpdir(), 'weir-demo-flows-'));
  let agent: Agent | undefined;
  try {
    // The flow agent reads the lab's ring buffer into a flow store (chDB, embedded).
    agent = await runAgent({ lab: LAB, store: { dataDir: storeDir } });
    const resolver = labResolver(() => lab.snapshot as LabState);
    agent.onRecords((batch) => { for (const raw of batch) flows.push(describeRecord(decodeRecord(raw), resolver)); });
    const matrix = async (port: number, protocol: 'TCP' | 'UDP' = 'TCP', family: 4 | 6 = 4) => {
      console.log(formatProbeTable(await probeLab(lab.snapshot, { port, protocol, family, timeoutMs: 1000 })));
    };
    console.log('Without policy every pod reaches every pod:');
    await matrix(8080);
    agent.drain();
    flows.length = 0; // from here on, show what policy does

    step('weir lab apply -f examples/demo-policy.yaml   (default deny in api, plus three allows)');
    await lab.apply([example('demo-policy.yaml')]);
    console.log('Now only web/frontend reaches api/orders, and only api/orders reaches api/payments:');
    await matrix(8080);
    console.log('\nThe same over IPv6:');
    await matrix(8080, 'TCP', 6);
    console.log('\nUDP 9090: the api pods are sealed (default deny), the others still talk:');
    await matrix(9090, 'UDP');

    // Let the last records arrive, then read them.
    await new Promise((r) => setTimeout(r, 300));
    agent.drain();
    step(`flows the datapath reported since the policies (${flows.length} records from the BPF ring buffer, names resolved)`);
    // One line per decision; each pod-to-pod flow is judged twice: the sender's egress, the receiver's ingress.
    // Records from the two CPUs arrive interleaved; show them in time order.
    const shown = flows.filter((f) => f.type !== 'flow-end' && f.src?.kind === 'pod').sort((a, b) => a.time.getTime() - b.time.getTime());
    for (const f of shown.slice(0, 60)) console.log(formatFlow(f));
    if (shown.length > 60) console.log(`... and ${shown.length - 60} more`);
    const denied = flows.filter((f) => f.verdict === 'deny').length;
    const allowed = flows.filter((f) => f.type === 'flow-start' && f.verdict === 'allow').length;
    console.log(`\n${allowed} allow decisions and ${denied} deny records, each with the original source address and what decided it.`);

    // Everything the agent holds reaches the store; then the observe command reads it back
    // (through the agent's API, which the lab's agent.json names).
    await withTimeout(agent.flush(), 'the flow agent did not reach its store');
    step(`weir observe --lab ${LAB} --verdict denied   (denied flows, as the flow agent stored them in ClickHouse: embedded chDB)`);
    await withTimeout(runObserve({ lab: LAB, verdict: ['denied'], output: 'table' }, { openStore, write: (t) => process.stdout.write(t) }),
      'weir observe did not answer');
    const s = agent.stats();
    console.log(`\nThe agent stored ${s.rowsWritten} rows (allowed flows aggregated per interval, each denied flow with its original 5-tuple); events lost at any stage: ${s.lost.total}.`);
  } finally {
    if (agent) await withTimeout(agent.close(), 'the flow agent did not close').catch((e: Error) => console.error(`weir demo: ${e.message}`));
    rmSync(storeDir, { recursive: true, force: true });
    lab.close();
    step('weir lab down');
    await Lab.down(LAB);
    console.log('removed every namespace, veth, qdisc, process and pin the demo made');
  }
  console.log(`
What to try next (as root):
  weir lab up -f examples/demo.yaml            # the same lab, left running, with its flow agent (npx weir, or node dist/src/cli/main.js)
  weir lab observe &                           # live flows from the agent's stream (lab up --no-agent: every ring record instead)
  weir lab probe --port 8080                   # the reachability matrix
  weir lab apply -f examples/demo-policy.yaml  # enforce the policies; probe again
  weir observe --verdict denied --namespace api   # then: denied flows from the agent's store
  weir lab status                              # pods, policies, counters, the agent's rows and losses
  weir policy explain --from ops/debug --to api/orders --port 8080   # which rule decides, and why
  weir lab exec api/orders -- ip addr          # look inside a pod
  weir lab down                                # clean up`);
}
