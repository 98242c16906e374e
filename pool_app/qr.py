"""The invite as a QR code PNG data URL, as the original pool returned it (`qrDataUrl`).

segno draws the code and writes the PNG itself (pure Python, no Pillow or native libraries in
the image), faster than qrcode + pypng did (most of what is left is choosing the best mask, kept
for readers' sake). The API draws it only when a claim asks (`?qr=true`); the claim page always
shows its own.
"""
from __future__ import annotations

import base64
import io
from functools import lru_cache

import segno


@lru_cache(maxsize=256)
def qr_data_url(text: str) -> str:
    buffer = io.BytesIO()
    segno.make_qr(text, error="m").save(buffer, kind="png", scale=8, border=2, compresslevel=1)  # a few hundred bytes either way
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
