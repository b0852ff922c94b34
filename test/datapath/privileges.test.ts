import test from 'node:test';
import assert from 'node:assert/strict';
import { PrivilegeError, requirePrivileges, explainBpfFailure } from '../../src/datapath/privileges.js';

test('without root, the error says what is needed and how to get it', () => {
  assert.throws(() => requirePrivileges('weir lab up', 1000), (e: unknown) => {
    assert.ok(e instanceof PrivilegeError);
    assert.match(e.message, /^weir lab up needs root: it creates network namespaces .* run it as root/);
    return true;
  });
  assert.doesNotThrow(() => requirePrivileges('weir lab up', 0));
});

test('kernel refusals are explained', () => {
  assert.match(explainBpfFailure({ code: 'EPERM' })!, /run as root/);
  assert.match(explainBpfFailure({ code: 'ENOSYS' })!, /lacks BPF support/);
  assert.equal(explainBpfFailure({ code: 'ENOENT' }), undefined);
});
