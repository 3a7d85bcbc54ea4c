/**
 * Static checks of the deployment files under docker/: Compose, Prometheus, Grafana and
 * Kubernetes. Nothing is started; every file is parsed and cross-checked against the app's own
 * contract (env variables, ports, probe paths, shutdown timing, metric names).
 */
import { describe, it, expect } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join, posix, relative, resolve } from 'node:path';
import { loadAll } from 'js-yaml';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { ENV_DEFAULTS, validateEnv } from '../../../src/config/env.schema.js';
import { SHUTDOWN_BACKSTOP_MS } from '../../../src/lifecycle/shutdown-step.js';
import { tracingSettings } from '../../../src/tracing/tracing-sdk.js';
import { LOCK_METRIC, METRIC } from '../../../src/metrics/metrics.constants.js';

const REPO = resolve(import.meta.dirname, '../../..');
const DOCKER = join(REPO, 'docker');
const K8S = join(DOCKER, 'k8s');
const DASHBOARD = join(DOCKER, 'grafana/dashboards/message-processor.json');
const SERVICE = 'message-processor';

// ---------------------------------------------------------------------------------------------
// Parsing and narrowing helpers: parsed YAML/JSON is `unknown` until proven otherwise.
// ---------------------------------------------------------------------------------------------

type Obj = Record<string, unknown>;

function isObj(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function obj(value: unknown, what: string): Obj {
  if (!isObj(value)) throw new Error(`${what}: expected a mapping, got ${JSON.stringify(value)}`);
  return value;
}

function arr(value: unknown, what: string): unknown[] {
  if (!Array.isArray(value)) throw new Error(`${what}: expected a list, got ${typeof value}`);
  return value as unknown[];
}

function str(value: unknown, what: string): string {
  if (typeof value !== 'string') throw new Error(`${what}: expected a string, got ${typeof value}`);
  return value;
}

function num(value: unknown, what: string): number {
  if (typeof value !== 'number') throw new Error(`${what}: expected a number, got ${typeof value}`);
  return value;
}

/** Follows a dotted path through nested mappings (list indexes as numbers). */
function at(root: unknown, path: string): unknown {
  let current = root;
  for (const key of path.split('.')) {
    if (Array.isArray(current) && /^\d+$/.test(key)) current = (current as unknown[])[Number(key)];
    else current = obj(current, path)[key];
  }
  return current;
}

/** A string-to-string map (env blocks, ConfigMap data, labels); numbers are stringified. */
function stringMap(value: unknown, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, v] of Object.entries(obj(value, what))) {
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
      throw new Error(`${what}.${key}: expected a scalar`);
    }
    out[key] = String(v);
  }
  return out;
}

function listFiles(dir: string, pattern: RegExp): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && pattern.test(entry.name))
    .map((entry) => join(entry.parentPath, entry.name))
    .sort();
}

const yamlFiles = listFiles(DOCKER, /\.ya?ml$/);
const parsed = new Map<string, unknown[]>(
  yamlFiles.map((file) => [relative(DOCKER, file), loadAll(readFileSync(file, 'utf8'))]),
);

/** The single document of a YAML file under docker/. */
function doc(file: string): Obj {
  const docs = parsed.get(file);
  if (!docs) throw new Error(`${file} was not parsed (does it exist?)`);
  if (docs.length !== 1) throw new Error(`${file}: expected one document, got ${docs.length}`);
  return obj(docs[0], file);
}

interface K8sObject {
  readonly file: string;
  readonly kind: string;
  readonly name: string;
  readonly body: Obj;
}

const k8sObjects: K8sObject[] = [...parsed]
  .filter(([file]) => file.startsWith('k8s/'))
  .flatMap(([file, docs]) =>
    docs
      .filter((d) => d !== null && d !== undefined)
      .map((d) => {
        const body = obj(d, file);
        const name = isObj(body.metadata) ? body.metadata.name : undefined;
        return {
          file,
          kind: str(body.kind, `${file} kind`),
          name: typeof name === 'string' ? name : '',
          body,
        };
      }),
  );

