"""Procedural "radiographs" with landmarks on salient structure (the images of the synthetic datasets).

`synthetic_radiograph` draws a grey image of bone-like shapes (numpy only, a few ms for 256x256): a fixed
anatomy template for the given K (shapes laid out on a grid, or stacked like vertebrae with
layout="column"), jittered per image, then posed by a random similarity transform (rotation ±15°, scale ±10%,
translation ±10% of the image), on a soft-tissue background with contrast, gamma and noise variation.
Each shape carries up to 4 landmarks on its salient points:

    "box"  (vertebra-like rounded rectangle): the 4 corners, top-left, top-right, bottom-left, bottom-right
    "bone" (shaft with two knobby ends + a nodule): the two tips, the shaft centre and the nodule centre

so landmark k is point k % 4 of shape k // 4. Landmarks are (x, y) floats, 0-based pixel centres, inside the
image. The pose variation makes the mean shape a poor predictor while the structure stays visible, so a small
CNN has something real to learn. The writers of the three public layouts are in synthetic.py, which also
re-exports `synthetic_radiograph`.
"""
from __future__ import annotations

import math

import numpy as np

_SHAPE_POINTS = 4
_LAYOUT_CODES = {"grid": 1, "column": 2}


def _template(num_landmarks: int, layout: str, aspect: tuple[float, float]) -> np.ndarray:
    """The anatomy of a K-landmark image, independent of the seed.

    Returns (n_shapes, 7) float: cx, cy, half_w, half_h, angle (rad), brightness, kind (0 box, 1 bone),
    in canonical units where the shorter image side spans [-1, 1]; `aspect` = (ax, ay) half-extents.
    """
    ax, ay = aspect
    n = math.ceil(num_landmarks / _SHAPE_POINTS)
    rng = np.random.default_rng([num_landmarks, _LAYOUT_CODES[layout], 2019])
    shapes = np.zeros((n, 7))
    if layout == "column":  # vertebra-like boxes stacked top to bottom, growing downwards
        pitch = 1.7 * ay / n
        for i in range(n):
            growth = 0.75 + 0.35 * i / max(n - 1, 1)
            shapes[i] = (0.0, -0.85 * ay + (i + 0.5) * pitch, 0.36 * growth * min(ax, 1.2),
                         0.3 * pitch * growth, 0.0, rng.uniform(0.75, 1.0), 0)
        return shapes
    cols = max(1, min(n, round(math.sqrt(n * ax / ay))))
    rows = math.ceil(n / cols)
    cell_w, cell_h = 1.4 * ax / cols, 1.4 * ay / rows
    for i in range(n):
        r, c = divmod(i, cols)
        kind = (r + c) % 2
        cx = -0.7 * ax + (c + 0.5 + rng.uniform(-0.12, 0.12)) * cell_w
        cy = -0.7 * ay + (r + 0.5 + rng.uniform(-0.12, 0.12)) * cell_h
        size = min(cell_w, cell_h)
        half_w = size * rng.uniform(0.34, 0.42)
        half_h = half_w * (rng.uniform(0.55, 0.85) if kind == 0 else rng.uniform(0.38, 0.46))
        shapes[i] = (cx, cy, half_w, half_h, rng.uniform(-0.6, 0.6), rng.uniform(0.6, 1.0), kind)
    return shapes


def _shape_points(shape: np.ndarray) -> np.ndarray:
    """The 4 salient points of one shape in its local frame (x right, y down) -> (4, 2)."""
    _, _, hw, hh, _, _, kind = shape
    if kind == 0:  # corners of the rounded box, on the rounded outline (radius r)
        r = 0.2 * min(hw, hh)
        ex, ey = hw - r + r / math.sqrt(2), hh - r + r / math.sqrt(2)
        return np.array([[-ex, -ey], [ex, -ey], [-ex, ey], [ex, ey]])
    return np.array([[-hw, 0.0], [hw, 0.0], [0.0, 0.0], [0.0, -1.3 * hh]])  # tips, centre, nodule


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * t))


