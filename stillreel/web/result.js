// A finished request: the video (seekable), a download link, the request id, the generation time.

import { h, copyText, formatBytes, formatSeconds } from "./dom.js";

export function showResult({ requestId, output, seconds }) {
  const video = output?.video;
  if (!video?.url) {
    return h("pre.json", JSON.stringify(output, null, 2));
  }
  const player = h("video.result-video", { src: video.url, controls: true, playsinline: true, loop: true, muted: true, autoplay: true, preload: "auto" });
  player.muted = true; // the attribute alone does not mute when set from script
  const copy = h("button.ghost.small", { type: "button", onclick: async () => {
    copy.textContent = (await copyText(requestId)) ? "Copied" : "Copy failed";
    setTimeout(() => { copy.textContent = "Copy"; }, 1500);
  } }, "Copy");
  const name = video.file_name || `${requestId}.mp4`;
  return h("div.result",
    h("div.video-frame", player),
    h("div.result-actions",
      h("a.button.primary.small", { href: video.url, download: name }, "Download"),
      h("a.button.ghost.small", { href: video.url, target: "_blank", rel: "noopener" }, "Open")),
    h("dl.result-meta",
      h("div.meta-wide", h("dt", "Request ID"), h("dd", h("code.request-id", requestId), " ", copy)),
      h("div", h("dt", "Generation time"), h("dd.generation-time", formatSeconds(seconds))),
      video.file_size ? h("div", h("dt", "Size"), h("dd", formatBytes(video.file_size))) : null,
      video.content_type ? h("div", h("dt", "Type"), h("dd", video.content_type)) : null));
}
