// The metric selectors of a PromQL expression (names and the labels they match on) and the labels
// it groups by, for checking alert rules and dashboards against the metric catalog. A small scanner, not a
// parser: it skips string literals, range and subquery brackets `[...]`, numbers and durations,
// Grafana variables (`$__rate_interval`, `$namespace`), keywords and operators and function calls
// (an identifier followed by `(`); it reads label matchers `{...}` (a `__name__` matcher names the
// metric) and the label lists after by, without, on, ignoring, group_left and group_right. What
// is left are metric selectors.

const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset', 'and', 'or', 'unless', 'atan2', 'inf', 'nan']);
const LABEL_LIST_AFTER = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);

export class PromQlError extends Error {
  override readonly name = 'PromQlError';
}

export interface Selector {
  readonly name: string;
  /** label names the selector matches on (`__name__` excluded) */
  readonly labels: readonly string[];
}

export interface Scan {
  readonly selectors: readonly Selector[];
  /** labels named in by/without/on/ignoring/group_left/group_right lists */
  readonly grouping: readonly string[];
}

const MATCHER = /([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)\s*(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)/g;

function matcherLabels(body: string): string[] {
  return [...body.matchAll(MATCHER)].map((m) => m[1]!);
}

/** The metric names an expression reads. */
export function metricNames(expr: string): string[] {
  return [...new Set(scan(expr).selectors.map((s) => s.name))];
}

export function scan(expr: string): Scan {
  const selectors: Selector[] = [];
  const grouping: string[] = [];
  let i = 0;
  let depth = 0;
  const closing = (open: string, close: string, from: number): number => {
    let depth = 0;
    for (let j = from; j < expr.length; j++) {
      const c = expr[j]!;
      if (c === '"' || c === "'" || c === '`') {
        j = skipString(expr, j);
        continue;
      }
      if (c === open) depth++;
      else if (c === close && --depth === 0) return j;
    }
    throw new PromQlError(`unbalanced "${open}" at offset ${from} in: ${expr}`);
  };
  while (i < expr.length) {
    const c = expr[i]!;
    if (c === '"' || c === "'" || c === '`') {
      i = skipString(expr, i) + 1;
      continue;
    }
    if (c === '#') {
      // a comment runs to the end of the line
      while (i < expr.length && expr[i] !== '\n') i++;
      continue;
    }
    if (c === '{') {
      // a selector by matchers alone: {__name__="x", ...}
      const end = closing('{', '}', i);
      const body = expr.slice(i + 1, end);
      const m = /__name__\s*=\s*"([^"]+)"/.exec(body);
      if (m) selectors.push({ name: m[1]!, labels: matcherLabels(body).filter((l) => l !== '__name__') });
      i = end + 1;
      continue;
    }
    if (c === '[') {
      i = closing('[', ']', i) + 1;
      continue;
    }
    if (c === '$') {
      // a Grafana variable: $name or ${name...}
      i++;
      if (expr[i] === '{') i = closing('{', '}', i) + 1;
      else while (i < expr.length && /\w/.test(expr[i]!)) i++;
      continue;
    }
    if (/[0-9.]/.test(c)) {
      // numbers, hex, exponents, durations (5m, 1h30m)
      while (i < expr.length && /[0-9a-zA-Z_.+]/.test(expr[i]!) && !(expr[i] === '+' && !/[eE]/.test(expr[i - 1]!))) i++;
      continue;
    }
    if (/[a-zA-Z_:]/.test(c)) {
      let j = i;
      while (j < expr.length && /[a-zA-Z0-9_:]/.test(expr[j]!)) j++;
      const word = expr.slice(i, j);
      let k = j;
      while (k < expr.length && /\s/.test(expr[k]!)) k++;
      const lower = word.toLowerCase();
      if (LABEL_LIST_AFTER.has(lower)) {
        // by (a, b): a label list
        if (expr[k] === '(') {
          const end = closing('(', ')', k);
          grouping.push(...expr.slice(k + 1, end).split(',').map((l) => l.trim()).filter((l) => l !== ''));
          k = end + 1;
        }
        i = k;
        continue;
      }
      // an aggregation with its grouping first (`sum by (le) (...)`) is no selector either
      const aggregation = /^(by|without)\b/i.test(expr.slice(k));
      if (KEYWORDS.has(lower) || expr[k] === '(' || aggregation) {
        i = j;
        continue;
      }
      let labels: string[] = [];
      if (expr[k] === '{') {
        const end = closing('{', '}', k);
        labels = matcherLabels(expr.slice(k + 1, end));
        k = end + 1;
      } else {
        k = j;
      }
      selectors.push({ name: word, labels });
      i = k;
      continue;
    }
    if (c === '(') depth++;
    else if (c === ')' && --depth < 0) throw new PromQlError(`unbalanced ")" at offset ${i} in: ${expr}`);
    i++;
  }
  if (depth !== 0) throw new PromQlError(`${depth} unclosed "(" in: ${expr}`);
  return { selectors, grouping: [...new Set(grouping)] };
}

function skipString(s: string, start: number): number {
  const q = s[start]!;
  for (let j = start + 1; j < s.length; j++) {
    if (s[j] === '\\' && q !== '`') j++;
    else if (s[j] === q) return j;
  }
  throw new PromQlError(`unterminated string at offset ${start} in: ${s}`);
}
