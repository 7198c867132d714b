// k8s/: every manifest parses, the overlays build (test/support/kustomize.ts implements the subset of
// kustomize they use), every object validates against the Kubernetes schemas (kubernetes-models),
// and the policies of issue 8 hold on the built output: one Deployment per service group covering
// every service once, hardened pods, probes, resources, graceful termination, secrets only as
// files, external Postgres/Redis, and NetworkPolicies under which only the api is reachable from
// outside and the services reach only NATS, Postgres, Redis and DNS (plus the documented
// exceptions: the chain RPC for anchor pods, webhook receivers and SMTP for ops pods).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { build, readYamlDocs, containersOf, podSpecOf, splitImage, K8sObject, strategicMerge } from "../support/kustomize";
import { allowed, Endpoint, inCidr } from "../support/netpol";
import { ALL_SERVICES, loadConfig } from "../../lib/config";

const K8S = path.resolve(__dirname, "..", "..", "k8s");
const OVERLAYS = ["dev", "prod"] as const;

function allYamlFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return allYamlFiles(p);
    return /\.ya?ml$/.test(e.name) ? [p] : [];
  });
}

function validate(o: K8sObject) {
  // kubernetes-models has one module per API group/version, one class per kind.
  const mod = require(`kubernetes-models/${o.apiVersion}`);
  const Kind = mod[o.kind];
  if (!Kind) throw new Error(`no schema for ${o.apiVersion} ${o.kind}`);
  new Kind(o).validate();
}

const builds: Record<string, K8sObject[]> = {};
beforeAll(() => {
  builds.base = build(path.join(K8S, "base"));
  for (const o of OVERLAYS) builds[o] = build(path.join(K8S, "overlays", o));
});

const of = (objs: K8sObject[], kind: string) => objs.filter((o) => o.kind === kind);
const get = (objs: K8sObject[], kind: string, name: string) => {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`${kind}/${name} missing`);
  return o;
};
const appDeployments = (objs: K8sObject[]) => of(objs, "Deployment").filter((d) => d.spec.template.metadata.labels["voketag.io/tier"] === "app");
const envOf = (c: any): Record<string, any> => Object.fromEntries((c.env ?? []).map((e: any) => [e.name, e.value ?? e.valueFrom]));
const SECRET_NAMES = ["DATABASE_URL", "REDIS_URL", "TOKEN_KEYS", "JWT_PRIVATE_KEY", "ANCHOR_PRIVATE_KEY", "ANCHOR_RPC_URL", "VOKETAG_ADMIN_PASSWORD", "PGPASSWORD"];

