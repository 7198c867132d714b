// The browser verifier's page (GET /verify) and stylesheet. Static: everything it does happens in
// /assets/verify.js (lib/verifier-app.ts bundled with lib/proof), in the visitor's browser, against
// an RPC endpoint the visitor chooses. No inline script or style (the CSP forbids both).

export function renderVerifierPage(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Verify a VokeTag proof</title>
<link rel="stylesheet" href="/assets/verify.css">
<script src="/assets/verify.js" defer></script>
</head>
<body>
<main>
<header>
<h1>Verify a product proof</h1>
<p class="lead">Checks a VokeTag proof document (<code>voketag-proof/1</code>) in your browser: every hash from the
product up to the period root, then the anchoring transaction, read from an Ethereum JSON-RPC endpoint
<em>you</em> choose. The proof and the result never go to VokeTag.</p>
</header>
<noscript><p class="warn">This verifier runs in your browser and needs JavaScript. Without it, use the command line:
<code>npx voketag verify proof.json --rpc URL</code>, or <code>POST /v1/verify/proof</code>.</p></noscript>
<form id="verify-form" novalidate>
<section class="card">
<label for="proof">Proof document (JSON)</label>
<textarea id="proof" name="proof" rows="10" spellcheck="false" autocomplete="off" placeholder='{"version": "voketag-proof/1", …}'></textarea>
<div class="file-row"><label for="proof-file">…or open a proof file</label> <input type="file" id="proof-file" accept=".json,application/json"></div>
<label for="rpc">Chain RPC URL</label>
<input id="rpc" name="rpc" type="url" inputmode="url" placeholder="https://… any JSON-RPC endpoint of the proof's chain" autocomplete="url">
<p class="hint" id="rpc-hint">The endpoint must serve the chain named in the proof (<code>anchor.chain_id</code>) and allow requests from this page (CORS).</p>
<label for="min-conf">Require at least this many confirmations (optional)</label>
<input id="min-conf" name="min-conf" type="number" min="0" step="1" inputmode="numeric">
</section>
<section class="card" id="issuer">
<h2>Who anchored it</h2>
<p id="issuer-status">Reading this VokeTag's published anchoring addresses…</p>
<ul id="issuer-addresses"></ul>
<label class="check"><input type="checkbox" id="require-issuer" checked> Require the transaction to come from one of these addresses</label>
</section>
<button type="submit" id="verify">Verify</button>
<p id="form-error" class="error" role="alert" hidden></p>
</form>
<section id="result" class="card" hidden aria-live="polite">
<h2 id="verdict"></h2>
<p id="summary"></p>
<ol id="checks"></ol>
</section>
<footer><p>The checks and the document format are specified in <code>docs/PROOFS.md</code>; anyone can write their own verifier from it.</p></footer>
</main>
</body>
</html>
`;
}

export const VERIFIER_CSS = `*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a1a1a;background:#f1f3f6}
main{max-width:46rem;margin:0 auto;padding:1rem}
h1{font-size:1.6rem;margin:.5rem 0}h2{font-size:1.15rem;margin:0 0 .5rem}
.lead{color:#333}
.card{background:#fff;border-radius:12px;padding:1rem;margin:0 0 1rem}
label{display:block;font-weight:600;margin:.75rem 0 .25rem}
label.check{font-weight:400;display:flex;gap:.5rem;align-items:center}
textarea,input[type=url],input[type=number]{width:100%;font:inherit;padding:.6rem;border:1px solid #6b6b6b;border-radius:8px;background:#fff;color:#1a1a1a}
textarea{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85rem}
.file-row{display:flex;gap:.5rem;align-items:center;flex-wrap:wrap}.file-row label{font-weight:400;margin:0}
.hint{font-size:.85rem;color:#4a4a4a;margin:.25rem 0 0}
button{font:inherit;font-weight:600;padding:.7rem 1.4rem;border:0;border-radius:8px;background:#1d4ed8;color:#fff;min-height:44px;cursor:pointer}
button:disabled{background:#6b6b6b;cursor:progress}
:focus-visible{outline:3px solid #b45309;outline-offset:2px}
.error{color:#a4161a;font-weight:600}
.warn{background:#fff4e5;border-left:6px solid #8a4b00;padding:.75rem}
#issuer-addresses{margin:.25rem 0;padding-left:1.2rem}#issuer-addresses code{word-break:break-all}
#result.valid{border-left:8px solid #146c2e}#result.invalid{border-left:8px solid #a4161a}
#verdict{font-size:1.35rem}
#result.valid #verdict{color:#146c2e}#result.invalid #verdict{color:#a4161a}
#checks{padding-left:1.4rem}#checks li{margin:.4rem 0}
#checks .name{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-weight:700}
#checks .ok{color:#146c2e}#checks .bad{color:#a4161a}
#checks .detail{display:block;color:#4a4a4a;font-size:.9rem;word-break:break-word}
code{font-size:.9rem}
footer{font-size:.85rem;color:#4a4a4a}
`;
