"""The invite as a QR code PNG data URL, as the original pool returned it (`qrDataUrl`).

qrcode's pure-Python PNG writer (pypng) keeps Pillow and its native libraries out of the image.
"""
from __future__ import annotations

import base64
import io
from functools import lru_cache

import qrcode
from qrcode.image.pure import PyPNGImage


@lru_cache(maxsize=256)
def qr_data_url(text: str) -> str:
    image = qrcode.make(text, image_factory=PyPNGImage, box_size=8, border=2)
    buffer = io.BytesIO()
    image.save(buffer)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
