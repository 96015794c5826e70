"""Debian's Chromium, driven by Playwright: it never downloads a browser of its own."""

import os
import shutil

CHROMIUM_FLAGS = [
    "--no-sandbox",  # runs as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # The machine has no way out: background fetches would only fail, loudly.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium() -> str | None:
    """`JOBLEDGER_CHROMIUM`, else `chromium` on the PATH (Debian's package), else None."""
    return os.environ.get("JOBLEDGER_CHROMIUM") or shutil.which("chromium")
