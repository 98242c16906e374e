"""The admin's stylesheet reaches a browser from the running server (gunicorn, as the Procfile's
`web` runs it), with no setting and no collectstatic needed."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_it_serves_the_admin_stylesheet_through_gunicorn(tmp_path):
    port = _free_port()
    # A VAR_DIR with nothing collected in it: the files come from the apps themselves.
    web = subprocess.Popen(
        [str(BIN / "gunicorn"), "convos.wsgi", "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=ROOT, env={**os.environ, "VAR_DIR": str(tmp_path)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                login = requests.get(f"{base}/admin/login/", timeout=10)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and web.poll() is None, "gunicorn did not start"
                time.sleep(0.2)
        assert login.status_code == 200
        stylesheets = re.findall(r'<link rel="stylesheet" href="([^"]+)"', login.text)
        assert "/static/admin/css/base.css" in stylesheets
        for href in stylesheets:
            css = requests.get(base + href, timeout=10, headers={"Accept-Encoding": "gzip"})
            assert css.status_code == 200, href
            assert css.headers["Content-Type"].startswith("text/css")
        assert "body" in requests.get(f"{base}/static/admin/css/base.css", timeout=10).text
    finally:
        web.terminate()
        web.wait(timeout=30)
