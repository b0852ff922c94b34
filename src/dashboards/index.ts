// Every dashboard, by the file it is written to under dashboards/.

import { agentHealth } from './agent-health.js';
import { deniedFlows, trafficOverview } from './flow-dashboards.js';

export const DASHBOARDS: Readonly<Record<string, Record<string, unknown>>> = {
  'denied-flows.json': deniedFlows,
  'traffic-overview.json': trafficOverview,
  'agent-health.json': agentHealth,
};