function k8s(kind: string): K8sObject {
  const found = k8sObjects.filter((o) => o.kind === kind);
  if (found.length !== 1)
    throw new Error(`expected one ${kind} in docker/k8s, got ${found.length}`);
  return found[0];
}

/** Go duration as Compose writes it (`30s`, `1m30s`, `500ms`) in milliseconds. */
function durationMs(text: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  expect(parts.map((p) => p[0]).join('')).toBe(text);
  return parts.reduce((sum, p) => sum + Number(p[1]) * units[p[2]], 0);
}

/**
 * A variable the app reads and validates: validateEnv reports an issue naming it when given a
 * value no variable of the app accepts. (ENV_DEFAULTS lists only the variables with a default;
 * REDIS_LOCK_URLS and LOG_FORMAT have none.)
 */
function isAppEnvVar(name: string): boolean {
  // OpenTelemetry's standard variables are read by the tracing SDK (tracingSettings)
  if (/^OTEL_[A-Z_]+$/.test(name)) return true;
  const { issues } = validateEnv({ [name]: '%not-valid%' });
  return issues.some((issue) => issue.variable === name);
}

// ---------------------------------------------------------------------------------------------
// The documents under test
// ---------------------------------------------------------------------------------------------

const compose = doc('compose.yaml');
const composeServices = obj(compose.services, 'services');
const processor = obj(composeServices[SERVICE], `services.${SERVICE}`);
const processorEnv = stringMap(processor.environment, `services.${SERVICE}.environment`);
const prometheusConfig = doc('prometheus/prometheus.yml');
const alertRules = doc('prometheus/alerts.yml');
const dashboard = obj(JSON.parse(readFileSync(DASHBOARD, 'utf8')), 'dashboard');

const deployment = k8s('Deployment').body;
const podSpec = obj(at(deployment, 'spec.template.spec'), 'pod spec');
const podLabels = stringMap(at(deployment, 'spec.template.metadata.labels'), 'pod labels');
const container = obj(
  arr(podSpec.containers, 'containers').find((c) => isObj(c) && c.name === SERVICE),
  'the message-processor container',
);
const configMap = k8s('ConfigMap');
const configData = stringMap(configMap.body.data, 'ConfigMap data');
const secret = k8s('Secret');
const secretData = stringMap(secret.body.stringData, 'Secret stringData');

/** The port the app listens on, per a set of env variables. */
function httpPort(env: Record<string, string>): number {
  return Number(env.HTTP_PORT ?? ENV_DEFAULTS.HTTP_PORT);
}

/** Resolves a probe or Service target port (a number or a container port name). */
function containerPort(port: unknown): number {
  const ports = arr(container.ports, 'container ports').map((p) => obj(p, 'container port'));
  if (typeof port === 'number') {
    expect(ports.map((p) => p.containerPort)).toContain(port);
    return port;
  }
  const named = ports.find((p) => p.name === port);
  if (!named) throw new Error(`no container port named ${String(port)}`);
  return num(named.containerPort, 'containerPort');
}

// ---------------------------------------------------------------------------------------------

describe('every file under docker/', () => {
  it('parses: each YAML file (all its documents) and the dashboard JSON', () => {
    expect(yamlFiles.length).toBeGreaterThanOrEqual(10);
    for (const [file, docs] of parsed) {
      const nonEmpty = docs.filter((d) => d !== null && d !== undefined);
      // every document is a mapping, and a file has at least one
      expect({ file, mappings: nonEmpty.filter(isObj).length }).toEqual({
        file,
        mappings: docs.length,
      });
      expect(nonEmpty.length).toBeGreaterThan(0);
    }
    expect(dashboard.uid).toBe(SERVICE);
  });

  it('includes the files the stack needs', () => {
    for (const file of [
      'compose.yaml',
      'prometheus/prometheus.yml',
      'prometheus/alerts.yml',
      'k8s/deployment.yaml',
      'k8s/service.yaml',
      'k8s/pdb.yaml',
      'k8s/configmap.yaml',
      'k8s/secret.example.yaml',
    ]) {
      expect([...parsed.keys()]).toContain(file);
    }
    expect(listFiles(join(DOCKER, 'grafana/provisioning/datasources'), /\.ya?ml$/)).not.toEqual([]);
    expect(listFiles(join(DOCKER, 'grafana/provisioning/dashboards'), /\.ya?ml$/)).not.toEqual([]);
  });
});

