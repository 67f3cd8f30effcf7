"""Headless Chromium driven over the DevTools protocol, standard library only.

``--remote-debugging-pipe`` makes Chromium read protocol commands from its fd 3 and write
replies and events to its fd 4, each message JSON ending in a NUL byte: no websocket client
and no open port are needed. :func:`render` opens one page in a fresh browser, waits for its
load event, evaluates a script on it and takes a full-page screenshot.
"""

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FLAGS", "BrowserError", "Page", "find_chromium", "render"]

NAMES = ("chromium", "chromium-browser")  # Debian's package installs `chromium`
WIDTH, HEIGHT = 1280, 2400

# The flags every launch gets (plus --user-data-dir=<a fresh temporary folder>).
FLAGS = (
    "--headless",
    "--disable-gpu",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
    "--remote-debugging-pipe",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    f"--window-size={WIDTH},{HEIGHT}",
)


# `python -I -S -c _MOVE_FDS READ WRITE PROGRAM ARGS...`: READ and WRITE (both above 4) become
# fds 3 and 4, where --remote-debugging-pipe expects them, then PROGRAM replaces the process.
_MOVE_FDS = """
import os, sys
read, write = int(sys.argv[1]), int(sys.argv[2])
os.dup2(read, 3)
os.dup2(write, 4)
os.close(read)
os.close(write)
os.execv(sys.argv[3], sys.argv[3:])
"""


class BrowserError(RuntimeError):
    """Chromium died, timed out or answered a command with an error."""


@dataclass(frozen=True)
class Page:
    """What :func:`render` saw: the script's JSON value and a full-page PNG screenshot."""

    value: Any
    screenshot: bytes


def find_chromium() -> str | None:
    """Path of the Chromium executable on PATH, or None."""
    for name in NAMES:
        if path := shutil.which(name):
            return path
    return None


def _above_4(fd: int) -> int:
    """``fd`` moved to a number above 4, so that moving it to 3 or 4 cannot clobber it."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class _Pipe:
    """One browser process and its two protocol pipes."""

    def __init__(self, chromium: str, profile: Path, log: Any) -> None:
        # Our ends stay close-on-exec; Chromium's go to a tiny Python that moves them to fds 3
        # and 4, then execs the browser (no preexec_fn: this process may have threads).
        to_browser, self._send = os.pipe()
        self._recv, from_browser = os.pipe()
        to_browser, from_browser = _above_4(to_browser), _above_4(from_browser)
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-S",
                    "-c",
                    _MOVE_FDS,
                    str(to_browser),
                    str(from_browser),
                    chromium,
                    *FLAGS,
                    f"--user-data-dir={profile}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(to_browser, from_browser),
                start_new_session=True,  # its helper processes can be killed with it
            )
        finally:
            os.close(to_browser)
            os.close(from_browser)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        os.close(self._send)
        os.close(self._recv)

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("timed out waiting for Chromium")
            ready, _, _ = select.select([self._recv], [], [], left)
            if ready:
                chunk = os.read(self._recv, 1 << 20)
                if not chunk:
                    raise BrowserError(f"Chromium exited (status {self.process.poll()})")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(self, deadline: float, method: str, session: str | None = None, **params: Any) -> Any:
        """Send one command and return its result (events met meanwhile go to ``events``)."""
        self._next_id += 1
        command: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            command["sessionId"] = session
        try:
            os.write(self._send, json.dumps(command).encode() + b"\0")
        except BrokenPipeError as e:
            raise BrowserError(f"Chromium exited (status {self.process.poll()})") from e
        while True:
            message = self._message(deadline)
            if message.get("id") != self._next_id:
                self.events.append(message)
            elif "error" in message:
                raise BrowserError(f"{method}: {message['error']}")
            else:
                return message.get("result", {})

    def wait_for(self, deadline: float, method: str, session: str) -> dict[str, Any]:
        """The first event ``method`` of ``session``, already received or still to come."""
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method and event.get("sessionId") == session:
                    return self.events.pop(i)
            self.events.append(self._message(deadline))


def render(chromium: str, url: str, script: str, timeout: float = 60.0) -> Page:
    """Load ``url`` at ``WIDTH`` CSS pixels wide, then evaluate ``script`` and screenshot it.

    ``script`` is a JavaScript expression evaluated after the load event; a promise is awaited
    and its value returned as JSON. The screenshot covers the whole page, at one pixel per CSS
    pixel. Raises :class:`BrowserError` (with the end of Chromium's log) on any failure.
    """
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="kelp-chromium-") as folder:
        log_path = Path(folder) / "chromium.log"
        with open(log_path, "wb") as log:
            browser = _Pipe(chromium, Path(folder) / "profile", log)
        try:
            target = browser.call(deadline, "Target.createTarget", url="about:blank")
            session = browser.call(
                deadline, "Target.attachToTarget", targetId=target["targetId"], flatten=True
            )["sessionId"]
            browser.call(deadline, "Page.enable", session)
            browser.call(
                deadline, "Emulation.setDeviceMetricsOverride", session,
                width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False,
            )  # fmt: skip
            navigated = browser.call(deadline, "Page.navigate", session, url=url)
            if "errorText" in navigated:
                raise BrowserError(f"cannot open {url}: {navigated['errorText']}")
            browser.wait_for(deadline, "Page.loadEventFired", session)
            evaluated = browser.call(
                deadline, "Runtime.evaluate", session,
                expression=script, awaitPromise=True, returnByValue=True,
            )  # fmt: skip
            if "exceptionDetails" in evaluated:
                raise BrowserError(f"script failed: {evaluated['exceptionDetails']}")
            size = browser.call(deadline, "Page.getLayoutMetrics", session)["cssContentSize"]
            shot = browser.call(
                deadline, "Page.captureScreenshot", session, format="png",
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                      "scale": 1},
            )  # fmt: skip
            with contextlib.suppress(BrowserError):  # it may exit before it replies
                browser.call(deadline, "Browser.close")
            browser.process.wait(max(1.0, deadline - time.monotonic()))
        except (BrowserError, subprocess.TimeoutExpired) as e:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise BrowserError(f"{e}\n--- end of Chromium's log ---\n{tail}") from e
        finally:
            if browser.process.poll() is None:  # not reaped yet, so its group id is still its own
                os.killpg(browser.process.pid, signal.SIGKILL)
                browser.process.wait()
            browser.close()
    return Page(evaluated["result"].get("value"), base64.b64decode(shot["data"]))
