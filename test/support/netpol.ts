// A NetworkPolicy evaluator (networking.k8s.io/v1 semantics) so tests can ask "may this pod reach
// that one on this port?" of a built manifest set: policies are additive allow-lists; a pod
// selected by any policy of a type is isolated for that type; a connection needs the sender's
// egress and the receiver's ingress to allow it.
import type { K8sObject } from "./kustomize";

export interface Endpoint {
  /** A pod: its namespace, the namespace's labels and its own labels. */
  pod?: { namespace: string; namespaceLabels: Record<string, string>; labels: Record<string, string> };
  /** Or an address outside the cluster's pods. */
  ip?: string;
}

type Selector = { matchLabels?: Record<string, string>; matchExpressions?: { key: string; operator: string; values?: string[] }[] };

export function selects(sel: Selector | undefined, labels: Record<string, string>): boolean {
  if (!sel) return true;
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = Object.prototype.hasOwnProperty.call(labels, e.key);
    if (e.operator === "In" && !(has && e.values!.includes(labels[e.key]))) return false;
    if (e.operator === "NotIn" && has && e.values!.includes(labels[e.key])) return false;
    if (e.operator === "Exists" && !has) return false;
    if (e.operator === "DoesNotExist" && has) return false;
  }
  return true;
}

function ipToInt(ip: string): number {
  const p = ip.split(".").map(Number);
  if (p.length !== 4 || p.some((n) => !Number.isInteger(n) || n < 0 || n > 255)) throw new Error(`not an IPv4 address: ${ip}`);
  return ((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]) >>> 0;
}

export function inCidr(ip: string, cidr: string): boolean {
  const [base, bits] = cidr.split("/");
  const n = Number(bits);
  const mask = n === 0 ? 0 : (~0 << (32 - n)) >>> 0;
  return ((ipToInt(ip) & mask) >>> 0) === ((ipToInt(base) & mask) >>> 0);
}

function peerMatches(peer: any, policyNs: string, other: Endpoint): boolean {
  if (peer.ipBlock) {
    // ipBlock is for addresses outside the pod network; pods are matched by selectors.
    if (!other.ip) return false;
    if (!inCidr(other.ip, peer.ipBlock.cidr)) return false;
    return !(peer.ipBlock.except ?? []).some((c: string) => inCidr(other.ip!, c));
  }
  if (!other.pod) return false;
  if (peer.namespaceSelector) {
    if (!selects(peer.namespaceSelector, other.pod.namespaceLabels)) return false;
  } else if (other.pod.namespace !== policyNs) return false;
  return selects(peer.podSelector, other.pod.labels);
}

function portMatches(rulePorts: any[] | undefined, port: number, protocol: string): boolean {
  if (!rulePorts || !rulePorts.length) return true;
  return rulePorts.some((p) => {
    if ((p.protocol ?? "TCP") !== protocol) return false;
    if (p.port === undefined) return true;
    if (typeof p.port !== "number") throw new Error(`named port ${p.port}: use numbers in policies so they can be checked`);
    return p.endPort ? port >= p.port && port <= p.endPort : port === p.port;
  });
}

function directionAllows(policies: K8sObject[], ns: string, self: Record<string, string>, other: Endpoint, type: "Ingress" | "Egress", port: number, protocol: string): boolean {
  const applicable = policies.filter(
    (p) => (p.metadata.namespace ?? ns) === ns && (p.spec.policyTypes ?? ["Ingress"]).includes(type) && selects(p.spec.podSelector, self),
  );
  if (!applicable.length) return true; // not isolated
  const key = type === "Ingress" ? "ingress" : "egress";
  const peersKey = type === "Ingress" ? "from" : "to";
  return applicable.some((p) =>
    (p.spec[key] ?? []).some((rule: any) => {
      const peers = rule[peersKey];
      const peerOk = !peers || !peers.length || peers.some((peer: any) => peerMatches(peer, ns, other));
      return peerOk && portMatches(rule.ports, port, protocol);
    }),
  );
}

/** May `from` open a connection to `to` on port/protocol, under these policies? */
export function allowed(policies: K8sObject[], from: Endpoint, to: Endpoint, port: number, protocol = "TCP"): boolean {
  const nps = policies.filter((o) => o.kind === "NetworkPolicy");
  if (from.pod && !directionAllows(nps, from.pod.namespace, from.pod.labels, to, "Egress", port, protocol)) return false;
  if (to.pod && !directionAllows(nps, to.pod.namespace, to.pod.labels, from, "Ingress", port, protocol)) return false;
  return true;
}
