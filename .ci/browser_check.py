#!/usr/bin/env python3
"""Open an HTML file in headless Chromium and report what a person's browser would see.

    python .ci/browser_check.py report/index.html [--width 400] [--overflow] [--words]
        [--hover '#fig-ensemble_curves .pt'] [--screenshot page.png [--shot-height 2400]]
        [--timeout 20]

Prints one JSON object and exits 0 when the page is clean, 1 when it is not, 2 on usage or
browser trouble:

    {"ok": true, "title": ..., "width": 400, "console_errors": [...], "network": [...],
     "images": [{"alt": ..., "complete": true, "naturalWidth": 1234}, ...],
     "charts": 3, "overflow": {"ok": true, "wide": [...]},
     "hover": {"ok": true, "tooltip": "deep: ensemble size 1 · accuracy 0.8123", ...}}

"clean" = no console error, no uncaught exception, no error logged by the browser (failed
loads, blocked content), no request other than file: and data: URLs, every <img> decoded with
naturalWidth > 0 and every chart <svg> drawn (non-empty box); with --overflow, no element's box
reaches past the viewport's right (or left) edge; with --words, no word broken across two lines
inside a token (a token may wrap only after _ - / . : = , – — or at a <wbr>; `words.first_figure` is
where the first figure starts, in page pixels); with --hover, moving the mouse over the first
element the CSS selector matches (a chart point) shows the page's tooltip (#tip), and its text
contains the point's own hover text (`data-t`).

The page is laid out at `--width` CSS pixels (a phone when under 600: mobile emulation, so the
page's `<meta name="viewport">` applies). The screenshot is the whole page, or its first
`--shot-height` pixels (from the element `--shot-from` selects).

It drives Chromium through the DevTools protocol over `--remote-debugging-port`, with a minimal
stdlib websocket client (text frames, client-side masking, fragmentation, ping), so it needs no
pip package. Chromium runs with the flags that work as root in a container, in a throw-away
profile, and is killed (its whole process group, by id) when the check ends.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--remote-debugging-port=0",  # any free port; Chromium writes it to DevToolsActivePort
]

# Collects image state after every image has been given the chance to decode.
IMAGES_JS = """
(async () => {
  const imgs = [...document.images];
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  return imgs.map(i => ({alt: i.alt.slice(0, 80), complete: i.complete,
                         naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight}));
})()
"""


# Every element whose box reaches past the viewport (the layout's width, not the page's).
OVERFLOW_JS = """
((width) => {
  const W = Math.min(width, document.documentElement.clientWidth), wide = [];
  for (const e of document.querySelectorAll('body *')) {
    const r = e.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (r.right > W + 0.5 || r.left < -0.5)
      wide.push({tag: e.tagName.toLowerCase(), id: e.id, cls: String(e.className.baseVal ??
                 e.className).slice(0, 40), left: Math.round(r.left), right: Math.round(r.right)});
  }
  return {ok: wide.length === 0, viewport: W, scrollWidth: document.documentElement.scrollWidth,
          count: wide.length, wide: wide.slice(0, 20)};
})(%d)
"""

# Words split across two lines inside a token: a token (whitespace-separated) may wrap only at
# an allowed point (after _ - / . : = , – — or a <wbr>), never inside one of its pieces; and
# where the first figure starts (page coordinates).
WORDS_JS = """
(() => {
  const broken = [], walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  const lines = (node, a, b) => {
    range.setStart(node, a); range.setEnd(node, b);
    return new Set([...range.getClientRects()].filter(r => r.width > 0)
                   .map(r => Math.round(r.top))).size;
  };
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.parentElement.closest('script, style, svg')) continue;
    for (const m of n.data.matchAll(/\\S+/g)) {
      if (lines(n, m.index, m.index + m[0].length) < 2) continue;
      for (const p of m[0].matchAll(/[^_\\-\\/.:=,\u2013\u2014]+[_\\-\\/.:=,\u2013\u2014]*/g)) {
        const a = m.index + p.index;
        if (lines(n, a, a + p[0].length) > 1) {
          broken.push({word: m[0].slice(0, 60), piece: p[0].slice(0, 40),
                       in: n.parentElement.tagName.toLowerCase()});
          break;
        }
      }
    }
  }
  const fig = document.querySelector('figure');
  return {broken: broken.slice(0, 20), count: broken.length,
          first_figure: fig ? Math.round(fig.getBoundingClientRect().top + scrollY) : null};
})()
"""

# Every chart <svg> has a drawn box; the count of charts.
CHARTS_JS = """
[...document.querySelectorAll('.chart svg')].map(s => {
  const r = s.getBoundingClientRect();
  return {width: Math.round(r.width), height: Math.round(r.height),
          points: s.querySelectorAll('.pt').length};
})
"""

# The hover target: scrolled into view, its centre (viewport coordinates) and hover text.
TARGET_JS = """
((sel) => {
  const e = document.querySelector(sel);
  if (!e) return null;
  e.scrollIntoView({block: 'center'});
  const r = e.getBoundingClientRect();
  return {x: r.left + r.width / 2, y: r.top + r.height / 2, text: e.dataset.t || ''};
})(%s)
"""

TOOLTIP_JS = """
(() => {
  const t = document.getElementById('tip');
  if (!t) return {text: '', visible: false};
  const r = t.getBoundingClientRect();
  return {text: t.textContent, visible: getComputedStyle(t).display !== 'none' && r.width > 0};
})()
"""


class WebSocket:
    """Just enough of RFC 6455 for the DevTools protocol (client side, text frames)."""

    def __init__(self, url: str, timeout: float):
        assert url.startswith("ws://"), url
        hostport, _, path = url[len("ws://") :].partition("/")
        host, _, port = hostport.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            response += chunk
        head, _, self.buffer = response.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("websocket closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def send(self, text: str) -> None:
        payload = text.encode()
        n = len(payload)
        header = bytes([0x81])  # FIN + text frame
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)  # clients must mask every frame
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def recv(self) -> str:
        message = b""
        while True:
            b0, b1 = self._read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x8:
                raise ConnectionError("websocket closed by the browser")
            if opcode == 0x9:  # ping -> pong (masked, as every client frame)
                m = os.urandom(4)
                pong = bytes(b ^ m[i % 4] for i, b in enumerate(payload))
                self.sock.sendall(bytes([0x8A, 0x80 | len(payload)]) + m + pong)
                continue
            if opcode in (0x0, 0x1, 0x2):
                message += payload
                if b0 & 0x80:
                    return message.decode()

    def close(self) -> None:
        self.sock.close()


class DevTools:
    """Commands and events of one page target."""

    def __init__(self, ws: WebSocket):
        self.ws, self.next_id, self.events = ws, 0, []

    def call(self, method: str, **params: object) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_for(self, method: str, deadline: float) -> dict:
        for i, ev in enumerate(self.events):
            if ev["method"] == method:
                return self.events.pop(i)
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("method") == method:
                return msg
            if "method" in msg:
                self.events.append(msg)
        raise TimeoutError(f"no {method} within the timeout")


def start_chromium(binary: str, profile: Path, timeout: float) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, so we can end exactly what we started
    )
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text().strip():
            return proc, int(port_file.read_text().split()[0])
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with status {proc.returncode} at start")
        time.sleep(0.05)
    raise TimeoutError("chromium did not open its DevTools port")


def page_websocket(port: int, deadline: float) -> str:
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
            targets = json.load(r)
        pages = [t for t in targets if t.get("type") == "page"]
        if pages:
            return pages[0]["webSocketDebuggerUrl"]
        time.sleep(0.05)
    raise TimeoutError("chromium has no page target")


def evaluate(cdp: DevTools, expression: str, awaits: bool = False):
    result = cdp.call(
        "Runtime.evaluate", expression=expression, awaitPromise=awaits, returnByValue=True
    )["result"]
    return result.get("value")


def set_viewport(cdp: DevTools, width: int, height: int) -> None:
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        width=width,
        height=height,
        deviceScaleFactor=1,
        mobile=width < 600,
    )


def hover_check(cdp: DevTools, selector: str) -> dict:
    """Move the mouse over the first element `selector` matches; read the tooltip."""
    target = evaluate(cdp, TARGET_JS % json.dumps(selector))
    if target is None:
        return {"ok": False, "selector": selector, "error": "no element matches"}
    for dx in (40, 0):  # arrive from beside the point, as a person's mouse does
        cdp.call("Input.dispatchMouseEvent", type="mouseMoved", x=target["x"] + dx, y=target["y"])
    evaluate(cdp, "new Promise(r => requestAnimationFrame(() => r(0)))", awaits=True)
    tip = evaluate(cdp, TOOLTIP_JS)
    ok = bool(tip["visible"] and target["text"] and target["text"] in tip["text"])
    return {"ok": ok, "selector": selector, "point": target["text"], **tip}


def check_page(
    html: Path,
    screenshot: Path | None = None,
    timeout: float = 20.0,
    width: int = 1280,
    *,
    overflow: bool = False,
    words: bool = False,
    hover: str | None = None,
    shot_height: int | None = None,
    shot_from: str | None = None,
) -> dict:
    """Load `html` in headless Chromium; return what was seen (see the module docstring)."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise FileNotFoundError("chromium is not on PATH (apt-get install chromium)")
    deadline = time.monotonic() + timeout
    result: dict = {"width": width}
    with tempfile.TemporaryDirectory(prefix="modescape-chromium-") as profile:
        proc, port = start_chromium(binary, Path(profile), timeout)
        try:
            ws = WebSocket(page_websocket(port, deadline), timeout)
            cdp = DevTools(ws)
            for domain in ("Page", "Runtime", "Log", "Network"):
                cdp.call(f"{domain}.enable")
            set_viewport(cdp, width, 4000)
            cdp.call("Page.navigate", url=html.resolve().as_uri())
            cdp.wait_for("Page.loadEventFired", deadline)
            images = evaluate(cdp, IMAGES_JS, awaits=True)
            result["title"] = evaluate(cdp, "document.title")
            charts = evaluate(cdp, CHARTS_JS)
            if overflow:
                result["overflow"] = evaluate(cdp, OVERFLOW_JS % width)
            if words:
                result["words"] = evaluate(cdp, WORDS_JS)
            if screenshot is not None:
                height = int(evaluate(cdp, "document.documentElement.scrollHeight"))
                top = 0
                if shot_from is not None:  # start at this element (e.g. a section)
                    js = f"document.querySelector({json.dumps(shot_from)})?.offsetTop ?? 0"
                    top = int(evaluate(cdp, js))
                height = min(height - top, shot_height or 16384, 16384)
                set_viewport(cdp, width, top + height)
                clip = {"x": 0, "y": top, "width": width, "height": height, "scale": 1}
                shot = cdp.call("Page.captureScreenshot", format="png", clip=clip)
                screenshot.write_bytes(base64.b64decode(shot["data"]))
                set_viewport(cdp, width, 4000)
            if hover is not None:
                result["hover"] = hover_check(cdp, hover)
            # Drain events that arrived meanwhile (console messages are sent asynchronously).
            evaluate(cdp, "0")
            ws.close()
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    errors, network, messages = [], [], []
    for ev in cdp.events:
        method, p = ev["method"], ev.get("params", {})
        if method == "Runtime.consoleAPICalled":  # any level: a page prints nothing
            text = " ".join(str(a.get("value", a.get("description"))) for a in p.get("args", []))
            messages.append(f"{p.get('type')}: {text}"[:300])
        elif method == "Log.entryAdded":
            messages.append(f"{p['entry'].get('level')}: {p['entry'].get('text', '')}"[:300])
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append(
                "console: "
                + " ".join(str(a.get("value", a.get("description"))) for a in p.get("args", []))
            )
        elif method == "Runtime.exceptionThrown":
            details = p["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text", "")
            errors.append(f"exception: {text}")
        elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
            errors.append(f"log: {p['entry'].get('text', '')} {p['entry'].get('url', '')}")
        elif method == "Network.requestWillBeSent":
            url = p["request"]["url"]
            if not url.startswith(("file:", "data:")):
                network.append(url[:200])
    bad_images = [i for i in images if not (i["complete"] and i["naturalWidth"] > 0)]
    bad_charts = [c for c in charts if not (c["width"] > 0 and c["height"] > 0)]
    ok = not errors and not network and not bad_images and not bad_charts
    ok = (
        ok
        and result.get("overflow", {}).get("ok", True)
        and result.get("words", {}).get("count", 0) == 0
        and result.get("hover", {}).get("ok", True)
    )
    return {
        "ok": ok,
        **result,
        "console_errors": errors,
        "console_messages": messages,
        "network": network,
        "images": images,
        "charts": len(charts),
        "bad_charts": bad_charts,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("--screenshot", type=Path, default=None)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--width", type=int, default=1280, help="viewport width (CSS px)")
    parser.add_argument("--overflow", action="store_true", help="fail on anything too wide")
    parser.add_argument("--words", action="store_true", help="fail on a word broken mid-token")
    parser.add_argument("--hover", metavar="SELECTOR", help="hover this chart point")
    parser.add_argument("--shot-height", type=int, default=None, help="crop the screenshot")
    parser.add_argument("--shot-from", metavar="SELECTOR", help="screenshot from this element")
    args = parser.parse_args()
    if not args.html.is_file():
        print(json.dumps({"ok": False, "error": f"no such file: {args.html}"}))
        return 2
    try:
        result = check_page(
            args.html,
            args.screenshot,
            args.timeout,
            args.width,
            overflow=args.overflow,
            words=args.words,
            hover=args.hover,
            shot_height=args.shot_height,
            shot_from=args.shot_from,
        )
    except (OSError, RuntimeError, TimeoutError, ConnectionError) as e:
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
        return 2
    print(json.dumps(result, indent=1))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
