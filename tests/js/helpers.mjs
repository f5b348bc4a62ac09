// Shared by the *.test.mjs files: the live server's address and key (from the Python driver,
// tests/test_fal_client_js.py), the two ways an unmodified @fal-ai/client is pointed at it,
// and checks on the videos it returns.
import assert from "node:assert/strict";
import { appendFileSync, readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { createFalClient } from "@fal-ai/client";

export const SERVER = process.env.STILLREEL_URL;
export const KEY = process.env.STILLREEL_KEY;
const IMAGE = process.env.STILLREEL_TEST_IMAGE;
const RECORD = process.env.STILLREEL_TEST_RECORD;
assert.ok(SERVER && IMAGE && RECORD, "run these through tests/test_fal_client_js.py");

export const V1 = "fal-ai/kling-video/v1/standard/image-to-video";
export const V2 = "fal-ai/kling-video/v2/master/image-to-video";
export const O3 = "fal-ai/kling-video/o3/standard/image-to-video";

// J1: rewrite fal's hosts to ours in requestMiddleware (the README's snippet, verbatim).
export function middlewareClient(extra = {}) {
  const MAP = {
    "https://queue.fal.run": `${SERVER}/queue`,
    "https://fal.run": SERVER,
    "https://rest.fal.ai": SERVER,
  };
  return createFalClient({
    credentials: KEY,
    requestMiddleware: async (req) => {
      for (const [from, to] of Object.entries(MAP))
        if (req.url.startsWith(from + "/")) return { ...req, url: to + req.url.slice(from.length) };
      return req;
    },
    ...extra,
  });
}

// A fetch that records what the client sends (method, URL, string bodies) before sending it.
export function recordingFetch(log) {
  return async (url, init = {}) => {
    log.push({ method: (init.method || "GET").toUpperCase(), url: String(url), body: typeof init.body === "string" ? init.body : null });
    return fetch(url, init);
  };
}

// J2: fal's proxy protocol; our server is the proxy (x-fal-target-url routing).
export function proxyClient() {
  return createFalClient({
    credentials: KEY,
    proxyUrl: { url: `${SERVER}/api/fal/proxy`, when: "always" },
  });
}

export const imageBytes = () => readFileSync(IMAGE);
export const imageBlob = () => new Blob([imageBytes()], { type: "image/png" });
export const imageDataUri = () => `data:image/png;base64,${imageBytes().toString("base64")}`;

export const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");

export async function fetchBytes(url) {
  const response = await fetch(url);
  assert.equal(response.status, 200, `GET ${url}`);
  return Buffer.from(await response.arrayBuffer());
}

// fal's {"video": File}; the bytes are an MP4 of the announced size. The URL is recorded so that
// the Python driver decodes the video afterwards.
export async function checkVideo(data, label, expect = undefined) {
  const video = data.video;
  assert.ok(video.url.startsWith(SERVER + "/"), video.url);
  assert.equal(video.content_type, "video/mp4");
  const bytes = await fetchBytes(video.url);
  assert.equal(bytes.length, video.file_size);
  assert.equal(bytes.subarray(4, 8).toString("latin1"), "ftyp");
  appendFileSync(RECORD, JSON.stringify({ label, url: video.url, expect }) + "\n");  // expect: what the driver checks on the frames
}

export async function waitFor(fn, timeoutMs = 60000, intervalMs = 50) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error("condition not reached");
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

// J3: rewrite fal's hosts in a custom fetch. Unlike requestMiddleware this also reaches the calls
// the client makes with config.fetch directly (the status stream in connectionMode "client").
export function rewriteFalUrl(url) {
  const MAP = { "https://queue.fal.run": `${SERVER}/queue`, "https://fal.run": SERVER, "https://rest.fal.ai": SERVER };
  for (const [from, to] of Object.entries(MAP))
    if (url.startsWith(from + "/")) return to + url.slice(from.length);
  return url;
}

export function fetchClient(log = [], extra = {}) {
  return createFalClient({
    credentials: KEY,
    fetch: async (url, init = {}) => {
      const headers = new Headers(init.headers || {});
      log.push({ method: (init.method || "GET").toUpperCase(), url: String(url), authorization: headers.get("authorization") });
      return fetch(rewriteFalUrl(String(url)), init);
    },
    ...extra,
  });
}
