"""Draw the storypulse icon: the SVG is the source; PNG, ICO and ICNS are rendered from it.

Run once after changing the drawing (the outputs are committed, so a build
needs no image tools):  python packaging/icons/make_icons.py
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent

# A dark rounded tile, three rising bars (work done) and a pulse line across them.
SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256" viewBox="0 0 256 256">
  <rect x="8" y="8" width="240" height="240" rx="48" fill="#1f2a44"/>
  <rect x="52" y="148" width="36" height="60" rx="6" fill="#3b82f6"/>
  <rect x="110" y="116" width="36" height="92" rx="6" fill="#3b82f6"/>
  <rect x="168" y="80" width="36" height="128" rx="6" fill="#3b82f6"/>
  <polyline points="36,120 82,120 102,68 128,168 150,96 166,120 220,120"
            fill="none" stroke="#fbbf24" stroke-width="14"
            stroke-linecap="round" stroke-linejoin="round"/>
</svg>
"""


def render_png(svg: bytes, size: int) -> bytes:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication([])
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    QSvgRenderer(QByteArray(svg)).render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    return bytes(data)


def ico(pngs: dict[int, bytes]) -> bytes:
    """Windows icon whose images are PNGs (accepted since Vista); 256 is written as 0."""
    header = struct.pack("<HHH", 0, 1, len(pngs))
    offset = len(header) + 16 * len(pngs)
    entries, images = b"", b""
    for size, png in sorted(pngs.items()):
        entries += struct.pack("<BBBBHHII", size % 256, size % 256, 0, 0, 1, 32, len(png), offset + len(images))
        images += png
    return header + entries + images


def icns(pngs: dict[int, bytes]) -> bytes:
    """macOS icon: PNG chunks by their type code."""
    codes = {32: b"ic11", 64: b"ic12", 128: b"ic07", 256: b"ic08", 512: b"ic09"}
    body = b"".join(codes[s] + struct.pack(">I", 8 + len(p)) + p for s, p in sorted(pngs.items()) if s in codes)
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def main() -> None:
    svg = SVG.encode()
    (HERE / "storypulse.svg").write_bytes(svg)
    pngs = {size: render_png(svg, size) for size in (32, 64, 128, 256, 512)}
    (HERE / "storypulse.png").write_bytes(pngs[256])
    (HERE / "storypulse.ico").write_bytes(ico({s: pngs[s] for s in (32, 64, 128, 256)}))
    (HERE / "storypulse.icns").write_bytes(icns(pngs))


if __name__ == "__main__":
    main()
