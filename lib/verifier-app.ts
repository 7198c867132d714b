// The browser verifier (the script of GET /verify), bundled by lib/verifier-bundle.ts. It runs the
// very same parseProofDocument / verifyProofDocument as the API and the CLI, with a ChainReader over
// the RPC URL the visitor types in. After the page has loaded, it talks to VokeTag only to read the
// published anchoring addresses (/.well-known/voketag.json) and, when asked via ?product=, a proof:
// the verification itself goes from this browser to the chosen RPC and nowhere else.
// (tsconfig has no DOM library: the few DOM calls go through a loose type.)
import { parseProofDocument, verifyProofDocument, ProofFormatError, type ProofDocument, type ProofCheck } from "./proof";
import { rpcChainReader } from "./json-rpc";

type El = any;
interface Identity {
  chains?: { chain_id: number; anchoring_addresses: string[] }[];
}

const doc: El = (globalThis as any).document;
const $ = (id: string): El => doc.getElementById(id);

let identity: Identity | null = null;

function text(tag: string, content: string, className?: string): El {
  const el = doc.createElement(tag);
  el.textContent = content;
  if (className) el.className = className;
  return el;
}

function showError(message: string | null, problems: string[] = []) {
  const box = $("form-error");
  box.textContent = "";
  box.hidden = !message;
  if (!message) return;
  box.appendChild(text("span", message));
  if (problems.length) {
    const ul = doc.createElement("ul");
    for (const p of problems) ul.appendChild(text("li", p));
    box.appendChild(ul);
  }
}

async function loadIdentity() {
  const status = $("issuer-status");
  const list = $("issuer-addresses");
  try {
    const res = await fetch("/.well-known/voketag.json", { headers: { accept: "application/json" } });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    identity = (await res.json()) as Identity;
    list.textContent = "";
    for (const chain of identity.chains ?? []) {
      for (const a of chain.anchoring_addresses) {
        const li = doc.createElement("li");
        li.appendChild(text("code", a));
        li.appendChild(text("span", ` on chain ${chain.chain_id}`));
        list.appendChild(li);
      }
    }
    status.textContent = "This VokeTag publishes these anchoring addresses (/.well-known/voketag.json):";
  } catch (err) {
    identity = null;
    status.textContent = `Could not read this VokeTag's anchoring addresses (${(err as Error).message}); the sender will only be compared with the document's own anchor.address.`;
    $("require-issuer").checked = false;
    $("require-issuer").disabled = true;
  }
}

function trustedFor(d: ProofDocument): string[] | undefined {
  if (!$("require-issuer").checked || !identity) return undefined;
  const chain = (identity.chains ?? []).find((c) => c.chain_id === d.anchor.chain_id);
  // A chain this VokeTag does not list: no address of it can be trusted.
  return chain ? chain.anchoring_addresses : [];
}

function render(d: ProofDocument, result: { valid: boolean; checks: ProofCheck[] }) {
  const section = $("result");
  section.hidden = false;
  section.className = `card ${result.valid ? "valid" : "invalid"}`;
  section.setAttribute("data-valid", String(result.valid));
  const passed = result.checks.filter((c) => c.ok).length;
  $("verdict").textContent = result.valid
    ? `Valid: all ${result.checks.length} checks passed`
    : `Not valid: ${result.checks.length - passed} of ${result.checks.length} checks failed`;
  const p = d.product;
  $("summary").textContent = `${p.name} (SKU ${p.sku}, serial ${p.serial}) — batch ${d.batch.id}, anchored by ${d.anchor.tx_hash} in block ${d.anchor.block_number} of chain ${d.anchor.chain_id}.`;
  const list = $("checks");
  list.textContent = "";
  for (const c of result.checks) {
    const li = doc.createElement("li");
    li.setAttribute("data-check", c.name);
    li.setAttribute("data-ok", String(c.ok));
    li.appendChild(text("span", c.ok ? "✓ " : "✗ ", c.ok ? "ok" : "bad"));
    li.appendChild(text("span", c.name, "name"));
    li.appendChild(text("span", c.detail, "detail"));
    list.appendChild(li);
  }
  section.focus?.();
}

async function onSubmit(event: El) {
  event.preventDefault();
  showError(null);
  $("result").hidden = true;
  const raw = String($("proof").value || "").trim();
  if (!raw) return showError("Paste a proof document or open a proof file.");
  let d: ProofDocument;
  try {
    d = parseProofDocument(raw);
  } catch (err) {
    if (err instanceof ProofFormatError) return showError("This is not a well-formed VokeTag proof document:", err.problems);
    throw err;
  }
  const rpc = String($("rpc").value || "").trim();
  if (!/^https?:\/\/\S+$/i.test(rpc)) return showError(`Enter the URL of a JSON-RPC endpoint of chain ${d.anchor.chain_id} (http:// or https://).`);
  const minRaw = String($("min-conf").value || "").trim();
  const minConfirmations = minRaw === "" ? undefined : Math.max(0, Math.floor(Number(minRaw)));
  const button = $("verify");
  button.disabled = true;
  button.textContent = "Verifying…";
  try {
    const result = await verifyProofDocument(d, rpcChainReader(rpc, { timeoutMs: 15_000 }), { trustedAddresses: trustedFor(d), minConfirmations });
    render(d, result);
  } catch (err) {
    showError(`Verification could not run: ${(err as Error).message}`);
  } finally {
    button.disabled = false;
    button.textContent = "Verify";
  }
}

async function loadFromQuery() {
  const params = new URLSearchParams((globalThis as any).location.search);
  const rpc = params.get("rpc");
  if (rpc) $("rpc").value = rpc;
  const product = params.get("product");
  if (product && /^[0-9a-f-]{36}$/i.test(product)) {
    const res = await fetch(`/v1/products/${product}/proof`, { headers: { accept: "application/json" } });
    if (res.ok) $("proof").value = JSON.stringify(await res.json(), null, 2);
    else showError(`No proof for product ${product} yet (HTTP ${res.status}).`);
  }
}

function start() {
  $("verify-form").addEventListener("submit", (e: El) => void onSubmit(e));
  $("proof-file").addEventListener("change", async () => {
    const file = $("proof-file").files?.[0];
    if (file) $("proof").value = await file.text();
  });
  void loadIdentity();
  void loadFromQuery().catch(() => undefined);
  doc.documentElement.setAttribute("data-verifier", "ready");
}

if (doc) {
  if (doc.readyState === "loading") doc.addEventListener("DOMContentLoaded", start);
  else start();
}