describe('env variables', () => {
  it('recognises the app variables and rejects an unknown name (self-check of the helper)', () => {
    for (const name of Object.keys(ENV_DEFAULTS)) expect(isAppEnvVar(name)).toBe(true);
    expect(isAppEnvVar('REDIS_LOCK_URLS')).toBe(true);
    expect(isAppEnvVar('LOG_FORMAT')).toBe(true);
    expect(isAppEnvVar('HTTP_PROT')).toBe(false);
  });

  it.each([
    ['the ConfigMap', () => Object.keys(configData)],
    ['the Secret', () => Object.keys(secretData)],
    ['compose (message-processor)', () => Object.keys(processorEnv)],
  ])('every variable set in %s is one the app reads', (_where, keys) => {
    const names = keys();
    expect(names.length).toBeGreaterThan(0);
    expect(names.filter((name) => !isAppEnvVar(name))).toEqual([]);
  });

  it('the ConfigMap and Secret together, and the compose env, are valid configurations', () => {
    expect(validateEnv({ ...configData, ...secretData }).issues).toEqual([]);
    expect(validateEnv(processorEnv).issues).toEqual([]);
    // compose traces to its Jaeger, by the compose service name
    const tracing = tracingSettings(processorEnv);
    expect(tracing.issues).toEqual([]);
    expect(new URL(str(tracing.settings?.endpoint, 'OTLP endpoint')).hostname).toBe('jaeger');
    expect(Object.keys(composeServices)).toContain('jaeger');
  });

  it('the Secret holds AMQP_URL and REDIS_URL as stringData, with placeholder credentials', () => {
    expect(secret.body.type).toBe('Opaque');
    expect(secret.body.data).toBeUndefined();
    expect(Object.keys(secretData)).toEqual(expect.arrayContaining(['AMQP_URL', 'REDIS_URL']));
    for (const url of [secretData.AMQP_URL, secretData.REDIS_URL]) {
      expect(new URL(url).password).toBe('CHANGE_ME');
    }
    expect(basename(secret.file)).toMatch(/\.example\.ya?ml$/);
  });

  it('the ConfigMap holds no connection URL and no credentials', () => {
    for (const key of ['AMQP_URL', 'REDIS_URL', 'REDIS_LOCK_URLS']) {
      expect(Object.keys(configData)).not.toContain(key);
    }
    for (const value of Object.values(configData)) {
      expect(value).not.toMatch(/:\/\//);
      expect(value).not.toMatch(/[^\s/@]+:[^\s/@]*@/);
    }
  });
});

describe('Kubernetes Deployment', () => {
  it('runs 3 replicas that load the ConfigMap and the Secret', () => {
    expect(at(deployment, 'spec.replicas')).toBe(3);
    const refs = arr(container.envFrom, 'envFrom').map((e) => obj(e, 'envFrom entry'));
    const names = (key: string): unknown[] =>
      refs.filter((r) => isObj(r[key])).map((r) => at(r, `${key}.name`));
    expect(names('configMapRef')).toEqual([configMap.name]);
    expect(names('secretRef')).toEqual([secret.name]);
    // env entries would bypass the ConfigMap/Secret split; none are used
    expect(container.env).toBeUndefined();
  });

  it('probes /health/live (liveness, startup) and /health/ready (readiness) on the HTTP_PORT', () => {
    const port = httpPort(configData);
    expect(port).toBe(3000);
    const probes: Record<string, string> = {
      livenessProbe: '/health/live',
      readinessProbe: '/health/ready',
    };
    if (container.startupProbe !== undefined) probes.startupProbe = '/health/live';
    for (const [probe, path] of Object.entries(probes)) {
      const httpGet = obj(at(container, `${probe}.httpGet`), `${probe}.httpGet`);
      expect({ probe, path: httpGet.path }).toEqual({ probe, path });
      expect(containerPort(httpGet.port)).toBe(port);
    }
  });

  it('gives the app more than SHUTDOWN_TIMEOUT_MS to drain before SIGKILL', () => {
    const grace = num(podSpec.terminationGracePeriodSeconds, 'terminationGracePeriodSeconds');
    const shutdownMs = Number(configData.SHUTDOWN_TIMEOUT_MS ?? ENV_DEFAULTS.SHUTDOWN_TIMEOUT_MS);
    // the drain, then up to ~1 s of bookkeeping (hand back, release locks, close connections)
    expect(grace * 1000).toBeGreaterThan(shutdownMs + SHUTDOWN_BACKSTOP_MS);
  });

  it('runs as the image user, non-root, read-only, without privileges', () => {
    const dockerfile = readFileSync(join(DOCKER, 'Dockerfile'), 'utf8');
    const user = /^USER\s+(\d+)(?::(\d+))?\s*$/m.exec(dockerfile);
    expect(user).not.toBeNull();
    const uid = Number(user?.[1]);
    expect(uid).toBeGreaterThan(0);
    expect(at(podSpec, 'securityContext.runAsNonRoot')).toBe(true);
    expect(at(podSpec, 'securityContext.runAsUser')).toBe(uid);
    const sc = obj(container.securityContext, 'container securityContext');
    expect(sc.runAsNonRoot).toBe(true);
    expect(sc.runAsUser ?? at(podSpec, 'securityContext.runAsUser')).toBe(uid);
    expect(sc.allowPrivilegeEscalation).toBe(false);
    expect(sc.readOnlyRootFilesystem).toBe(true);
    expect(at(sc, 'capabilities.drop')).toEqual(['ALL']);
  });

  it('sets resource requests and a memory limit', () => {
    const requests = stringMap(at(container, 'resources.requests'), 'requests');
    expect(requests.cpu).toBeTruthy();
    expect(requests.memory).toBeTruthy();
    const limits = stringMap(at(container, 'resources.limits'), 'limits');
    expect(limits.memory).toBeTruthy();
  });

  it('exposes the HTTP_PORT as the named container port and in the scrape annotations', () => {
    const port = httpPort(configData);
    expect(containerPort('http')).toBe(port);
    const annotations = stringMap(at(deployment, 'spec.template.metadata.annotations'), 'ann.');
    expect(annotations['prometheus.io/scrape']).toBe('true');
    expect(Number(annotations['prometheus.io/port'])).toBe(port);
    expect(annotations['prometheus.io/path']).toBe('/metrics');
  });

  it('selects its own pod template', () => {
    const selector = stringMap(at(deployment, 'spec.selector.matchLabels'), 'selector');
    expect(podLabels).toMatchObject(selector);
  });

  it('uses a pinned image tag', () => {
    const image = str(container.image, 'image');
    expect(image).toMatch(/:[\w.-]+$/);
    expect(image).not.toMatch(/:latest$/);
  });
});

describe('Kubernetes Service, PodDisruptionBudget and kustomization', () => {
  it('the Service selects the pods and targets the container port', () => {
    const service = k8s('Service').body;
    const selector = stringMap(at(service, 'spec.selector'), 'Service selector');
    expect(Object.keys(selector).length).toBeGreaterThan(0);
    expect(podLabels).toMatchObject(selector);
    const ports = arr(at(service, 'spec.ports'), 'Service ports').map((p) => obj(p, 'port'));
    expect(ports.length).toBeGreaterThan(0);
    for (const port of ports) {
      expect(containerPort(port.targetPort ?? port.port)).toBe(httpPort(configData));
    }
  });

  it('the PDB selects the pods and lets at most one go at a time', () => {
    const pdb = k8s('PodDisruptionBudget').body;
    expect(pdb.apiVersion).toBe('policy/v1');
    const selector = stringMap(at(pdb, 'spec.selector.matchLabels'), 'PDB selector');
    expect(Object.keys(selector).length).toBeGreaterThan(0);
    expect(podLabels).toMatchObject(selector);
    const spec = obj(pdb.spec, 'PDB spec');
    const replicas = num(at(deployment, 'spec.replicas'), 'replicas');
    if (spec.minAvailable === undefined) expect(spec.maxUnavailable).toBe(1);
    else expect(spec.minAvailable).toBe(replicas - 1);
  });

  it('kustomization lists every manifest but the example Secret', () => {
    const kustomization = doc('k8s/kustomization.yaml');
    const resources = arr(kustomization.resources, 'resources').map((r) => str(r, 'resource'));
    for (const resource of resources) expect(existsSync(join(K8S, resource))).toBe(true);
    const manifests = k8sObjects
      .filter((o) => o.kind !== 'Kustomization' && o.kind !== 'Secret')
      .map((o) => posix.relative('k8s', o.file));
    expect([...resources].sort()).toEqual([...new Set(manifests)].sort());
  });
});

describe('Compose', () => {
  it('runs 3 replicas of the service without a fixed host port', () => {
    expect(at(processor, 'deploy.replicas')).toBe(3);
    expect(processor.container_name).toBeUndefined();
    for (const port of arr(processor.ports ?? [], 'ports')) {
      // long syntax without `published`: Docker picks a free host port per replica
      expect(isObj(port)).toBe(true);
      expect(at(port, 'published')).toBeUndefined();
      expect(at(port, 'host_ip')).toBe('127.0.0.1');
      expect(at(port, 'target')).toBe(httpPort(processorEnv));
    }
  });

  it('gives the service more than SHUTDOWN_TIMEOUT_MS to drain before SIGKILL', () => {
    const shutdownMs = Number(processorEnv.SHUTDOWN_TIMEOUT_MS ?? ENV_DEFAULTS.SHUTDOWN_TIMEOUT_MS);
    const graceMs = durationMs(str(processor.stop_grace_period, 'stop_grace_period'));
    expect(graceMs).toBeGreaterThan(shutdownMs + SHUTDOWN_BACKSTOP_MS);
  });

  it('publishes every other port on loopback only', () => {
    for (const [name, service] of Object.entries(composeServices)) {
      for (const port of arr(obj(service, name).ports ?? [], `${name}.ports`)) {
        if (typeof port === 'string') expect(port).toMatch(/^127\.0\.0\.1:/);
        else expect(at(port, 'host_ip')).toBe('127.0.0.1');
      }
    }
  });

  it('pins every image it pulls to a version', () => {
    const images = Object.entries(composeServices)
      .filter(([, s]) => obj(s, 'service').build === undefined)
      .map(([name, s]) => str(obj(s, name).image, `${name}.image`));
    expect(images).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^prom\/prometheus:v3\./),
        expect.stringMatching(/^grafana\/grafana:1[12]\./),
      ]),
    );
    for (const image of images) {
      expect(image).toMatch(/:[\w.-]*\d[\w.-]*$/);
      expect(image).not.toMatch(/:latest$/);
    }
  });
});

