// Starts the app's server, then does what the app's browser code does: @fal-ai/client with only a
// proxyUrl (no key), uploading an image and subscribing to a Kling request through the proxy.
// Run it as `stillreel twin -- node main.mjs`; it prints one JSON line.
import { createFalClient } from "@fal-ai/client";
import { start } from "./server.mjs";

const server = await start();
const proxy = `http://127.0.0.1:${server.address().port}/api/fal/proxy`;
const fal = createFalClient({ proxyUrl: { url: proxy, when: "always" } });
const png = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAEAAAAAwCAIAAAAuKetIAAAAU0lEQVR4nO3PQQ3AIADAQEAIwlCMrIngcVnSU9DOe/b4s6UDXjWgNaA1oDWgNaA1oDWgNaA1oDWgNaA1oDWgNaA1oDWgNaA1oDWgNaA1oDWgNaB9KmYBoJ5hpKgAAAAASUVORK5CYII=",
  "base64");
try {
  const imageUrl = await fal.storage.upload(new Blob([png], { type: "image/png" }));
  const updates = [];
  const { data, requestId } = await fal.subscribe("fal-ai/kling-video/v2/master/image-to-video", {
    input: { prompt: "a slow pan", image_url: imageUrl, duration: "5" },
    logs: true,
    pollInterval: 200,
    onQueueUpdate: (u) => updates.push(u.status),
  });
  const streamed = [];
  const { request_id: second } = await fal.queue.submit("fal-ai/kling-video/v1/standard/image-to-video", {
    input: { prompt: "rain", image_url: imageUrl, duration: "5" },
  });
  const stream = await fal.queue.streamStatus("fal-ai/kling-video/v1/standard/image-to-video", { requestId: second });
  stream.on("data", (u) => streamed.push(u.status));
  await stream.done();
  const video = await fetch(data.video.url);
  console.log(JSON.stringify({
    requestId, imageUrl, videoUrl: data.video.url, bytes: (await video.arrayBuffer()).byteLength,
    updates: [...new Set(updates)], streamed: [...new Set(streamed)],
  }));
} finally {
  server.close();
}
