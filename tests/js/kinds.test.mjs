// One id of every kind through the unmodified @fal-ai/client: text-to-video (audio on by default and
// off by default), image-to-video with an element, reference-to-video and elements. Each video is
// fetched here and recorded with what it must be; the Python driver (tests/test_fal_client_js.py)
// decodes it and checks size, frames, fps, duration, audio and that every picture is shown.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { checkVideo, middlewareClient, proxyClient } from "./helpers.mjs";

// name -> PNG path, written by the driver ("unrelated" is kept back: the driver's control).
const PICTURES = JSON.parse(process.env.STILLREEL_TEST_PICTURES || "{}");
assert.ok(PICTURES.a && PICTURES.b && PICTURES.frontal && PICTURES.view && PICTURES.start,
  "run through tests/test_fal_client_js.py, which writes the pictures");

const blob = (name) => new Blob([readFileSync(PICTURES[name])], { type: "image/png" });
const dataUri = (name) => `data:image/png;base64,${readFileSync(PICTURES[name]).toString("base64")}`;

const fal = middlewareClient();

test("text-to-video: v3 pro (generate_audio defaults to true) and o3 standard (defaults to false)", async () => {
  const updates = [];
  const v3 = await fal.subscribe("fal-ai/kling-video/v3/pro/text-to-video", {
    input: { prompt: "a lighthouse in fog, the camera zooms in", duration: "3" },
    logs: true,
    onQueueUpdate: (u) => updates.push(u),
  });
  assert.ok(updates.some((u) => (u.logs || []).some((l) => l.message.includes("procedural"))));
  await checkVideo(v3.data, "t2v-v3-audio", { aspect: "16:9", seconds: 3, audio: true, tier: "pro" });

  const o3 = await fal.run("fal-ai/kling-video/o3/standard/text-to-video", {
    input: { prompt: "a desert road, pan right", duration: "3", aspect_ratio: "1:1" },
  });
  await checkVideo(o3.data, "t2v-o3-silent", { aspect: "1:1", seconds: 3, audio: false });
});

test("image-to-video with an element (v3 standard), pictures sent as Blobs the client uploads", async () => {
  const result = await proxyClient().subscribe("fal-ai/kling-video/v3/standard/image-to-video", {
    input: {
      prompt: "@Element1 enters",
      duration: "3",
      generate_audio: false,
      start_image_url: blob("start"),
      elements: [{ frontal_image_url: blob("frontal"), reference_image_urls: [blob("view")] }],
    },
  });
  await checkVideo(result.data, "i2v-element", {
    aspect: "16:9", seconds: 3, audio: false, starts_on: "start", shows: ["frontal", "view"],
  });
});

test("reference-to-video (o3 standard): reference images, an element and a start image", async () => {
  const result = await fal.subscribe("fal-ai/kling-video/o3/standard/reference-to-video", {
    input: {
      prompt: "@Image1 then @Element1",
      duration: "4",
      aspect_ratio: "9:16",
      start_image_url: dataUri("start"),
      image_urls: [dataUri("a"), dataUri("b")],
      elements: [{ frontal_image_url: dataUri("frontal"), reference_image_urls: [dataUri("view")] }],
    },
  });
  await checkVideo(result.data, "r2v", {
    aspect: "9:16", seconds: 4, audio: false, starts_on: "start", shows: ["a", "b", "frontal", "view"],
  });
});

test("elements (v1.6 pro): input_image_urls composed into one clip", async () => {
  const result = await fal.subscribe("fal-ai/kling-video/v1.6/pro/elements", {
    input: { prompt: "two friends", input_image_urls: [dataUri("a"), dataUri("b")] },
  });
  await checkVideo(result.data, "elements", { aspect: "16:9", seconds: 5, audio: false, starts_on: "a", shows: ["a", "b"] });
});