/** Maps a container path to the host file through a compose service's bind mounts. */
function hostPath(service: string, containerPath: string): string | undefined {
  const volumes = arr(obj(composeServices[service], service).volumes, `${service}.volumes`);
  for (const volume of volumes) {
    const [source, target] = str(volume, 'volume').split(':');
    if (!source.startsWith('.')) continue;
    if (containerPath === target || containerPath.startsWith(`${target}/`)) {
      return join(DOCKER, source, containerPath.slice(target.length));
    }
  }
  return undefined;
}

describe('Prometheus', () => {
  const job = obj(
    arr(prometheusConfig.scrape_configs, 'scrape_configs').find(
      (j) => isObj(j) && j.job_name === SERVICE,
    ),
    'the message-processor scrape job',
  );

  it('scrapes /metrics on every replica, on the HTTP_PORT, by the compose service name', () => {
    expect(job.metrics_path).toBe('/metrics');
    const sd = arr(job.dns_sd_configs, 'dns_sd_configs').map((c) => obj(c, 'dns_sd_config'));
    expect(sd).toHaveLength(1);
    expect(sd[0].names).toEqual([SERVICE]);
    expect(sd[0].type).toBe('A');
    expect(sd[0].port).toBe(httpPort(processorEnv));
    expect(sd[0].port).toBe(ENV_DEFAULTS.HTTP_PORT);
  });

  it('loads the alerts file, mounted from docker/prometheus/alerts.yml', () => {
    const ruleFiles = arr(prometheusConfig.rule_files, 'rule_files').map((f) => str(f, 'file'));
    expect(ruleFiles).toHaveLength(1);
    const file = hostPath('prometheus', ruleFiles[0]);
    expect(file).toBe(join(DOCKER, 'prometheus/alerts.yml'));
    const command = arr(at(composeServices, 'prometheus.command'), 'prometheus.command');
    const configFile = command
      .map((c) => str(c, 'arg'))
      .find((c) => c.startsWith('--config.file='))
      ?.split('=')[1];
    expect(hostPath('prometheus', str(configFile, '--config.file'))).toBe(
      join(DOCKER, 'prometheus/prometheus.yml'),
    );
  });

  interface Rule {
    readonly alert: string;
    readonly expr: string;
    readonly labels: Record<string, string>;
    readonly annotations: Record<string, string>;
  }
  const rules: Rule[] = arr(alertRules.groups, 'groups').flatMap((g) =>
    arr(obj(g, 'group').rules, 'rules').map((r) => {
      const rule = obj(r, 'rule');
      return {
        alert: str(rule.alert, 'alert'),
        expr: str(rule.expr, 'expr'),
        labels: stringMap(rule.labels, 'labels'),
        annotations: stringMap(rule.annotations, 'annotations'),
      };
    }),
  );

  it('has alerts for the DLQ, disconnections, target down, lost locks, lock timeouts and the kill switch', () => {
    const exprs = rules.map((r) => r.expr.replace(/\s+/g, ' '));
    expect(exprs).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/messages_processed_total\{outcome="dead_letter"\}.*> 0/),
        expect.stringMatching(/^amqp_connected == 0$/),
        expect.stringMatching(/^redis_connected == 0$/),
        expect.stringMatching(/^up\{job="message-processor"\} == 0$/),
        expect.stringMatching(/increase\(lock_lost_total\[10m\]\).*> 0/),
        expect.stringMatching(/lock_acquire_duration_seconds_count\{outcome="timeout"\}/),
        expect.stringMatching(/consumers_paused\{reason="kill_switch"\}.*> 0/),
      ]),
    );
  });

  it('gives every alert a unique name, a severity and a summary and description', () => {
    expect(new Set(rules.map((r) => r.alert)).size).toBe(rules.length);
    for (const rule of rules) {
      expect({ alert: rule.alert, severity: rule.labels.severity }).toEqual({
        alert: rule.alert,
        severity: expect.stringMatching(/^(critical|warning|info)$/) as string,
      });
      expect(rule.annotations.summary).toBeTruthy();
      expect(rule.annotations.description).toBeTruthy();
    }
  });

  it('every metric in the alert expressions exists', () => {
    expectKnownMetrics(rules.map((r) => r.expr));
  });
});

