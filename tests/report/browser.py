"""A page as a person sees it: headless Chromium (Debian's `chromium`) driven over the DevTools protocol on
a pipe (`--remote-debugging-pipe`: JSON messages separated by NUL bytes on file descriptors 3 and 4, so no
port, no websocket client and no extra package). It loads a file, waits for its load event, reports the
state of every image and every script error, and takes a full-page screenshot."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Per image: whether it finished loading and its decoded width (0: the browser could not render it).
IMAGES = """JSON.stringify(Array.from(document.images).map(i => ({
    alt: i.alt, complete: i.complete, width: i.naturalWidth, src: i.currentSrc.slice(0, 40)})))"""


@dataclass
class Seen:
    """What the browser saw of a page."""

    images: list[dict[str, Any]]  # {alt, complete, width, src (its first 40 characters)}
    errors: list[str] = field(default_factory=list)  # uncaught script exceptions and console errors

    @property
    def broken(self) -> list[dict[str, Any]]:
        return [image for image in self.images if not image["complete"] or image["width"] == 0]


class _Pipe:
    """One DevTools session over Chromium's debugging pipe."""

    def __init__(self, write: int, read: int) -> None:
        self.write, self.read, self.buffer, self.last, self.events = write, read, b"", 0, []

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.last += 1
        message = {"id": self.last, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._next()
            if reply.get("id") == self.last:
                if "error" in reply:
                    raise RuntimeError(f"chromium: {method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def _next(self) -> dict:
        while b"\0" not in self.buffer:
            chunk = os.read(self.read, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed its debugging pipe")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def saw(self, method: str) -> bool:
        return any(event.get("method") == method for event in self.events)


def chromium() -> str:
    """The browser's path; a clear error (not a skip) where it is missing."""
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    raise RuntimeError("headless Chromium is needed for this test: apt-get install -y chromium")


def _errors(events: list[dict]) -> list[str]:
    found = []
    for event in events:
        params = event.get("params", {})
        if event.get("method") == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            found.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
        elif event.get("method") == "Log.entryAdded" and params["entry"]["level"] == "error":
            found.append(params["entry"]["text"])
    return found


def view(page: Path, screenshot: Path, timeout: float = 60.0) -> Seen:
    """Open `page` in headless Chromium, wait for its load event, and return its images' states and the
    script errors raised meanwhile; a full-page PNG screenshot is written to `screenshot`."""
    commands_r, commands_w = os.pipe()  # Chromium reads commands on fd 3
    replies_r, replies_w = os.pipe()  # and writes replies on fd 4

    def wire() -> None:  # in the child: copies first, so that neither end is overwritten by the other
        commands, replies = os.dup(commands_r), os.dup(replies_w)
        os.dup2(commands, 3)
        os.dup2(replies, 4)

    with tempfile.TemporaryDirectory() as profile:
        args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe"]
        browser = subprocess.Popen(
            [*args, f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(3, 4),
            preexec_fn=wire,  # noqa: PLW1509 (the child is a fresh exec; nothing threaded runs in it)
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands_r)
        os.close(replies_w)
        pipe = _Pipe(commands_w, replies_r)
        try:
            target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                pipe.call(f"{domain}.enable", session=session)
            pipe.call("Page.navigate", {"url": page.resolve().as_uri()}, session)
            deadline = time.monotonic() + timeout
            while not pipe.saw("Page.loadEventFired"):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{page}: no load event within {timeout} s")
                pipe.call("Runtime.evaluate", {"expression": "0"}, session)  # let events arrive
                time.sleep(0.05)
            found = pipe.call("Runtime.evaluate", {"expression": IMAGES, "returnByValue": True}, session)
            images = json.loads(found["result"]["value"])
            shot = pipe.call(
                "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session
            )
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            seen = Seen(images, _errors(pipe.events))
            pipe.call("Browser.close")
        finally:
            os.close(commands_w)
            os.close(replies_r)
            try:
                browser.wait(timeout=10)
            except subprocess.TimeoutExpired:
                browser.kill()
                browser.wait()
    return seen
