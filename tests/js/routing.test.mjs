// The two documented ways to point @fal-ai/client at stillreel: requestMiddleware (J1) for the
// sync run path, and proxyUrl {when: "always"} through /api/fal/proxy (J2) for queue + storage.
import assert from "node:assert/strict";
import { test } from "node:test";
import { O3, checkVideo, fetchBytes, imageBlob, imageBytes, imageDataUri, middlewareClient, proxyClient } from "./helpers.mjs";

test("requestMiddleware rewrite: fal.run (sync path)", async () => {
  const fal = middlewareClient();
  const result = await fal.run(O3, { input: { prompt: "a kite", image_url: imageDataUri(), duration: "3" } });
  assert.ok(result.requestId);
  await checkVideo(result.data, "run-middleware");
});

test("proxyUrl always: storage.upload, subscribe with a Blob input, status and result through /api/fal/proxy", async () => {
  const fal = proxyClient();
  const url = await fal.storage.upload(imageBlob());
  assert.deepEqual(await fetchBytes(url), imageBytes());

  const updates = [];
  const result = await fal.subscribe(O3, {
    input: { prompt: "a lighthouse", image_url: imageBlob(), duration: "3" },
    logs: true,
    onQueueUpdate: (u) => updates.push(u.status),
  });
  assert.ok(updates.includes("IN_PROGRESS") || updates.includes("IN_QUEUE"));
  await checkVideo(result.data, "subscribe-proxy");
  const status = await fal.queue.status(O3, { requestId: result.requestId, logs: false });
  assert.equal(status.status, "COMPLETED");
  const again = await fal.queue.result(O3, { requestId: result.requestId });
  assert.deepEqual(again.data, result.data);
});