def _ellipse_sdf(x: np.ndarray, y: np.ndarray, a: float, b: float) -> np.ndarray:
    """Approximate signed distance to the ellipse x²/a² + y²/b² = 1 (negative inside, exact near the edge)."""
    k0 = np.hypot(x / a, y / b)
    k1 = np.hypot(x / (a * a), y / (b * b)) + 1e-9
    return k0 * (k0 - 1.0) / k1


def _shape_sdf(shape: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance (canonical units, negative inside) of one shape at local coordinates (x, y)."""
    _, _, hw, hh, _, _, kind = shape
    if kind == 0:
        r = 0.2 * min(hw, hh)
        qx, qy = np.abs(x) - hw + r, np.abs(y) - hh + r
        return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0) - r
    shaft = _ellipse_sdf(x, y, hw - 0.5 * hh, 0.6 * hh)
    ends = np.minimum(np.hypot(x - (hw - hh), y), np.hypot(x + (hw - hh), y)) - hh
    nodule = np.hypot(x, y + 1.3 * hh) - 0.4 * hh
    return np.minimum(np.minimum(shaft, ends), nodule)


def _jitter(template: np.ndarray, rng: np.random.Generator, layout: str) -> np.ndarray:
    """Per-image anatomical variation: shape position, size and angle (and spine curvature for "column")."""
    shapes = template.copy()
    n = len(shapes)
    scale = np.minimum(shapes[:, 2], 2 * shapes[:, 3]) * (0.25 if layout == "grid" else 0.08)
    shapes[:, 0] += rng.uniform(-1.0, 1.0, n) * scale
    shapes[:, 1] += rng.uniform(-1.0, 1.0, n) * scale
    shapes[:, 2:4] *= rng.uniform(0.92, 1.08, (n, 1))
    shapes[:, 4] += np.deg2rad(rng.uniform(-6.0, 6.0, n))
    if layout == "column":  # a smooth lateral curve (scoliosis) and the matching vertebra tilt
        span = np.ptp(template[:, 1]) + 1e-9
        t = (template[:, 1] - template[:, 1].min()) / span
        amp, freq, phase = rng.uniform(-0.3, 0.3), rng.uniform(0.5, 1.5), rng.uniform(0, math.pi)
        shapes[:, 0] += amp * np.sin(math.pi * freq * t + phase)
        slope = amp * math.pi * freq / span * np.cos(math.pi * freq * t + phase)
        shapes[:, 4] = np.arctan(slope) + np.deg2rad(rng.uniform(-3.0, 3.0, n))
    return shapes


def _local_to_canonical(shape: np.ndarray, points: np.ndarray) -> np.ndarray:
    c, s = math.cos(shape[4]), math.sin(shape[4])
    return np.stack([shape[0] + c * points[:, 0] - s * points[:, 1],
                     shape[1] + s * points[:, 0] + c * points[:, 1]], axis=1)


def synthetic_radiograph(seed, size: tuple[int, int] = (256, 256), num_landmarks: int = 19,
                         layout: str = "grid", max_rotation: float = 15.0, max_scale: float = 0.1,
                         max_shift: float = 0.1, noise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Draw one procedural radiograph with `num_landmarks` landmarks (deterministic in `seed`).

    Args:
        seed: int (or sequence of ints) for np.random.default_rng.
        size: (H, W) of the image.
        num_landmarks: K >= 1 (any value; 19, 37 and 68 give the ISBI, hand and spine counts).
        layout: "grid" (shapes on a grid) or "column" (K/4 vertebra-like boxes stacked top to bottom).
        max_rotation, max_scale, max_shift: pose range (degrees, relative scale, fraction of image size).
        noise: add Gaussian noise (off gives a clean image for figures).

    Returns:
        image (H, W) uint8 and landmarks (K, 2) float64 (x, y), 0-based pixel centres, inside the image.
    """
    # Long on purpose (~80 lines): one drawing recipe (pose, shapes per layout, landmarks, noise) kept in one
    # place so that the picture it makes can be read off the code from top to bottom.
    if layout not in _LAYOUT_CODES:
        raise ValueError(f"layout must be 'grid' or 'column', got {layout!r}.")
    height, width = int(size[0]), int(size[1])
    if num_landmarks < 1 or height < 16 or width < 16:
        raise ValueError(f"need num_landmarks >= 1 and an image of at least 16x16, got K={num_landmarks}, "
                         f"size={size}.")
    rng = np.random.default_rng(seed)
    unit = min(height, width) / 2.0  # pixels per canonical unit
    aspect = (width / 2.0 / unit, height / 2.0 / unit)
    shapes = _jitter(_template(num_landmarks, layout, aspect), rng, layout)
    local = np.concatenate([_local_to_canonical(s, _shape_points(s)) for s in shapes])[:num_landmarks]

    centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    margin = 2.0
    for attempt in range(30):  # draw a pose that keeps every landmark (and a margin) inside the image
        shrink = 1.0 if attempt < 29 else 0.0
        angle = np.deg2rad(rng.uniform(-max_rotation, max_rotation)) * shrink
        zoom = 1.0 + rng.uniform(-max_scale, max_scale) * shrink
        shift = rng.uniform(-max_shift, max_shift, 2) * np.array([width, height]) * shrink
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        points = centre + shift + unit * zoom * local @ rot.T
        if (points.min(0) >= margin).all() and (points <= [width - 1 - margin, height - 1 - margin]).all():
            break
    points = np.clip(points, 0.0, [width - 1.0, height - 1.0])

    # Canonical coordinates of every pixel centre: invert p = centre + shift + unit * zoom * R q.
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    dx, dy = xs - centre[0] - shift[0], ys - centre[1] - shift[1]
    inv = 1.0 / (unit * zoom)
    cu = inv * (math.cos(angle) * dx + math.sin(angle) * dy)
    cv = inv * (-math.sin(angle) * dx + math.cos(angle) * dy)
    edge = 0.7 * inv  # edge softness: ~0.7 pixel

    # Background: dark base, a gradient and a soft-tissue envelope that moves with the anatomy.
    image = rng.uniform(15, 45) + rng.uniform(-15, 15) * (xs / width) + rng.uniform(-15, 15) * (ys / height)
    tissue = _ellipse_sdf(cu, cv, 0.92 * aspect[0], 0.92 * aspect[1])
    image += rng.uniform(25, 55) * _sigmoid(-tissue / (8 * edge))

    for shape in shapes:  # bones: bright cortex rim, slightly darker marrow, summed like X-ray attenuation
        reach = (math.hypot(shape[2], shape[3]) * 1.6 + 4 * edge) * unit * zoom
        px, py = centre + shift + unit * zoom * (rot @ shape[:2])
        r0, r1 = max(int(py - reach), 0), min(int(py + reach) + 2, height)
        c0, c1 = max(int(px - reach), 0), min(int(px + reach) + 2, width)
        if r0 >= r1 or c0 >= c1:
            continue
        u, v = cu[r0:r1, c0:c1] - shape[0], cv[r0:r1, c0:c1] - shape[1]
        c, s = math.cos(shape[4]), math.sin(shape[4])
        d = _shape_sdf(shape, c * u + s * v, -s * u + c * v)
        inside = _sigmoid(-d / edge)
        cortex = 0.18 * min(shape[2], shape[3])
        rim = np.exp(-((d + cortex) / cortex) ** 2)
        image[r0:r1, c0:c1] += shape[5] * rng.uniform(90, 130) * inside * (0.6 + 0.55 * rim)

    for _ in range(rng.integers(3, 7)):  # distractor blobs without landmarks
        bx, by = rng.uniform(0, width), rng.uniform(0, height)
        sigma = rng.uniform(0.02, 0.06) * min(height, width)
        image += rng.uniform(-20, 30) * np.exp(-((xs - bx) ** 2 + (ys - by) ** 2) / (2 * sigma ** 2))

    gain, gamma = rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.25)
    image = 255.0 * np.clip(image * gain / 255.0, 0.0, 1.0) ** gamma
    if noise:
        image += rng.normal(0.0, rng.uniform(2.0, 6.0), image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), points
