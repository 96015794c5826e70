// Follows /v1/events/stream (Server-Sent Events) with fetch, which, unlike
// EventSource, can send the bearer token. Reconnects with a growing pause and
// resumes from the last event seen; `onConnect` runs on every (re)connection so
// the page can re-read what it shows and miss nothing while it was away.

import { authHeaders } from "./http.js";

export function followFeed({ onEvent, onConnect, onDown }) {
  const stop = new AbortController();
  let cursor = "now";
  let pause = 500;

  async function connectOnce() {
    const response = await fetch(`/v1/events/stream?after=${encodeURIComponent(cursor)}`, {
      headers: { Accept: "text/event-stream", ...authHeaders() },
      signal: stop.signal,
    });
    if (!response.ok || !response.body) throw new Error(`stream answered ${response.status}`);
    pause = 500;
    onConnect();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        dispatch(block);
      }
    }
  }

  function dispatch(block) {
    let id = null;
    let data = "";
    for (const line of block.split("\n")) {
      if (line.startsWith("id: ")) id = line.slice(4);
      else if (line.startsWith("data: ")) data += line.slice(6);
    }
    if (id) cursor = id;
    if (data) onEvent(JSON.parse(data));
  }

  (async () => {
    while (!stop.signal.aborted) {
      try {
        await connectOnce();
      } catch (error) {
        if (stop.signal.aborted) return;
        onDown(error);
      }
      await new Promise((resolve) => setTimeout(resolve, pause));
      pause = Math.min(pause * 2, 10_000);
    }
  })();

  return () => stop.abort();
}
