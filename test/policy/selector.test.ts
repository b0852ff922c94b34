import test from 'node:test';
import assert from 'node:assert/strict';
import { matchesSelector, formatSelector } from '../../src/policy/selector.js';

const sel = (matchLabels: Record<string, string>, matchExpressions: { key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values?: string[] }[] = []) =>
  ({ matchLabels, matchExpressions: matchExpressions.map((e) => ({ ...e, values: e.values ?? [] })) });

test('empty selector matches everything', () => {
  assert.equal(matchesSelector(sel({}), {}), true);
  assert.equal(matchesSelector(sel({}), { a: 'b' }), true);
});

test('matchLabels and every operator', () => {
  const labels = { app: 'web', tier: 'front' };
  assert.equal(matchesSelector(sel({ app: 'web' }), labels), true);
  assert.equal(matchesSelector(sel({ app: 'db' }), labels), false);
  assert.equal(matchesSelector(sel({}, [{ key: 'tier', operator: 'In', values: ['front', 'back'] }]), labels), true);
  assert.equal(matchesSelector(sel({}, [{ key: 'missing', operator: 'In', values: ['x'] }]), labels), false);
  assert.equal(matchesSelector(sel({}, [{ key: 'tier', operator: 'NotIn', values: ['front'] }]), labels), false);
  assert.equal(matchesSelector(sel({}, [{ key: 'missing', operator: 'NotIn', values: ['x'] }]), labels), true);
  assert.equal(matchesSelector(sel({}, [{ key: 'app', operator: 'Exists' }]), labels), true);
  assert.equal(matchesSelector(sel({}, [{ key: 'app', operator: 'DoesNotExist' }]), labels), false);
  assert.equal(matchesSelector(sel({ app: 'web' }, [{ key: 'tier', operator: 'In', values: ['back'] }]), labels), false);
});

test('formatSelector reads like kubectl', () => {
  assert.equal(formatSelector(sel({ app: 'web' }, [{ key: 't', operator: 'In', values: ['a', 'b'] }, { key: 'x', operator: 'DoesNotExist' }])), 'app=web,t in (a,b),!x');
  assert.equal(formatSelector(sel({})), '<all>');
});
