"""Glyph-Omniglot: a few-shot image data set of hundreds of classes, rendered offline.

Omniglot (1623 hand-drawn characters) is the few-shot benchmark of the field, but no package
ships it inside its wheel: every loader downloads it. MNIST-5k and scikit-learn's digits have
ten classes, so their episodes meta-train on five, too few for an embedding to learn what
separates classes it has not seen (on them no learned method in ``benchmarks/meta_fewshot.py``
beats a nearest-centroid classifier on raw pixels). This module renders an Omniglot-like
stand-in from the fonts inside matplotlib's wheel: a class is a Unicode character, an instance
is that character in one of sixteen fonts (DejaVu Sans, Sans Mono and Serif, STIX General; four
weights and slants each) under a random affine distortion, on a 28 × 28 canvas like Omniglot's
downsampled images.

Which characters: letters, digits and symbols (Unicode categories ``L*``, ``N*``, ``S*``) that
at least eight of the fonts draw, with no compatibility or canonical decomposition (so no
accented copy of a letter a class already has), whose drawing is neither blank nor overflows
the canvas; of characters that look alike (Latin, Greek and Cyrillic capitals, ...), one is
kept: a character is dropped when its undistorted rendering in the first font that draws it
has cosine similarity above :data:`LOOKALIKE_SIMILARITY` to a character kept before it. The
kept classes are shuffled with a fixed seed and split 60/10/30 % into meta-training,
validation and meta-test classes.
"""

from __future__ import annotations

import functools
import os
import unicodedata
from typing import NamedTuple

import numpy as np

from probkit._errors import ProbkitError

FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
)
"""The fonts of matplotlib's wheel an instance is drawn in."""

MIN_FONTS = 8
"""A character is a class when at least this many of :data:`FONTS` draw it."""

LOOKALIKE_SIMILARITY = 0.9
"""Cosine similarity of undistorted renderings above which two characters count as one."""

INSTANCES = 20
"""Instances per class, as Omniglot's 20 drawers."""

SIDE = 28
"""Image side in pixels."""

SPLIT_SHARES = {"train": 0.6, "validation": 0.1, "test": 0.3}
"""Shares of the classes in each split."""

_CANVAS = 64  # rendered at this size, distorted, then reduced to SIDE
_FONT_SIZE = 40
_SEED = 20241208


class GlyphData(NamedTuple):
    """The rendered data set.

    Attributes
    ----------
    images : numpy.ndarray, shape (classes, INSTANCES, SIDE * SIDE), float32 in [0, 1]
    characters : tuple of str
        The character of each class.
    splits : dict of str to numpy.ndarray
        Class indices of ``"train"``, ``"validation"`` and ``"test"``.
    """

    images: np.ndarray
    characters: tuple[str, ...]
    splits: dict[str, np.ndarray]


def _font_paths() -> list[str]:
    try:
        import matplotlib
        import PIL  # noqa: F401  (matplotlib requires Pillow; the glyphs are drawn with it)
    except ImportError as error:
        raise ProbkitError(
            "glyph_episodes renders its classes from the fonts inside matplotlib's wheel; "
            f"install it with `pip install matplotlib` (or `pip install probkit[report]`). ({error})"
        ) from None

    folder = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    paths = [os.path.join(folder, name) for name in FONTS]
    missing = [path for path in paths if not os.path.exists(path)]
    if missing:
        raise ProbkitError(
            f"glyph_data needs the fonts inside matplotlib's wheel; {len(missing)} are missing "
            f"(e.g. {os.path.basename(missing[0])}). Reinstall matplotlib."
        )
    return paths


def _eligible(character: str) -> bool:
    return (
        unicodedata.category(character)[0] in "LNS"
        and not unicodedata.decomposition(character)
        and not unicodedata.combining(character)
    )


def _render(character: str, font, transform=None) -> np.ndarray:
    """The character centred on the canvas, optionally distorted, reduced to ``SIDE``²."""
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (_CANVAS, _CANVAS), 0)
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = draw.textbbox((0, 0), character, font=font)
    origin = ((_CANVAS - (right - left)) / 2 - left, (_CANVAS - (bottom - top)) / 2 - top)
    draw.text(origin, character, fill=255, font=font)
    if transform is not None:
        canvas = canvas.transform(
            canvas.size, Image.Transform.AFFINE, transform, resample=Image.Resampling.BILINEAR
        )
    small = canvas.resize((SIDE, SIDE), Image.Resampling.BOX)
    return np.asarray(small, np.float32).ravel() / 255.0


