// Queue flows of the unmodified @fal-ai/client, routed with requestMiddleware (J1).
import assert from "node:assert/strict";
import { test } from "node:test";
import { ApiError, ValidationError } from "@fal-ai/client";
import { O3, V1, V2, checkVideo, imageDataUri, middlewareClient, waitFor } from "./helpers.mjs";

const fal = middlewareClient();

test("subscribe (polling) reports the queue position, then logs, then the result; queue.submit/status/result by id", async () => {
  const input = { prompt: "a paper boat drifts", image_url: imageDataUri(), duration: "3" };
  // Submitted first so that the subscribed request waits behind it (the server has one worker).
  const { request_id: firstId } = await fal.queue.submit(O3, { input });
  assert.ok(firstId);

  const updates = [];
  const result = await fal.subscribe(O3, {
    input,
    logs: true,
    pollInterval: 100,
    onQueueUpdate: (update) => updates.push(update),
  });
  assert.ok(updates.some((u) => u.status === "IN_QUEUE" && Number.isInteger(u.queue_position) && u.queue_position >= 0));
  assert.ok(updates.some((u) => u.status === "IN_PROGRESS" && Array.isArray(u.logs) && u.logs.length > 0));
  assert.ok(result.requestId, "requestId comes from the x-fal-request-id header");
  await checkVideo(result.data, "subscribe-polling");

  const status = await fal.queue.status(O3, { requestId: firstId, logs: true });
  assert.equal(status.status, "COMPLETED");
  const first = await fal.queue.result(O3, { requestId: firstId });
  assert.equal(first.requestId, firstId);
  await checkVideo(first.data, "queue-result");
});

test("subscribe in streaming mode (SSE status stream)", async () => {
  const updates = [];
  const result = await fal.subscribe(V2, {
    input: { prompt: "rain on a window", image_url: imageDataUri(), duration: "5" },
    mode: "streaming",
    logs: true,
    onQueueUpdate: (update) => updates.push(update),
  });
  assert.ok(updates.length > 0);
  assert.ok(updates.some((u) => u.status === "IN_PROGRESS"));
  await checkVideo(result.data, "subscribe-streaming");
});

test("queue.cancel of a queued and of a running request", async () => {
  const input = { prompt: "slow", image_url: imageDataUri(), duration: "10" };
  const { request_id: runningId } = await fal.queue.submit(V1, { input });
  const { request_id: queuedId } = await fal.queue.submit(V1, { input });
  assert.equal((await fal.queue.status(V1, { requestId: queuedId })).status, "IN_QUEUE");
  await fal.queue.cancel(V1, { requestId: queuedId });
  await waitFor(async () => (await fal.queue.status(V1, { requestId: runningId })).status === "IN_PROGRESS");
  await fal.queue.cancel(V1, { requestId: runningId });

  for (const requestId of [queuedId, runningId]) {
    const final = await waitFor(async () => {
      const s = await fal.queue.status(V1, { requestId });
      return s.status === "COMPLETED" ? s : null;
    });
    assert.equal(final.error_type, "request_cancelled");
    await assert.rejects(fal.queue.result(V1, { requestId }), ApiError);
  }
});

test("a 422 is a ValidationError with fal's fieldErrors", async () => {
  const error = await fal
    .subscribe(V2, { input: { image_url: imageDataUri(), duration: "5" } })
    .then(() => null, (e) => e);
  assert.ok(error instanceof ValidationError, String(error));
  assert.equal(error.status, 422);
  assert.deepEqual(error.fieldErrors[0].loc, ["body", "prompt"]);

  const bad = await fal.run(O3, { input: { prompt: "x", image_url: imageDataUri(), duration: "2" } }).then(
    () => null,
    (e) => e,
  );
  assert.ok(bad instanceof ValidationError);
  assert.deepEqual(bad.fieldErrors[0].loc, ["body", "duration"]);
});
