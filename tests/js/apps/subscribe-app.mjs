// A server-side app using the unmodified @fal-ai/client against fal's own hosts (no proxyUrl):
// under `stillreel twin -- node app.mjs` the preload sends it to the twin.
import { fal } from "@fal-ai/client";

const png = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAEAAAAAwCAIAAAAuKetIAAAAU0lEQVR4nO3PQQ3AIADAQEAIwlCMrIngcVnSU9DOe/b4s6UDXjWgNaA1oDWgNaA1oDWgNaA1oDWgNaA1oDWgNaA1oDWgNaA1oDWgNaA1oDWgNaB9KmYBoJ5hpKgAAAAASUVORK5CYII=",
  "base64");
const imageUrl = await fal.storage.upload(new Blob([png], { type: "image/png" }));
const { data, requestId } = await fal.subscribe("fal-ai/kling-video/v2/master/image-to-video", {
  input: { prompt: "a slow pan", image_url: imageUrl, duration: "5" },
  pollInterval: 200,
});
const video = await fetch(data.video.url);
if (!video.ok) throw new Error(`video ${video.status}`);
console.log(JSON.stringify({ requestId, imageUrl, videoUrl: data.video.url, bytes: (await video.arrayBuffer()).byteLength }));