def _random_affine(rng: np.random.Generator) -> tuple[float, ...]:
    """PIL's inverse affine map (output → input pixel) of a random distortion about the centre.

    Rotation ±15°, scale 0.8–1.1, shear ±0.2, shift ±4 canvas pixels (±1.75 output pixels).
    """
    angle = np.deg2rad(rng.uniform(-15.0, 15.0))
    scale = rng.uniform(0.8, 1.1)
    shear = rng.uniform(-0.2, 0.2)
    shift = rng.uniform(-4.0, 4.0, size=2)
    forward = (
        scale
        * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        @ np.array([[1.0, shear], [0.0, 1.0]])
    )
    inverse = np.linalg.inv(forward)
    centre = np.full(2, _CANVAS / 2.0)
    # input = inverse @ (output - centre - shift) + centre
    offset = centre - inverse @ (centre + shift)
    return (
        inverse[0, 0],
        inverse[0, 1],
        offset[0],
        inverse[1, 0],
        inverse[1, 1],
        offset[1],
    )


@functools.cache
def _classes():
    """The kept code points, the fonts that draw each, the loaded fonts, and the references.

    The references are the kept characters' undistorted renderings, unit norm, one row each.
    """
    from matplotlib import ft2font
    from PIL import ImageFont

    paths = _font_paths()
    charmaps = [set(ft2font.FT2Font(path).get_charmap()) for path in paths]
    fonts = [ImageFont.truetype(path, _FONT_SIZE) for path in paths]
    coverage: dict[int, list[int]] = {}
    for index, charmap in enumerate(charmaps):
        for code in charmap:
            coverage.setdefault(code, []).append(index)
    candidates = sorted(
        code for code, drawn in coverage.items() if len(drawn) >= MIN_FONTS and _eligible(chr(code))
    )
    # Undistorted references: blank or overflowing drawings are dropped, then lookalikes.
    kept: list[int] = []
    references = np.empty((len(candidates), SIDE * SIDE), np.float32)
    for code in candidates:
        reference = _render(chr(code), fonts[coverage[code][0]])
        ink = reference.reshape(SIDE, SIDE)
        if ink.sum() < 3.0 or ink[0].any() or ink[-1].any() or ink[:, 0].any() or ink[:, -1].any():
            continue
        unit = reference / np.linalg.norm(reference)
        if kept and float(np.max(references[: len(kept)] @ unit)) > LOOKALIKE_SIMILARITY:
            continue
        references[len(kept)] = unit
        kept.append(code)
    return kept, coverage, fonts, references[: len(kept)]


def reference_images() -> np.ndarray:
    """The undistorted rendering of each class in the first font that draws it, unit norm.

    Shape ``(classes, SIDE * SIDE)``, in the order of :func:`glyph_data`'s classes: what the
    lookalike rule compares.
    """
    return _classes()[3].copy()


@functools.cache
def glyph_data() -> GlyphData:
    """Render the data set (once per process; a few seconds).

    The drawing is seeded, so one installation always renders the same pixels; another
    version of matplotlib's fonts or of Pillow's FreeType may shift them slightly (and, through
    the blank, overflow and lookalike rules, which characters are kept).

    Returns
    -------
    GlyphData
    """
    codes, coverage, fonts, _ = _classes()
    rng = np.random.default_rng(_SEED)
    images = np.empty((len(codes), INSTANCES, SIDE * SIDE), np.float32)
    for row, code in enumerate(codes):
        drawn = coverage[code]
        for instance in range(INSTANCES):
            font = fonts[drawn[rng.integers(len(drawn))]]
            images[row, instance] = _render(chr(code), font, _random_affine(rng))
    order = rng.permutation(len(codes))
    ends = np.cumsum([round(share * len(codes)) for share in SPLIT_SHARES.values()])
    ends[-1] = len(codes)
    splits = dict(zip(SPLIT_SHARES, np.split(order, ends[:-1]), strict=True))
    return GlyphData(images, tuple(chr(code) for code in codes), splits)
