// `npm run bench [-- datapath|throughput|policy|host|pipeline] [--quick]`: runs one benchmark, or all (in
// this order). Each prints human-readable lines and ends with one JSON line
// {"bench":"<name>","metrics":{...}}. Exit status is non-zero when a benchmark could not measure
// what it claims to (e.g. the datapath dropped packets it should pass); speed never fails it.
import * as datapath from './datapath.js';
import * as throughput from './throughput.js';
import * as policy from './policy.js';
import * as host from './host.js';
import * as pipeline from './pipeline.js';
import { interruptedExitCode } from './common.js';

const BENCHES: Record<string, (args: readonly string[]) => Promise<void>> = {
  datapath: datapath.main,
  throughput: throughput.main,
  policy: policy.main,
  host: host.main,
  pipeline: pipeline.main,
};

async function main(argv: readonly string[]): Promise<number> {
  const first = argv[0];
  const names = first === undefined || first.startsWith('--') ? Object.keys(BENCHES) : [first];
  const rest = first === undefined || first.startsWith('--') ? argv : argv.slice(1);
  for (const n of names) {
    if (!BENCHES[n]) {
      console.error(`bench: unknown benchmark "${n}" (one of: ${Object.keys(BENCHES).join(', ')}; none = all)`);
      return 2;
    }
  }
  for (const n of names) await BENCHES[n]!(rest);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    // Interrupted: the failure is the signal's doing (e.g. iperf3 servers stopped under a run);
    // the signal handler exits once teardown is done.
    if (interruptedExitCode() !== undefined) return;
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exit(1);
  },
);
