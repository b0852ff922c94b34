// Kubernetes label selector matching (metav1.LabelSelector semantics): every matchLabels pair and
// every matchExpressions requirement must hold; an empty selector matches everything.
import type { LabelSelector, Labels } from '../datastore/objects.js';

export function matchesSelector(selector: LabelSelector, labels: Labels): boolean {
  // for-in, not Object.entries: this runs for every (policy, identity) pair the compiler checks
  for (const key in selector.matchLabels) {
    if (labels[key] !== selector.matchLabels[key]) return false;
  }
  for (const req of selector.matchExpressions) {
    const has = Object.prototype.hasOwnProperty.call(labels, req.key);
    switch (req.operator) {
      case 'In':
        if (!has || !req.values.includes(labels[req.key]!)) return false;
        break;
      case 'NotIn':
        // As in Kubernetes: a missing key satisfies NotIn.
        if (has && req.values.includes(labels[req.key]!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
    }
  }
  return true;
}

/** Human-readable form, as kubectl prints selectors: `app=web,tier in (a,b),!legacy`. */
export function formatSelector(selector: LabelSelector): string {
  const parts = Object.entries(selector.matchLabels).map(([k, v]) => `${k}=${v}`);
  for (const r of selector.matchExpressions) {
    if (r.operator === 'In') parts.push(`${r.key} in (${r.values.join(',')})`);
    else if (r.operator === 'NotIn') parts.push(`${r.key} notin (${r.values.join(',')})`);
    else if (r.operator === 'Exists') parts.push(r.key);
    else parts.push(`!${r.key}`);
  }
  return parts.length > 0 ? parts.join(',') : '<all>';
}
