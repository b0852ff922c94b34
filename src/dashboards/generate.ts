// Writes the dashboards to dashboards/*.json (the files users import) and to the Helm chart's copy
// (charts/weir/files/dashboards/, when the chart has that folder), or with --check says which
// files differ from what the definitions generate, exiting 1:
//   npx tsc -p . && node dist/src/dashboards/generate.js [--check]

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DASHBOARDS } from './index.js';

/** The repository's dashboards/ folder (this file runs from dist/src/dashboards). */
export const DASHBOARDS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../dashboards');
/** The chart's copy, which its templates turn into ConfigMaps for Grafana's sidecar. */
export const CHART_DASHBOARDS_DIR = path.resolve(DASHBOARDS_DIR, '../charts/weir/files/dashboards');

export function dashboardJson(d: Record<string, unknown>): string {
  return `${JSON.stringify(d, null, 2)}\n`;
}

function main(): void {
  const check = process.argv.includes('--check');
  const stale: string[] = [];
  const dirs = [DASHBOARDS_DIR, ...(existsSync(CHART_DASHBOARDS_DIR) ? [CHART_DASHBOARDS_DIR] : [])];
  for (const [file, d] of Object.entries(DASHBOARDS)) {
    const text = dashboardJson(d);
    for (const dir of dirs) {
      const target = path.join(dir, file);
      if (check) {
        let current = '';
        try {
          current = readFileSync(target, 'utf8');
        } catch {
          // a missing file is stale too
        }
        if (current !== text) stale.push(target);
      } else {
        writeFileSync(target, text);
        console.log(`wrote ${target}`);
      }
    }
  }
  if (stale.length > 0) {
    console.error(`dashboards out of date (run node dist/src/dashboards/generate.js): ${stale.join(', ')}`);
    process.exitCode = 1;
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
