// Where the agent finds its API server: an explicit --kubeconfig path, else the in-cluster service
// account (KUBERNETES_SERVICE_HOST/PORT and the token and CA the kubelet mounts), else the default
// kubeconfig ($KUBECONFIG, ~/.kube/config). @kubernetes/client-node does the loading; this only
// picks the order an agent needs (a DaemonSet pod must use its service account even when a
// kubeconfig lies around) and refuses the library's last resort, http://localhost:8080, which
// would only ever produce confusing connection errors.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';

/** Where the kubelet mounts the service account (the library's own constant, not exported). */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface KubeConfigOptions {
  /** --kubeconfig: this file and nothing else */
  readonly kubeconfig?: string;
  /** prefix of the service account directory (tests; the library's loadFromCluster(pathPrefix)) */
  readonly inClusterRoot?: string;
}

export interface LoadedKubeConfig {
  readonly kubeConfig: KubeConfig;
  /** how it was found, for the agent's startup log */
  readonly source: 'kubeconfig-flag' | 'in-cluster' | 'default-kubeconfig';
  /** the API server's URL */
  readonly server: string;
}

export function loadKubeConfig(opts: KubeConfigOptions = {}): LoadedKubeConfig {
  // the library reads process.env itself (loadFromCluster, loadFromDefault): so does this
  const env = process.env;
  const kc = new KubeConfig();
  let source: LoadedKubeConfig['source'];
  if (opts.kubeconfig !== undefined) {
    if (!existsSync(opts.kubeconfig)) throw new Error(`--kubeconfig: ${JSON.stringify(opts.kubeconfig)}: no such file`);
    try {
      kc.loadFromFile(opts.kubeconfig);
    } catch (err) {
      throw new Error(`--kubeconfig: ${JSON.stringify(opts.kubeconfig)}: ${(err as Error).message}`);
    }
    source = 'kubeconfig-flag';
  } else if (env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT
    && existsSync(path.join(opts.inClusterRoot ?? '', SERVICE_ACCOUNT_DIR, 'token'))) {
    kc.loadFromCluster(opts.inClusterRoot ?? '');
    source = 'in-cluster';
  } else {
    const files = (env.KUBECONFIG ?? '').split(path.delimiter).filter((f) => f);
    const home = env.HOME ?? env.USERPROFILE;
    const defaultFile = home ? path.join(home, '.kube', 'config') : undefined;
    if (!files.some((f) => existsSync(f)) && !(defaultFile && existsSync(defaultFile))) {
      throw new Error('no Kubernetes configuration: not in a cluster (KUBERNETES_SERVICE_HOST/PORT and a service account token), '
        + `no $KUBECONFIG file${defaultFile ? ` and no ${defaultFile}` : ''}; pass --kubeconfig`);
    }
    kc.loadFromDefault();
    source = 'default-kubeconfig';
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error(`Kubernetes configuration (${source}): no current cluster (context ${JSON.stringify(kc.getCurrentContext())})`);
  return { kubeConfig: kc, source, server: cluster.server };
}
