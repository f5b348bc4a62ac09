// Storage flows of the unmodified @fal-ai/client, routed with requestMiddleware (J1).
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { SERVER, V1, checkVideo, fetchBytes, imageBlob, imageBytes, imageDataUri, middlewareClient, recordingFetch, sha256 } from "./helpers.mjs";

const fal = middlewareClient();
const MiB = 1024 * 1024;

test("storage.upload of a small Blob round-trips", async () => {
  const url = await fal.storage.upload(imageBlob());
  assert.deepEqual(await fetchBytes(url), imageBytes());
});

test("storage.upload of a > 90 MiB Blob goes multipart and round-trips", async () => {
  const bytes = randomBytes(91 * MiB);
  const url = await fal.storage.upload(new Blob([bytes], { type: "application/octet-stream" }));
  assert.equal(sha256(await fetchBytes(url)), sha256(bytes));
});

test("a Blob input is uploaded automatically and a data URI passes through", async () => {
  const sent = [];
  const recorded = middlewareClient({ fetch: recordingFetch(sent) });
  const dataUri = imageDataUri();
  const result = await recorded.subscribe(V1, {
    input: { prompt: "morph to the end frame", image_url: imageBlob(), tail_image_url: dataUri, duration: "5" },
  });
  await checkVideo(result.data, "blob-input");
  // The client uploaded the Blob through our storage initiate route and sent its URL; the data URI
  // went out untouched; the server accepted both and rendered.
  assert.ok(sent.some((r) => r.method === "POST" && r.url.startsWith(`${SERVER}/storage/upload/initiate?`)));
  const submit = sent.find((r) => r.method === "POST" && r.url === `${SERVER}/queue/${V1}`);
  assert.ok(submit, JSON.stringify(sent.map((r) => `${r.method} ${r.url}`)));
  const body = JSON.parse(submit.body);
  assert.ok(body.image_url.startsWith(SERVER + "/"), body.image_url);
  assert.equal(body.tail_image_url, dataUri);
});
