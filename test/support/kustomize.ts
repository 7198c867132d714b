// The subset of kustomize that k8s/ uses, so a test can build the overlays without the binary:
// resources (files and directories), namespace, labels (metadata only), images, replicas and
// strategic-merge patches. Anything else in a kustomization.yaml is refused, so the manifests cannot
// drift into features this builder would silently ignore.
import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";

export type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> }; [k: string]: any };

const KNOWN_FIELDS = new Set(["apiVersion", "kind", "namespace", "resources", "labels", "images", "replicas", "patches"]);

// Kinds that live outside any namespace (the namespace transformer leaves them alone).
const CLUSTER_SCOPED = new Set(["Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume", "StorageClass", "IngressClass", "PriorityClass"]);

/** Every YAML document of a file, parsed as YAML 1.1 like the Kubernetes tooling (0440 is octal there). */
export function readYamlDocs(file: string): any[] {
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"), { version: "1.1" });
  const out: any[] = [];
  for (const d of docs) {
    if (d.errors.length) throw new Error(`${file}: ${d.errors.map((e) => e.message).join("; ")}`);
    const v = d.toJS();
    if (v != null) out.push(v);
  }
  return out;
}

/** Builds the kustomization in `dir` into its list of objects. */
export function build(dir: string): K8sObject[] {
  const kfile = path.join(dir, "kustomization.yaml");
  const [k] = readYamlDocs(kfile);
  for (const key of Object.keys(k)) if (!KNOWN_FIELDS.has(key)) throw new Error(`${kfile}: field "${key}" is outside the kustomize subset this builder implements`);
  let objects: K8sObject[] = [];
  for (const r of k.resources ?? []) {
    const p = path.resolve(dir, r);
    if (fs.statSync(p).isDirectory()) objects.push(...build(p));
    else objects.push(...(readYamlDocs(p) as K8sObject[]));
  }
  // Resource ids must be unique, as kustomize demands.
  const seen = new Set<string>();
  for (const o of objects) {
    const id = idOf(o);
    if (seen.has(id)) throw new Error(`${kfile}: duplicate resource ${id}`);
    seen.add(id);
  }
  for (const p of k.patches ?? []) {
    if (!p.path || p.target || p.patch) throw new Error(`${kfile}: only file patches without target are supported`);
    for (const patch of readYamlDocs(path.resolve(dir, p.path))) {
      const target = objects.find((o) => o.kind === patch.kind && o.metadata.name === patch.metadata?.name);
      if (!target) throw new Error(`${kfile}: patch ${p.path} targets ${patch.kind}/${patch.metadata?.name}, which no resource is`);
      if (patch.apiVersion && patch.apiVersion !== target.apiVersion) throw new Error(`${kfile}: patch ${p.path} has apiVersion ${patch.apiVersion}, resource has ${target.apiVersion}`);
      objects = objects.map((o) => (o === target ? strategicMerge(o, patch, [o.kind]) : o));
    }
  }
  if (k.namespace) for (const o of objects) if (!CLUSTER_SCOPED.has(o.kind)) o.metadata.namespace = k.namespace;
  for (const l of k.labels ?? []) {
    if (l.includeSelectors || l.includeTemplates) throw new Error(`${kfile}: labels with includeSelectors/includeTemplates are not supported`);
    for (const o of objects) o.metadata.labels = { ...(o.metadata.labels ?? {}), ...l.pairs };
  }
  for (const img of k.images ?? [])
    for (const o of objects)
      for (const c of containersOf(o)) {
        const { name } = splitImage(c.image);
        if (name !== img.name) continue;
        const newName = img.newName ?? name;
        c.image = img.digest ? `${newName}@${img.digest}` : `${newName}:${img.newTag ?? splitImage(c.image).tag ?? "latest"}`;
      }
  for (const r of k.replicas ?? []) {
    const o = objects.find((x) => x.metadata.name === r.name && ["Deployment", "StatefulSet", "ReplicaSet"].includes(x.kind));
    if (!o) throw new Error(`${kfile}: replicas for ${r.name}, which no workload is`);
    o.spec.replicas = r.count;
  }
  return objects;
}

export function idOf(o: K8sObject) {
  return `${o.kind}/${o.metadata?.namespace ?? ""}/${o.metadata?.name}`;
}

export function splitImage(image: string): { name: string; tag?: string; digest?: string } {
  const at = image.indexOf("@");
  if (at >= 0) return { name: image.slice(0, at), digest: image.slice(at + 1) };
  const slash = image.lastIndexOf("/");
  const colon = image.lastIndexOf(":");
  if (colon > slash) return { name: image.slice(0, colon), tag: image.slice(colon + 1) };
  return { name: image };
}

export function podSpecOf(o: K8sObject): any | null {
  if (["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"].includes(o.kind)) return o.spec?.template?.spec ?? null;
  if (o.kind === "Pod") return o.spec;
  return null;
}

export function containersOf(o: K8sObject): any[] {
  const s = podSpecOf(o);
  return s ? [...(s.containers ?? []), ...(s.initContainers ?? [])] : [];
}

// Merge keys of the Kubernetes lists this repository patches (from the API's patchMergeKey); any
// other list is replaced whole, as strategic merge does for lists without one.
function mergeKeyFor(pathKinds: string[], field: string): string | null {
  switch (field) {
    case "containers":
    case "initContainers":
    case "volumes":
    case "env":
    case "imagePullSecrets":
      return "name";
    case "volumeMounts":
      return "mountPath";
    case "ports":
      // Container ports merge on containerPort, Service ports on port.
      return pathKinds[0] === "Service" ? "port" : "containerPort";
    default:
      return null;
  }
}

export function strategicMerge(base: any, patch: any, pathKinds: string[] = []): any {
  if (patch === null) return undefined;
  if (Array.isArray(patch) || typeof patch !== "object") return structuredClone(patch);
  if (base == null || typeof base !== "object" || Array.isArray(base)) return structuredClone(patch);
  const out: any = { ...base };
  for (const [key, pv] of Object.entries(patch)) {
    if (key.startsWith("$")) throw new Error(`strategic-merge directive ${key} is not supported`);
    if (pv === null) {
      delete out[key];
      continue;
    }
    const bv = base[key];
    if (Array.isArray(pv) && Array.isArray(bv)) {
      const mk = mergeKeyFor(pathKinds, key);
      if (!mk) {
        out[key] = structuredClone(pv);
        continue;
      }
      const merged = bv.map((x: any) => structuredClone(x));
      for (const item of pv as any[]) {
        const i = merged.findIndex((x: any) => x?.[mk] === item?.[mk]);
        if (i >= 0) merged[i] = strategicMerge(merged[i], item, pathKinds);
        else merged.push(structuredClone(item));
      }
      out[key] = merged;
    } else out[key] = strategicMerge(bv, pv, pathKinds);
  }
  return out;
}
