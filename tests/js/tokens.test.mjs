// fal's temporary tokens: POST /tokens/ and the fal_jwt_token the client puts on the status stream
// in connectionMode "client" (what a browser does, so that the key never reaches it).
import assert from "node:assert/strict";
import { test } from "node:test";
import { KEY, SERVER, V1, checkVideo, fetchClient, imageDataUri } from "./helpers.mjs";

const STREAM = (id) => `${SERVER}/queue/fal-ai/kling-video/requests/${id}/status/stream?logs=0`;

async function token(apps, seconds) {
  const response = await fetch(`${SERVER}/tokens/`, {
    method: "POST",
    headers: { authorization: `Key ${KEY}`, "content-type": "application/json" },
    body: JSON.stringify({ allowed_apps: apps, token_expiration: seconds }),
  });
  assert.equal(response.status, 200);
  const value = await response.json();
  assert.equal(typeof value, "string", "fal answers the token as a bare JSON string");
  return value;
}

test("status stream in connectionMode client authenticates with a temporary token, not the key", async () => {
  const log = [];
  const fal = fetchClient(log);
  const input = { prompt: "a kite rises", image_url: imageDataUri(), duration: "5" };
  const { request_id: requestId } = await fal.queue.submit(V1, { input });
  const updates = [];
  const stream = await fal.queue.streamStatus(V1, { requestId, logs: true, connectionMode: "client" });
  stream.on("data", (update) => updates.push(update));
  const done = await stream.done();
  assert.equal(done.status, "COMPLETED");
  assert.ok(updates.some((u) => u.status === "IN_PROGRESS"));

  const minted = log.find((e) => e.url === "https://rest.fal.ai/tokens/");
  assert.ok(minted && minted.method === "POST" && minted.authorization === `Key ${KEY}`, JSON.stringify(log));
  const streamed = log.find((e) => e.url.includes("/status/stream"));
  assert.ok(new URL(streamed.url).searchParams.get("fal_jwt_token"), streamed.url);
  assert.equal(streamed.authorization, null, "the stream carries the token only");

  const result = await fal.queue.result(V1, { requestId });
  await checkVideo(result.data, "token-stream");
});

test("a token is scoped to its apps, expires, and authenticates nothing but the stream", async () => {
  const fal = fetchClient();
  const { request_id: id } = await fal.queue.submit(V1, {
    input: { prompt: "fog", image_url: imageDataUri(), duration: "5" },
  });
  assert.equal((await fetch(STREAM(id))).status, 401, "no token, no key");
  assert.equal((await fetch(`${STREAM(id)}&fal_jwt_token=not.a.token`)).status, 401);

  const other = await token(["some-other-app"], 60);
  const denied = await fetch(`${STREAM(id)}&fal_jwt_token=${other}`);
  assert.equal(denied.status, 403);
  assert.match((await denied.json()).detail, /not allowed/);

  const good = await token(["kling-video"], 60);
  const ok = await fetch(`${STREAM(id)}&fal_jwt_token=${good}`);
  assert.equal(ok.status, 200);
  assert.match(ok.headers.get("content-type"), /text\/event-stream/);
  await ok.body.cancel();
  // Not a key: the status and result routes still want the key.
  const status = await fetch(`${SERVER}/queue/fal-ai/kling-video/requests/${id}/status?fal_jwt_token=${good}`);
  assert.equal(status.status, 401);

  const short = await token(["fal-ai/kling-video"], 3);
  const fresh = await fetch(`${STREAM(id)}&fal_jwt_token=${short}`);
  assert.equal(fresh.status, 200);
  await fresh.body.cancel();
  await new Promise((resolve) => setTimeout(resolve, 3200));
  assert.equal((await fetch(`${STREAM(id)}&fal_jwt_token=${short}`)).status, 401, "expired");

  const bad = await fetch(`${SERVER}/tokens/`, {
    method: "POST",
    headers: { authorization: `Key ${KEY}`, "content-type": "application/json" },
    body: JSON.stringify({ allowed_apps: [], token_expiration: 60 }),
  });
  assert.equal(bad.status, 422);
  assert.deepEqual((await bad.json()).detail[0].loc, ["body", "allowed_apps"]);
  assert.equal((await fetch(`${SERVER}/tokens/`, { method: "POST", body: "{}" })).status, 401);
});