describe("k8s manifests: parsing and schemas", () => {
  it("parses every YAML file under k8s/", () => {
    const files = allYamlFiles(K8S);
    expect(files.length).toBeGreaterThan(15);
    for (const f of files) expect(() => readYamlDocs(f)).not.toThrow();
  });

  it.each(["base", ...OVERLAYS])("builds %s and every object validates against the Kubernetes schema", (name) => {
    const objs = builds[name];
    expect(objs.length).toBeGreaterThan(20);
    for (const o of objs) {
      try {
        validate(o);
      } catch (err) {
        throw new Error(`${name}: ${o.kind}/${o.metadata.name}: ${(err as Error).message}`);
      }
    }
  });

  it("the schema validation is able to fail", () => {
    const d = structuredClone(get(builds.prod, "Deployment", "voketag-scan"));
    d.spec.template.spec.containers[0].resources.limits.cpu = "lots";
    expect(() => validate(d)).toThrow(/cpu/);
  });

  it("the builder applies overlays: namespace, image, replicas and patches", () => {
    for (const o of builds.prod) if (o.kind !== "Namespace") expect(o.metadata.namespace).toBe("voketag");
    for (const o of builds.dev) if (o.kind !== "Namespace") expect(o.metadata.namespace).toBe("voketag-dev");
    expect(get(builds.dev, "StatefulSet", "nats").spec.replicas).toBe(1);
    expect(get(builds.prod, "StatefulSet", "nats").spec.replicas).toBe(3);
    expect(get(builds.dev, "ConfigMap", "voketag-config").data.LOG_LEVEL).toBe("debug");
    // Strategic merge: the patched container keeps the fields the patch does not name.
    const scan = get(builds.prod, "Deployment", "voketag-scan").spec.template.spec.containers[0];
    expect(scan.resources.requests.cpu).toBe("1");
    expect(scan.securityContext.readOnlyRootFilesystem).toBe(true);
    expect(envOf(scan).NODE_OPTIONS).toBe("--max-old-space-size=768");
    expect(envOf(scan).SERVICES).toBe("scan");
    // Lists with a merge key merge by it; others are replaced whole, as strategic merge does.
    expect(strategicMerge({ containers: [{ name: "x", v: 1 }], b: 1 }, { containers: [{ name: "x", w: 2 }] }, ["Pod"])).toEqual({ containers: [{ name: "x", v: 1, w: 2 }], b: 1 });
    expect(strategicMerge({ args: ["a", "b"] }, { args: ["c"] }, ["Pod"])).toEqual({ args: ["c"] });
  });

  it("the NetworkPolicy evaluator is able to fail: without the default deny, anything reaches a scan pod", () => {
    const objs = builds.prod;
    const scan = get(objs, "Deployment", "voketag-scan");
    const scanEp: Endpoint = { pod: { namespace: "voketag", namespaceLabels: { "kubernetes.io/metadata.name": "voketag" }, labels: scan.spec.template.metadata.labels } };
    const stranger: Endpoint = { pod: { namespace: "default", namespaceLabels: { "kubernetes.io/metadata.name": "default" }, labels: {} } };
    const policies = of(objs, "NetworkPolicy");
    expect(allowed(policies, stranger, scanEp, 9091)).toBe(false);
    expect(allowed(policies, scanEp, { ip: "203.0.113.7" }, 443)).toBe(false);
    // Every policy that selects scan pods gone: they are isolated no more, in either direction.
    const open = policies.filter((p) => !["default-deny-all", "allow-dns", "metrics-ingress", "app-egress", "postgres-egress"].includes(p.metadata.name));
    expect(allowed(open, stranger, scanEp, 9091)).toBe(true);
    expect(allowed(open, scanEp, { ip: "203.0.113.7" }, 443)).toBe(true);
  });
});

