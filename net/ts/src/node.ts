// The Node entry of oxworld-client: the same API, with the `ws` package as the default WebSocket when the runtime has none (Node 20).

import { setDefaultWebSocket, type WebSocketConstructor } from "./client.js";

export * from "./index.js";

if ((globalThis as { WebSocket?: unknown }).WebSocket === undefined) {
  try {
    const mod = await import("ws");
    setDefaultWebSocket(mod.WebSocket satisfies WebSocketConstructor);
  } catch {
    // `ws` is not installed: connect() explains, unless a WebSocket is passed in the options.
  }
}
