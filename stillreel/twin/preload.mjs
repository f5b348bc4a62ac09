// Loaded by `node --import` (stillreel twin puts it in NODE_OPTIONS): every fetch to fal's hosts
// (fal.run, queue.fal.run, rest.fal.ai, rest.alpha.fal.ai, *.fal.media) goes to STILLREEL_TWIN_URL
// instead. @fal-ai/client and @fal-ai/server-proxy both use the global fetch.
const twin = (process.env.STILLREEL_TWIN_URL || "").replace(/\/+$/, "");
const prefixes = { "fal.run": "", "queue.fal.run": "/queue", "rest.fal.ai": "", "rest.alpha.fal.ai": "" };

function mapped(url) {
  let u;
  try { u = new URL(url); } catch { return null; }
  const host = u.hostname.toLowerCase();
  let prefix;
  if (host in prefixes) prefix = prefixes[host];
  else if (host === "fal.media" || host.endsWith(".fal.media")) prefix = "";
  else return null;
  return twin + prefix + u.pathname + u.search;
}

if (twin && typeof globalThis.fetch === "function") {
  const original = globalThis.fetch;
  globalThis.fetch = function (input, init) {
    const url = typeof input === "string" || input instanceof URL ? String(input) : input && input.url;
    const target = url ? mapped(url) : null;
    if (target === null) return original(input, init);
    if (typeof input === "string" || input instanceof URL) return original(target, init);
    return original(new Request(target, input), init);
  };
}