describe.each(OVERLAYS)("k8s %s overlay: workloads", (overlay) => {
  let objs: K8sObject[];
  beforeAll(() => (objs = builds[overlay]));

  it("runs one Deployment per service group, together covering every service exactly once", () => {
    const deps = appDeployments(objs);
    expect(deps.map((d) => d.metadata.name).sort()).toEqual(["voketag-anchor", "voketag-factory", "voketag-gateway", "voketag-ops", "voketag-scan"]);
    const seen: string[] = [];
    for (const d of deps) {
      const services = String(envOf(d.spec.template.spec.containers[0]).SERVICES).split(",");
      expect(() => loadConfig({ SERVICES: services.join(",") })).not.toThrow();
      seen.push(...services);
    }
    expect([...seen].sort()).toEqual([...ALL_SERVICES].sort());
    // The api runs alone in the gateway group.
    expect(envOf(get(objs, "Deployment", "voketag-gateway").spec.template.spec.containers[0]).SERVICES).toBe("api");
  });

  it("hardens every pod: non-root, read-only root, no capabilities, seccomp RuntimeDefault, no API token", () => {
    const workloads = [...of(objs, "Deployment"), ...of(objs, "StatefulSet")];
    expect(workloads.length).toBe(6);
    for (const w of workloads) {
      const spec = podSpecOf(w);
      const where = `${w.kind}/${w.metadata.name}`;
      expect([where, spec.securityContext.runAsNonRoot]).toEqual([where, true]);
      expect([where, spec.securityContext.runAsUser]).toEqual([where, 1000]);
      expect([where, spec.securityContext.seccompProfile]).toEqual([where, { type: "RuntimeDefault" }]);
      expect([where, spec.automountServiceAccountToken]).toEqual([where, false]);
      expect(spec.hostNetwork ?? false).toBe(false);
      expect(spec.hostPID ?? false).toBe(false);
      for (const c of containersOf(w)) {
        const sc = c.securityContext;
        // Exact field names: a typo (readOnlyRootFileSystem) would pass schema validation unnoticed.
        expect(Object.keys(sc).sort()).toEqual(["allowPrivilegeEscalation", "capabilities", "privileged", "readOnlyRootFilesystem", "runAsNonRoot"]);
        expect(sc).toMatchObject({ runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, privileged: false });
        expect(sc.capabilities).toEqual({ drop: ["ALL"] });
      }
    }
  });

  it("gives every VokeTag pod emptyDirs for /tmp and the data dir, and mounts nothing else writable", () => {
    const cm = get(objs, "ConfigMap", "voketag-config").data;
    for (const d of appDeployments(objs)) {
      const spec = podSpecOf(d);
      const c = spec.containers[0];
      const vol = (name: string) => spec.volumes.find((v: any) => v.name === name);
      const mountAt = (p: string) => c.volumeMounts.find((m: any) => m.mountPath === p);
      for (const dir of ["/tmp", cm.VOKETAG_DATA_DIR]) {
        const m = mountAt(dir);
        expect([d.metadata.name, dir, !!m]).toEqual([d.metadata.name, dir, true]);
        expect(vol(m.name).emptyDir).toBeDefined();
        expect(vol(m.name).emptyDir.sizeLimit).toBeDefined();
      }
      expect(cm.TMPDIR).toBe("/tmp");
      for (const m of c.volumeMounts) if (!vol(m.name).emptyDir) expect([m.mountPath, m.readOnly]).toEqual([m.mountPath, true]);
    }
  });

  it("probes /v1/health (startup, liveness) and /v1/ready (readiness) on the health port", () => {
    const cm = get(objs, "ConfigMap", "voketag-config").data;
    for (const d of appDeployments(objs)) {
      const c = d.spec.template.spec.containers[0];
      const health = c.ports.find((p: any) => p.name === "health");
      expect(health.containerPort).toBe(Number(cm.HEALTH_PORT));
      expect(c.startupProbe.httpGet).toEqual({ path: "/v1/health", port: "health" });
      expect(c.livenessProbe.httpGet).toEqual({ path: "/v1/health", port: "health" });
      expect(c.readinessProbe.httpGet).toEqual({ path: "/v1/ready", port: "health" });
      // Liveness must not kill a pod that is merely slow to answer once.
      expect(c.livenessProbe.failureThreshold).toBeGreaterThanOrEqual(3);
      expect(c.startupProbe.periodSeconds * c.startupProbe.failureThreshold).toBeGreaterThanOrEqual(60);
    }
    const nats = get(objs, "StatefulSet", "nats").spec.template.spec.containers[0];
    expect(nats.livenessProbe.httpGet.path).toMatch(/^\/healthz/);
    expect(nats.readinessProbe.httpGet.path).toMatch(/^\/healthz/);
  });

  it("sets requests and limits, a heap that fits the limit, and a grace period the shutdown fits in", () => {
    const mib = (q: string) => (q.endsWith("Gi") ? Number(q.slice(0, -2)) * 1024 : q.endsWith("Mi") ? Number(q.slice(0, -2)) : NaN);
    for (const w of [...of(objs, "Deployment"), ...of(objs, "StatefulSet")]) {
      const spec = podSpecOf(w);
      for (const c of spec.containers) {
        for (const k of ["requests", "limits"]) for (const r of ["cpu", "memory"]) expect([w.metadata.name, k, r, c.resources?.[k]?.[r] !== undefined]).toEqual([w.metadata.name, k, r, true]);
      }
      // bin/node.ts exits within 10 s of SIGTERM; a preStop sleep comes before it.
      const preStop = spec.containers[0].lifecycle?.preStop?.exec?.command;
      const sleep = preStop?.[0] === "sleep" ? Number(preStop[1]) : 0;
      expect(spec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(15);
      expect(spec.terminationGracePeriodSeconds).toBeGreaterThan(sleep + 10);
    }
    for (const d of appDeployments(objs)) {
      const c = d.spec.template.spec.containers[0];
      const heap = Number(/--max-old-space-size=(\d+)/.exec(envOf(c).NODE_OPTIONS)![1]);
      expect(heap).toBeLessThanOrEqual(0.8 * mib(c.resources.limits.memory));
    }
    // Only the gateway takes HTTP traffic through a Service, so only it delays SIGTERM.
    expect(get(objs, "Deployment", "voketag-gateway").spec.template.spec.containers[0].lifecycle.preStop.exec.command).toEqual(["sleep", "5"]);
  });

  it("rolls out without dropping below the wanted count", () => {
    for (const d of of(objs, "Deployment")) expect(d.spec.strategy.rollingUpdate).toEqual({ maxUnavailable: 0, maxSurge: 1 });
  });

  it("pins one VokeTag image for every group", () => {
    const images = new Set(appDeployments(objs).map((d) => d.spec.template.spec.containers[0].image));
    expect(images.size).toBe(1);
    const img = splitImage([...images][0]);
    expect(img.name).toBe("ghcr.io/voketag/voketag");
    if (overlay === "prod") expect(img.digest ?? img.tag).toMatch(/^(sha256:[0-9a-f]{64}|\d+\.\d+\.\d+)$/);
    expect(splitImage(get(objs, "StatefulSet", "nats").spec.template.spec.containers[0].image).tag).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe.each(OVERLAYS)("k8s %s overlay: configuration and secrets", (overlay) => {
  let objs: K8sObject[];
  beforeAll(() => (objs = builds[overlay]));

  it("commits no Secret, and no secret value as a plain variable anywhere", () => {
    expect(of(objs, "Secret")).toEqual([]);
    const cm = get(objs, "ConfigMap", "voketag-config").data;
    for (const n of SECRET_NAMES) expect(cm[n]).toBeUndefined();
    for (const d of appDeployments(objs)) {
      const c = d.spec.template.spec.containers[0];
      for (const e of c.env) {
        expect(SECRET_NAMES).not.toContain(e.name);
        // Secrets as files only: an env var from a Secret shows in `kubectl describe` and /proc.
        expect(e.valueFrom?.secretKeyRef).toBeUndefined();
      }
      expect((c.envFrom ?? []).some((x: any) => x.secretRef)).toBe(false);
    }
  });

  it("points every *_FILE variable at a key of the mounted Secret, and each group gets only its keys", () => {
    const wanted: Record<string, string[]> = {
      "voketag-gateway": ["redis-url"],
      "voketag-scan": ["database-url", "redis-url", "token-keys"],
      "voketag-factory": ["database-url", "redis-url", "token-keys"],
      "voketag-anchor": ["anchor-private-key", "anchor-rpc-url", "database-url", "redis-url", "token-keys"],
      "voketag-ops": ["admin-password", "database-url", "jwt-private-key", "redis-url"],
    };
    for (const d of appDeployments(objs)) {
      const spec = podSpecOf(d);
      const c = spec.containers[0];
      const vol = spec.volumes.find((v: any) => v.secret);
      expect(vol.secret.secretName).toBe("voketag-secrets");
      expect(vol.secret.defaultMode).toBe(0o440);
      const mount = c.volumeMounts.find((m: any) => m.name === vol.name);
      expect(mount.readOnly).toBe(true);
      const keys = vol.secret.items.map((i: any) => i.key).sort();
      expect([d.metadata.name, keys]).toEqual([d.metadata.name, wanted[d.metadata.name]]);
      const files = Object.entries(envOf(c)).filter(([k]) => k.endsWith("_FILE"));
      expect(files.length).toBe(keys.length);
      for (const [, p] of files) {
        const item = vol.secret.items.find((i: any) => path.posix.join(mount.mountPath, i.path) === p);
        expect([d.metadata.name, p, !!item]).toEqual([d.metadata.name, p, true]);
      }
    }
  });

  it("gives each group a configuration lib/config.ts accepts in production mode", () => {
    const cm = get(objs, "ConfigMap", "voketag-config").data;
    expect(cm.NODE_ENV).toBe("production");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vk-k8s-"));
    try {
      for (const d of appDeployments(objs)) {
        const env: Record<string, string> = { ...cm };
        for (const [k, v] of Object.entries(envOf(d.spec.template.spec.containers[0]))) {
          if (typeof v !== "string") env[k] = "pod-name";
          else if (k.endsWith("_FILE")) {
            // The file the Secret would mount, with a value of the right shape.
            const f = path.join(dir, `${d.metadata.name}-${k}`);
            const sample: Record<string, string> = {
              DATABASE_URL_FILE: "postgres://voketag:s3cret@postgres:5432/voketag?sslmode=verify-full",
              REDIS_URL_FILE: "rediss://:s3cret@redis:6380/0",
              ANCHOR_RPC_URL_FILE: "https://rpc.example/v1/key",
              ANCHOR_PRIVATE_KEY_FILE: "0x" + "11".repeat(32),
              TOKEN_KEYS_FILE: "k1:" + Buffer.alloc(32, 1).toString("base64"),
            };
            fs.writeFileSync(f, sample[k] ?? "value");
            env[k] = f;
          } else env[k] = v;
        }
        const cfg = loadConfig(env);
        expect(cfg.production).toBe(true);
        expect(cfg.transporter).toBe("nats://nats:4222");
        expect(cfg.services.length).toBeGreaterThan(0);
        if (!cfg.services.every((s) => s === "api")) expect(cfg.databaseUrl).toContain("@postgres:5432/");
        expect(cfg.redisUrl).toContain("@redis:");
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("reaches Postgres and Redis through ExternalName Services, and runs NATS with JetStream on volumes", () => {
    for (const n of ["postgres", "redis"]) {
      const s = get(objs, "Service", n);
      expect(s.spec.type).toBe("ExternalName");
      expect(s.spec.externalName).toMatch(/^[a-z0-9.-]+$/);
    }
    const nats = get(objs, "StatefulSet", "nats");
    const conf: string = get(objs, "ConfigMap", "nats-config").data["nats.conf"];
    expect(conf).toMatch(/jetstream\s*\{[^}]*store_dir:\s*\/data\/jetstream/);
    expect(nats.spec.volumeClaimTemplates[0].metadata.name).toBe("data");
    expect(nats.spec.template.spec.containers[0].volumeMounts.find((m: any) => m.name === "data").mountPath).toBe("/data");
    const replicas = nats.spec.replicas;
    if (replicas > 1) {
      // Every server of the StatefulSet is a route, and no route names a server that does not exist.
      const routes = [...conf.matchAll(/nats:\/\/(nats-\d+)\.nats-headless:6222/g)].map((m) => m[1]).sort();
      expect(routes).toEqual(Array.from({ length: replicas }, (_, i) => `nats-${i}`));
    } else expect(conf).not.toMatch(/cluster\s*\{/);
    const cm = get(objs, "ConfigMap", "voketag-config").data;
    expect(cm.TRANSPORTER).toBe("nats://nats:4222");
  });
});

describe.each(OVERLAYS)("k8s %s overlay: traffic", (overlay) => {
  let objs: K8sObject[];
  let ns: string;
  beforeAll(() => {
    objs = builds[overlay];
    ns = overlay === "prod" ? "voketag" : "voketag-dev";
  });

  it("exposes only the api: one ClusterIP Service and an Ingress in front of gateway pods", () => {
    const services = of(objs, "Service").filter((s) => s.spec.type !== "ExternalName");
    for (const s of services) expect(s.spec.type ?? "ClusterIP").toBe("ClusterIP");
    const api = get(objs, "Service", "voketag-api");
    const gw = get(objs, "Deployment", "voketag-gateway");
    expect(api.spec.selector).toEqual(gw.spec.selector.matchLabels);
    const http = gw.spec.template.spec.containers[0].ports.find((p: any) => p.name === api.spec.ports[0].targetPort);
    expect(http.containerPort).toBe(3000);
    // Every other Service selects NATS pods only.
    for (const s of services.filter((x) => x.metadata.name !== "voketag-api")) expect(s.spec.selector["app.kubernetes.io/name"]).toBe("nats");
    const ingresses = of(objs, "Ingress");
    expect(ingresses).toHaveLength(1);
    const backends = ingresses[0].spec.rules.flatMap((r: any) => r.http.paths.map((p: any) => p.backend.service.name));
    expect(new Set(backends)).toEqual(new Set(["voketag-api"]));
    expect(ingresses[0].spec.tls[0].hosts).toEqual(ingresses[0].spec.rules.map((r: any) => r.host));
    // The tags' URLs point at the Ingress host.
    expect(get(objs, "ConfigMap", "voketag-config").data.VERIFICATION_URL_BASE).toBe(`https://${ingresses[0].spec.rules[0].host}`);
  });

  it("autoscales the request path, and budgets disruptions for every workload", () => {
    const hpas = of(objs, "HorizontalPodAutoscaler");
    expect(hpas.map((h) => h.spec.scaleTargetRef.name).sort()).toEqual(["voketag-factory", "voketag-gateway", "voketag-scan"]);
    for (const h of hpas) {
      const d = get(objs, "Deployment", h.spec.scaleTargetRef.name);
      expect(d.spec.replicas).toBeUndefined(); // the HPA owns the count
      expect(h.spec.minReplicas).toBeLessThanOrEqual(h.spec.maxReplicas);
      expect(d.spec.template.spec.containers[0].resources.requests.cpu).toBeDefined();
    }
    const pdbs = of(objs, "PodDisruptionBudget");
    for (const w of [...of(objs, "Deployment"), ...of(objs, "StatefulSet")]) {
      const matching = pdbs.filter((p) => Object.entries(p.spec.selector.matchLabels).every(([k, v]) => w.spec.template.metadata.labels[k] === v));
      expect([w.metadata.name, matching.length]).toEqual([w.metadata.name, 1]);
      expect(matching[0].spec.maxUnavailable).toBe(1);
    }
  });

  it("NetworkPolicies: only the api is reachable from outside; services reach only NATS, Postgres, Redis and DNS", () => {
    const nsLabels = { "kubernetes.io/metadata.name": ns };
    const podOf = (w: K8sObject): Endpoint => ({ pod: { namespace: ns, namespaceLabels: nsLabels, labels: w.spec.template.metadata.labels } });
    const external = (namespace: string, labels: Record<string, string> = {}): Endpoint => ({ pod: { namespace, namespaceLabels: { "kubernetes.io/metadata.name": namespace }, labels } });
    const ingressCtl = external("ingress-nginx", { "app.kubernetes.io/name": "ingress-nginx" });
    const prometheus = external("monitoring", { "app.kubernetes.io/name": "prometheus" });
    const dns = external("kube-system", { "k8s-app": "kube-dns" });
    const otherNsPod = external("default", { app: "curl" });
    const internet: Endpoint = { ip: "203.0.113.7" };
    const metadata: Endpoint = { ip: "169.254.169.254" };
    const privateHost: Endpoint = { ip: "10.99.0.5" };

    const natsEp = podOf(get(objs, "StatefulSet", "nats"));
    const groups = Object.fromEntries(appDeployments(objs).map((d) => [d.metadata.name.replace("voketag-", ""), podOf(d)]));
    // Where Postgres and Redis are: a CIDR (prod) or pods of the dependencies' namespace (dev).
    const depsPod = external("voketag-dev-deps", { app: "postgres" });
    const pgCidr = (o: K8sObject) => o.spec.egress.flatMap((r: any) => r.to).find((t: any) => t.ipBlock)?.ipBlock.cidr;
    const pgPolicy = get(objs, "NetworkPolicy", "postgres-egress");
    const pg: Endpoint = overlay === "prod" ? { ip: pgCidr(pgPolicy).replace(/0\/\d+$/, "10") } : depsPod;
    const redisPolicy = get(objs, "NetworkPolicy", "app-egress");
    const redis: Endpoint = overlay === "prod" ? { ip: pgCidr(redisPolicy).replace(/0\/\d+$/, "10") } : depsPod;
    if (overlay === "prod") {
      // The base's placeholder subnets (TEST-NET-1) must not survive into production.
      for (const p of of(objs, "NetworkPolicy"))
        for (const r of p.spec.egress ?? []) for (const t of r.to ?? []) if (t.ipBlock) expect(inCidr(t.ipBlock.cidr.split("/")[0], "192.0.2.0/24")).toBe(false);
    }
    const P = of(objs, "NetworkPolicy");
    const can = (a: Endpoint, b: Endpoint, port: number, proto = "TCP") => allowed(P, a, b, port, proto);

    // Inbound: the ingress controller reaches gateways on 3000 only; nothing else gets in.
    expect(can(ingressCtl, groups.gateway, 3000)).toBe(true);
    expect(can(ingressCtl, groups.gateway, 9091)).toBe(false);
    expect(can(otherNsPod, groups.gateway, 3000)).toBe(false);
    for (const [name, g] of Object.entries(groups)) {
      if (name !== "gateway") expect([name, can(ingressCtl, g, 3000)]).toEqual([name, false]);
      expect([name, can(prometheus, g, 9090)]).toEqual([name, true]);
      expect([name, can(otherNsPod, g, 9090)]).toEqual([name, false]);
      for (const [other, h] of Object.entries(groups)) expect([name, other, can(g, h, 3000), can(g, h, 9091)]).toEqual([name, other, false, false]);
    }
    expect(can(otherNsPod, natsEp, 4222)).toBe(false);
    expect(can(prometheus, natsEp, 8222)).toBe(true);

    // Outbound: NATS, Redis and DNS for all; Postgres for all but the gateway.
    for (const [name, g] of Object.entries(groups)) {
      const row = (x: boolean[]) => [name, ...x];
      expect(row([can(g, natsEp, 4222), can(g, redis, 6379), can(g, dns, 53, "UDP"), can(g, dns, 53, "TCP")])).toEqual(row([true, true, true, true]));
      expect(row([can(g, pg, 5432)])).toEqual(row([name !== "gateway"]));
      expect(row([can(g, natsEp, 6222), can(g, natsEp, 8222), can(g, metadata, 80), can(g, privateHost, 443), can(g, otherNsPod, 80)])).toEqual(row([false, false, false, false, false]));
      // The internet: the chain RPC for anchor (443), receivers and SMTP for ops, nothing for the rest.
      expect(row([can(g, internet, 443)])).toEqual(row([name === "anchor" || name === "ops"]));
      expect(row([can(g, internet, 8443), can(g, internet, 587)])).toEqual(row([name === "ops", name === "ops"]));
      expect(row([can(g, internet, 22), can(g, internet, 25)])).toEqual(row([false, false]));
    }
    // NATS servers route to each other and nowhere else.
    expect(can(natsEp, natsEp, 6222)).toBe(true);
    expect(can(natsEp, internet, 443)).toBe(false);
    expect(can(natsEp, dns, 53, "UDP")).toBe(true);
  });
});
