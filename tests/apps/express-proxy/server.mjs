// An Express app as fal's docs write it: @fal-ai/server-proxy's Express adapter on /api/fal/proxy,
// keeping FAL_KEY on the server. Nothing here knows about stillreel.
import express from "express";
import * as falProxy from "@fal-ai/server-proxy/express";

export function start(port = 0) {
  const app = express();
  app.use(express.json({ limit: "10mb" }));
  app.all(falProxy.route, falProxy.createHandler());
  return new Promise((resolve) => {
    const server = app.listen(port, "127.0.0.1", () => resolve(server));
  });
}
