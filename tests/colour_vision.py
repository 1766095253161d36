"""How colours look to people with a colour-vision deficiency, and how far apart they are: for the theme tests.

The simulation is Machado, Oliveira and Fernandes (2009), "A physiologically
based model for simulation of color vision deficiency", at full severity: a
3 × 3 matrix on linear RGB for each of protanopia, deuteranopia and
tritanopia. Distances are CIE 1976 ΔE in L*a*b* (D65): about 2 is barely
visible side by side, and thin lines need much more than patches.
"""

from __future__ import annotations

import math

MACHADO = {
    "protanopia": ((0.152286, 1.052583, -0.204868), (0.114503, 0.786281, 0.099216), (-0.003882, -0.048116, 1.051998)),
    "deuteranopia": ((0.367322, 0.860646, -0.227968), (0.280085, 0.672501, 0.047413), (-0.011820, 0.042940, 0.968881)),
    "tritanopia": ((1.255528, -0.076749, -0.178779), (-0.078411, 0.930809, 0.147602), (0.004733, 0.691367, 0.303900)),
}
VISIONS = ("normal", *MACHADO)


def linear_rgb(hex_colour: str) -> tuple[float, float, float]:
    value = hex_colour.lstrip("#")
    channels = [int(value[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    return tuple(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)


def seen_by(hex_colour: str, vision: str) -> tuple[float, float, float]:
    rgb = linear_rgb(hex_colour)
    if vision == "normal":
        return rgb
    matrix = MACHADO[vision]
    return tuple(min(1.0, max(0.0, sum(m * c for m, c in zip(row, rgb)))) for row in matrix)


def lab(rgb: tuple[float, float, float]) -> tuple[float, float, float]:
    r, g, b = rgb
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 216 / 24389 else (24389 / 27 * t + 16) / 116

    fx, fy, fz = f(x), f(y), f(z)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def distance(a: str, b: str, vision: str = "normal") -> float:
    return math.dist(lab(seen_by(a, vision)), lab(seen_by(b, vision)))


def least_distance(a: str, b: str) -> tuple[float, str]:
    """The smallest ΔE between two colours over normal vision and the three dichromacies, and for whom."""
    return min((distance(a, b, vision), vision) for vision in VISIONS)
