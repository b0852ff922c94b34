import test from 'node:test';
import assert from 'node:assert/strict';
import { decodeRecordFast } from '../../src/flows/decode.js';
import { Direction, EventType, Hook, Proto, Reason, Verdict, decodeRecord } from '../../src/datapath/abi.js';
import { SEC, encodeFlow, encodeLost } from './records.js';

test('the pipeline\'s decoder agrees with decodeRecord on every record type, both families, and bad records', () => {
  const recs: Buffer[] = [];
  const addrs: Array<[string, string]> = [['10.0.0.1', '10.255.0.2'], ['fd00::1', '2001:db8:0:1::ffff'], ['::', '::1'], ['::ffff:0:1', 'fe80::1:0:0:0']];
  let i = 0;
  for (const type of ['FLOW_START', 'DENY', 'FLOW_END', 'LOG'] as const) {
    for (const [saddr, daddr] of addrs) {
      i++;
      recs.push(encodeFlow({
        type, saddr, daddr, sport: 1000 + i, dport: 65535, proto: Proto.SCTP, direction: Direction.BOTH, verdict: Verdict.AUDIT,
        reason: Reason.DENY_END_OF_TIER, hook: Hook.TO_HOST_DEV, tcpFlags: 0xff, ifindex: 0xfffffff0, srcEp: i, dstEp: 2 * i, srcIdentity: 0xffffffff,
        dstIdentity: 3, egressRuleId: 17 + i, ingressRuleId: 18, forwardRuleId: 19, count: 7, cpu: 63, tsNs: 123n * SEC + BigInt(i), startNs: 5n,
        packetsFwd: 2n ** 63n, bytesFwd: 1n, packetsRev: 2n, bytesRev: 2n ** 64n - 1n,
      }));
    }
  }
  recs.push(encodeLost(9n * SEC, 42n, 3));
  const wrongVersion = Buffer.from(recs[0]!);
  wrongVersion[0] = 9;
  const wrongType = Buffer.from(recs[0]!);
  wrongType[1] = 77;
  const wrongLen = Buffer.from(recs[0]!);
  wrongLen.writeUInt16LE(100, 2);
  const lostAsFlow = Buffer.from(recs[0]!);
  lostAsFlow[1] = EventType.LOST;
  recs.push(wrongVersion, wrongType, wrongLen, lostAsFlow, recs[0]!.subarray(0, 100), Buffer.alloc(3), Buffer.alloc(0));
  for (const r of recs) assert.deepEqual(decodeRecordFast(r), decodeRecord(r));
});