describe('Grafana', () => {
  const datasources = arr(
    doc('grafana/provisioning/datasources/prometheus.yaml').datasources,
    'datasources',
  ).map((d) => obj(d, 'datasource'));
  const providers = arr(
    doc('grafana/provisioning/dashboards/message-processor.yaml').providers,
    'providers',
  ).map((p) => obj(p, 'provider'));

  const ofType = (type: string): Obj[] => datasources.filter((d) => d.type === type);

  it('provisions the Prometheus datasource of the compose stack', () => {
    expect(ofType('prometheus')).toHaveLength(1);
    const ds = ofType('prometheus')[0];
    const url = new URL(str(ds.url, 'url'));
    expect(Object.keys(composeServices)).toContain(url.hostname);
    expect(url.port).toBe('9090');
    // $__rate_interval assumes timeInterval is the scrape interval
    expect(at(ds, 'jsonData.timeInterval')).toBe(at(prometheusConfig, 'global.scrape_interval'));
  });

  it("links the exemplars' trace_id to the Jaeger datasource, which Prometheus keeps", () => {
    const jaeger = ofType('jaeger');
    expect(jaeger).toHaveLength(1);
    expect(new URL(str(jaeger[0].url, 'url')).hostname).toBe('jaeger');
    // the label the service's exemplars carry (src/metrics/scraped-histogram.ts)
    expect(at(ofType('prometheus')[0], 'jsonData.exemplarTraceIdDestinations')).toEqual([
      { name: 'trace_id', datasourceUid: jaeger[0].uid },
    ]);
    const command = arr(at(composeServices, 'prometheus.command'), 'prometheus.command');
    expect(command).toContain('--enable-feature=exemplar-storage');
  });

  it('provisions the dashboard from the directory compose mounts', () => {
    expect(providers).toHaveLength(1);
    const dir = hostPath('grafana', str(at(providers[0], 'options.path'), 'options.path'));
    expect(dir).toBeDefined();
    expect(existsSync(join(dir ?? '', basename(DASHBOARD)))).toBe(true);
    expect(hostPath('grafana', '/etc/grafana/provisioning/datasources')).toBe(
      join(DOCKER, 'grafana/provisioning/datasources'),
    );
  });

  interface Panel {
    readonly title: string;
    readonly type: string;
    readonly datasourceUid: unknown;
    readonly targets: { expr: string; datasourceUid: unknown; exemplar: unknown }[];
  }
  const panels: Panel[] = [];
  const collect = (list: unknown): void => {
    for (const p of arr(list, 'panels')) {
      const panel = obj(p, 'panel');
      if (panel.type === 'row' && Array.isArray(panel.panels)) collect(panel.panels);
      if (panel.type === 'row') continue;
      panels.push({
        title: str(panel.title, 'title'),
        type: str(panel.type, 'type'),
        datasourceUid: at(panel, 'datasource.uid'),
        targets: arr(panel.targets, `${String(panel.title)} targets`).map((t) => ({
          expr: str(obj(t, 'target').expr, 'expr'),
          datasourceUid: isObj(obj(t, 'target').datasource) ? at(t, 'datasource.uid') : undefined,
          exemplar: obj(t, 'target').exemplar,
        })),
      });
    }
  };
  collect(dashboard.panels);
  const exprs = panels.flatMap((p) => p.targets.map((t) => t.expr));

  it('is a recent dashboard schema using the provisioned datasource uid everywhere', () => {
    expect(num(dashboard.schemaVersion, 'schemaVersion')).toBeGreaterThanOrEqual(39);
    const uid = ofType('prometheus')[0].uid;
    expect(typeof uid).toBe('string');
    expect(panels.length).toBeGreaterThanOrEqual(12);
    for (const panel of panels) {
      expect({ panel: panel.title, uid: panel.datasourceUid }).toEqual({ panel: panel.title, uid });
      for (const target of panel.targets) {
        expect(target.datasourceUid === undefined || target.datasourceUid === uid).toBe(true);
      }
    }
  });

  it('has the panels of issue 5: throughput, latency, in flight, retries, DLQ, locks, links', () => {
    const all = exprs.join('\n');
    for (const pattern of [
      /sum by \(outcome\) \(rate\(messages_processed_total/,
      /histogram_quantile\(0\.5, sum by \(le\) \(rate\(message_processing_duration_seconds_bucket/,
      /histogram_quantile\(0\.99, sum by \(le\) \(rate\(message_processing_duration_seconds_bucket/,
      /messages_in_flight/,
      /outcome="retry"/,
      /outcome="dead_letter"/,
      /histogram_quantile\(0\.99, sum by \(le\) \(rate\(lock_acquire_duration_seconds_bucket/,
      /rate\(lock_contention_total/,
      /lock_lost_total/,
      /amqp_connected/,
      /redis_connected/,
      /histogram_quantile\(0\.99, sum by \(le, exchange\) \(rate\(message_publish_confirm/,
      /amqp_reconnects_total/,
      /redis_reconnects_total/,
    ]) {
      expect(all).toMatch(pattern);
    }
  });

  it('shows the exemplars (links to traces) on the message and publish latency panels', () => {
    const latency = panels
      .flatMap((p) => p.targets)
      .filter((t) =>
        /(message_processing|message_publish_confirm)_duration_seconds_bucket/.test(t.expr),
      );
    expect(latency.length).toBeGreaterThanOrEqual(3);
    for (const target of latency)
      expect({ ...target, exemplar: target.exemplar === true }).toEqual({
        ...target,
        exemplar: true,
      });
  });

  it('uses $__rate_interval for every rate and increase', () => {
    const windows = exprs.flatMap((e) => [...e.matchAll(/(?:rate|increase)\([^[]+\[([^\]]+)\]/g)]);
    expect(windows.length).toBeGreaterThan(10);
    for (const w of windows) expect(w[1]).toBe('$__rate_interval');
  });

  it('every metric in the dashboard exists', () => {
    expectKnownMetrics(exprs);
  });
});

// ---------------------------------------------------------------------------------------------
// Metric names
// ---------------------------------------------------------------------------------------------

/** Metric names the service defines. Histograms follow the `_duration_seconds` convention. */
const SERVICE_METRICS: readonly string[] = [
  ...Object.values(METRIC),
  ...Object.values(LOCK_METRIC),
];
const HISTOGRAMS = SERVICE_METRICS.filter((name) => name.endsWith('_duration_seconds'));

/** prom-client's default metrics (process_*, nodejs_*), as the service registers them. */
function defaultMetricNames(): string[] {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry
    .getMetricsAsArray()
    .flatMap((m) =>
      String(m.type) === 'histogram'
        ? [m.name, `${m.name}_bucket`, `${m.name}_sum`, `${m.name}_count`]
        : [m.name],
    );
}

/** Identifiers in a PromQL expression that look like this service's (or Node's) metrics. */
const METRIC_PREFIX = /\b(?:messages?|amqp|redis|locks?|process|nodejs)_[a-z0-9_]+\b|\bup\b/g;

function metricNames(expr: string): string[] {
  const withoutStrings = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  return [...withoutStrings.matchAll(METRIC_PREFIX)].map((m) => m[0]);
}

function expectKnownMetrics(exprs: readonly string[]): void {
  const known = new Set<string>([
    'up',
    ...SERVICE_METRICS,
    ...HISTOGRAMS.flatMap((h) => ['_bucket', '_sum', '_count'].map((s) => `${h}${s}`)),
    ...defaultMetricNames(),
  ]);
  expect(known).toContain('process_resident_memory_bytes');
  const used = new Set(exprs.flatMap(metricNames));
  expect(used.size).toBeGreaterThan(3);
  expect([...used].filter((name) => !known.has(name))).toEqual([]);
}

describe('metric name extraction (self-check)', () => {
  it('finds metric names, ignores label values and PromQL functions', () => {
    expect(
      metricNames(
        'sum by (queue) (rate(messages_processed_total{outcome="dead_letter", queue="lock_x"}[5m])) / up',
      ),
    ).toEqual(['messages_processed_total', 'up']);
    expect(HISTOGRAMS).toEqual(
      expect.arrayContaining([
        'message_processing_duration_seconds',
        'lock_acquire_duration_seconds',
      ]),
    );
  });

  it('rejects a metric the service does not export', () => {
    expect(() => expectKnownMetrics(['rate(messages_dead_lettered_total[5m]) + up'])).toThrow();
  });
});
