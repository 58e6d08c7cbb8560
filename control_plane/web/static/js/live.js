// The live event stream (GET /api/v1/ws): subscribe, hand events on, reconnect with capped backoff.

import { token } from "./api.js";

const MAX_DELAY_MS = 30000;

export class Live {
  constructor(topics, { onEvent, onState, onReconnected }) {
    this.topics = topics;
    this.onEvent = onEvent;
    this.onState = onState;
    this.onReconnected = onReconnected;
    this.attempt = 0;
    this.socket = null;
    this.timer = null;
    this.everOpened = false;
  }

  start() {
    this.connect();
    // Waking a suspended tab: reconnect at once instead of waiting out the backoff.
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && !this.socket) this.reconnectNow();
    });
    window.addEventListener("online", () => this.reconnectNow());
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const current = token();
    // Browsers cannot set headers on a WebSocket handshake; the API takes the token as a query parameter.
    const query = current ? `?token=${encodeURIComponent(current)}` : "";
    return `${scheme}//${location.host}/api/v1/ws${query}`;
  }

  connect() {
    this.timer = null;
    this.onState(this.attempt ? "reconnecting" : "connecting");
    let socket;
    try {
      socket = new WebSocket(this.url());
    } catch {
      this.retry();
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => {
      socket.send(JSON.stringify({ subscribe: this.topics }));
    });
    socket.addEventListener("message", (message) => {
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      if (frame.type === "subscribed") {
        const again = this.everOpened;
        this.everOpened = true;
        this.attempt = 0;
        this.onState("live");
        // Events sent while we were away are gone: whoever shows data reloads it.
        if (again) this.onReconnected();
      } else if (frame.type === "event") {
        this.onEvent(frame);
      }
    });
    socket.addEventListener("close", () => {
      if (this.socket === socket) {
        this.socket = null;
        this.retry();
      }
    });
  }

  retry() {
    if (this.timer) return;
    this.attempt += 1;
    const base = Math.min(MAX_DELAY_MS, 500 * 2 ** Math.min(this.attempt - 1, 10));
    const delay = base * (0.8 + Math.random() * 0.4);
    this.onState("reconnecting", Math.round(delay / 1000));
    this.timer = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    if (this.socket) return;
    if (this.timer) clearTimeout(this.timer);
    this.connect();
  }
}

/** Run `fn` soon after it was requested, coalescing requests that arrive while it runs. */
export class Refresher {
  constructor(fn, delayMs = 150) {
    this.fn = fn;
    this.delayMs = delayMs;
    this.timer = null;
    this.running = false;
    this.again = false;
    this.stopped = false;
  }

  request() {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (!this.timer) this.timer = setTimeout(() => this.run(), this.delayMs);
  }

  async run() {
    this.timer = null;
    this.running = true;
    try {
      await this.fn();
    } catch (error) {
      // The view shows its own errors; this only keeps a failed refresh from going unnoticed.
      console.warn("refresh failed", error);
    } finally {
      this.running = false;
      if (this.again) {
        this.again = false;
        this.request();
      }
    }
  }

  stop() {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }
}
