"""Generate Pathfinder-style images (Linsley et al. 2018; LRA's Pathfinder-32 and Path-X) offline.

Each image is black with several smooth curves drawn as dashes ("paddles") and two white end-point
markers. Two "main" curves and --distractors shorter ones are drawn in every image; the label is 1
when both markers sit on the two ends of the same main curve and 0 when they sit on one end of each
main curve, so both classes show the same kinds of curves and only the connection tells them apart.

Curves are walks whose direction turns by at most 30 degrees per paddle (bending back toward the
centre near a border); a paddle never lands on pixels of another curve or of its own curve's earlier
paddles, though curves may cross through each other's gaps. The markers are at least a quarter of
the image apart, and a negative's markers are placed as far apart as the two ends of a main curve
drawn alone, so that the marker distance is distributed alike in both classes (the best threshold
on it classifies about 52% of images correctly). Shapes are drawn at four times the size and
box-filtered down, so edges are gray. Lengths scale with --size (a paddle is size/16 pixels long,
the gap half that, lines max(1, size/64) wide), so --size 32 and --size 128 draw the same scenes at
two resolutions. Labels are balanced: a shuffled list of half positives, half negatives. One image
takes about 3 ms (32x32) to 4 ms (128x128) on one CPU core.

Output, in the layout of the LRA release:

    OUT_DIR/<difficulty>/imgs/<k>/sample_<i>.png   8-bit grayscale, size x size
    OUT_DIR/<difficulty>/metadata/<k>.npy          a text file (despite its name), one line per
                                                   image of folder k:
        imgs/<k> sample_<i>.png <i> <label> <contour_length> <paddle_length> <num_distractors>

Folder k holds images per_folder*k .. per_folder*(k+1)-1, numbered i = 0, 1, ... within it. The
tree is built in a temporary folder beside OUT_DIR/<difficulty> and renamed into place at the end;
an existing OUT_DIR/<difficulty> is never overwritten.

    python -m mega_fairseq.data.pathfinder data/pathfinder32 --size 32 --count 20000
    python -m mega_fairseq.data.pathfinder data/pathx --size 128 --count 2000
"""

import argparse
import math
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from PIL import Image, ImageDraw

from .progress import progress

PROG = "python -m mega_fairseq.data.pathfinder"
SUPERSAMPLE = 4
MAX_TURN = math.radians(30)
TURN_TRIES = 12  # new directions tried before a curve is restarted
CURVE_TRIES = 40  # restarts of one curve before the whole image is redrawn
SCENE_TRIES = 400  # whole-image redraws before giving up
TARGET_TRIES = 50  # redraws of a negative per marker distance before another distance is drawn
MIN_MARKER_DISTANCE = 0.25  # markers are at least this far apart (fraction of the image side; see _min_distance)
DISTANCE_TOLERANCE = 1 / 16  # how far (fraction of the side) a negative may miss its marker distance

Point = Tuple[float, float]


@dataclass
class Geometry:
    """Lengths in output pixels for one image size."""

    size: int
    paddle: float
    gap: float
    width: float
    marker_radius: float

    @classmethod
    def for_size(cls, size: int) -> "Geometry":
        scale = size / 32
        width = max(1.0, 0.5 * scale)
        return cls(size=size, paddle=2.0 * scale, gap=1.0 * scale, width=width, marker_radius=1.5 * width)


@dataclass
class Sample:
    """One drawn image and where its curves and markers are (output pixel coordinates)."""

    image: Image.Image
    positive: bool
    markers: Tuple[Point, Point]
    curves: List[List[Tuple[Point, Point]]] = field(default_factory=list)  # paddles per curve; 0, 1 main


def _inside(point: Point, geo: Geometry) -> bool:
    low, high = geo.marker_radius + 0.5, geo.size - geo.marker_radius - 0.5
    return low <= point[0] <= high and low <= point[1] <= high


def _turn_range(at: Point, heading: float, geo: Geometry) -> Tuple[float, float]:
    """Bounds of the next random turn: +-MAX_TURN, or, near a border that the curve is heading
    for, a range bent toward the image centre, so that long curves turn back instead of leaving."""
    reach = 3 * (geo.paddle + geo.gap)
    if _inside((at[0] + reach * math.cos(heading), at[1] + reach * math.sin(heading)), geo):
        return -MAX_TURN, MAX_TURN
    centre = math.atan2(geo.size / 2 - at[1], geo.size / 2 - at[0])
    wanted = (centre - heading + math.pi) % (2 * math.pi) - math.pi
    clamp = lambda turn: max(-MAX_TURN, min(MAX_TURN, turn))  # noqa: E731
    return clamp(wanted - MAX_TURN / 2), clamp(wanted + MAX_TURN / 2)


def _place(rng: random.Random, geo: Geometry, start: Point, angle: Optional[float], index: int,
           occupied: Dict[Tuple[int, int], int], mine: Dict[Tuple[int, int], int]):
    """The next paddle from `start`: (end, heading, cells), or None when every try collided.

    `angle` is the previous paddle's heading (None for the first paddle: any direction). A paddle
    may not touch pixel cells (sampled about every pixel along it) of other curves (`occupied`) or
    of its own curve's paddles before the previous one (`mine`, cell -> paddle index). This is the
    inner loop of the generator, hence written out rather than split further."""
    base = 0.0 if angle is None else angle
    low, high = (0.0, 2 * math.pi) if angle is None else _turn_range(start, angle, geo)
    border_low, border_high = geo.marker_radius + 0.5, geo.size - geo.marker_radius - 0.5
    steps = max(1, math.ceil(geo.paddle))
    x0, y0 = start
    for _ in range(TURN_TRIES):
        heading = base + low + (high - low) * rng.random()
        dx, dy = geo.paddle * math.cos(heading), geo.paddle * math.sin(heading)
        if not (border_low <= x0 + dx <= border_high and border_low <= y0 + dy <= border_high):
            continue
        cells = []
        for k in range(steps + 1):
            cell = (int(x0 + k * dx / steps), int(y0 + k * dy / steps))
            if cell in occupied or mine.get(cell, index) < index - 1:
                break
            cells.append(cell)
        else:
            return (x0 + dx, y0 + dy), heading, cells
    return None


def _walk(rng: random.Random, geo: Geometry, paddles: int,
          occupied: Dict[Tuple[int, int], int]) -> Optional[List[Tuple[Point, Point]]]:
    """A curve of `paddles` dashes clear of `occupied` (which then gains its cells), or None."""
    low, high = geo.marker_radius + 0.5, geo.size - geo.marker_radius - 0.5
    for _ in range(CURVE_TRIES):
        start: Point = (rng.uniform(low, high), rng.uniform(low, high))
        angle: Optional[float] = None
        segments: List[Tuple[Point, Point]] = []
        mine: Dict[Tuple[int, int], int] = {}
        for index in range(paddles):
            placed = _place(rng, geo, start, angle, index, occupied, mine)
            if placed is None:
                break
            end, angle, cells = placed
            segments.append((start, end))
            for cell in cells:
                mine.setdefault(cell, index)
            start = (end[0] + geo.gap * math.cos(angle), end[1] + geo.gap * math.sin(angle))
            if index + 1 < paddles and not _inside(start, geo):
                break
        if len(segments) == paddles:
            occupied.update(mine)
            return segments
    return None


def _end_distance(segments: List[Tuple[Point, Point]]) -> float:
    return math.dist(segments[0][0], segments[-1][1])


def _min_distance(geo: Geometry, contour_length: int) -> float:
    """The smallest marker distance: a quarter of the image, or half the length of a short curve."""
    path = contour_length * geo.paddle + (contour_length - 1) * geo.gap
    return min(geo.size * MIN_MARKER_DISTANCE, path / 2)


def _reference_distance(rng: random.Random, geo: Geometry, contour_length: int) -> Optional[float]:
    """The end-to-end distance of a main curve drawn alone (None if none was drawn): a negative's
    markers are placed this far apart, so that marker distance is distributed alike in both
    classes and tells nothing about the label."""
    for _ in range(TARGET_TRIES):
        segments = _walk(rng, geo, contour_length, {})
        if segments is not None and _end_distance(segments) >= _min_distance(geo, contour_length):
            return _end_distance(segments)
    return None


def _markers(rng: random.Random, main: List[List[Tuple[Point, Point]]], target: Optional[float],
             geo: Geometry) -> Optional[Tuple[Point, Point]]:
    """Marker positions, or None when this pair of main curves does not fit.

    Positive (`target` None): the two ends of the first main curve, if at least _min_distance
    apart. Negative: one end of each main curve, a pairing whose distance is within
    DISTANCE_TOLERANCE of `target`."""
    ends = [(curve[0][0], curve[-1][1]) for curve in main]
    if target is None:
        return ends[0] if _end_distance(main[0]) >= _min_distance(geo, len(main[0])) else None
    pairs = [(a, b) for a in ends[0] for b in ends[1]]
    fitting = [pair for pair in pairs if abs(math.dist(*pair) - target) <= geo.size * DISTANCE_TOLERANCE]
    return rng.choice(fitting) if fitting else None


def _scene(rng: random.Random, geo: Geometry, contour_length: int, distractors: int,
           target: Optional[float]) -> Optional[Tuple[List[List[Tuple[Point, Point]]], Tuple[Point, Point]]]:
    """Curves (the two main ones first) and markers (see _markers), or None when this draw failed."""
    occupied: Dict[Tuple[int, int], int] = {}
    main: List[List[Tuple[Point, Point]]] = []
    for _ in range(2):
        segments = _walk(rng, geo, contour_length, occupied)
        if segments is None:
            return None
        main.append(segments)
        if target is None and len(main) == 1 and _markers(rng, main, None, geo) is None:
            return None  # a positive's markers are known after the first curve
    markers = _markers(rng, main, target, geo)
    if markers is None:
        return None
    curves = list(main)
    for _ in range(distractors):
        length = rng.randint(max(1, contour_length // 3), max(1, (2 * contour_length) // 3))
        segments = _walk(rng, geo, length, occupied)
        if segments is not None:  # a crowded image keeps fewer distractors
            curves.append(segments)
    return curves, markers


def _render(geo: Geometry, curves: List[List[Tuple[Point, Point]]], markers: Tuple[Point, Point]) -> Image.Image:
    big = geo.size * SUPERSAMPLE
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    width = max(1, round(geo.width * SUPERSAMPLE))
    for segments in curves:
        for start, end in segments:
            draw.line([tuple(c * SUPERSAMPLE for c in start), tuple(c * SUPERSAMPLE for c in end)], fill=255,
                      width=width)
    radius = geo.marker_radius * SUPERSAMPLE
    for x, y in markers:
        x, y = x * SUPERSAMPLE, y * SUPERSAMPLE
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=255)
    return canvas.resize((geo.size, geo.size), Image.BOX)


def render(rng: random.Random, size: int, contour_length: int, distractors: int, positive: bool) -> Sample:
    """Draw one image with its geometry (for checks); see draw_sample."""
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    if contour_length < 2:
        raise ValueError(f"contour_length must be at least 2 paddles, got {contour_length}")
    geo = Geometry.for_size(size)
    target = None
    for attempt in range(SCENE_TRIES):
        if not positive and attempt % TARGET_TRIES == 0:  # a new distance only when one was not reached
            target = _reference_distance(rng, geo, contour_length)
            if target is None:
                break
        scene = _scene(rng, geo, contour_length, distractors, target)
        if scene is not None:
            curves, markers = scene
            return Sample(image=_render(geo, curves, markers), positive=positive, markers=markers, curves=curves)
    raise RuntimeError(f"could not fit two curves of {contour_length} paddles with markers at least "
                       f"{_min_distance(geo, contour_length):.1f} pixels apart into a {size}x{size} image; "
                       f"use a smaller --contour-length")


def draw_sample(rng: random.Random, size: int, contour_length: int, distractors: int, positive: bool) -> Image.Image:
    """A size x size grayscale image: two main curves of `contour_length` paddles, up to `distractors`
    shorter curves, and two markers on the ends of one main curve (positive) or of both (negative)."""
    return render(rng, size, contour_length, distractors, positive).image


def paddle_length(size: int) -> int:
    """The paddle length recorded in the metadata, in output pixels."""
    return max(1, round(Geometry.for_size(size).paddle))


def write_tree(root: Path, args: argparse.Namespace) -> Tuple[int, int]:
    """Write every image and metadata file under `root`; return (positives, negatives)."""
    labels = [index % 2 for index in range(args.count)]
    random.Random(f"pathfinder-labels-{args.seed}").shuffle(labels)
    folders = (args.count + args.per_folder - 1) // args.per_folder
    (root / "metadata").mkdir(parents=True)
    bar = progress(total=args.count, desc="images", unit="image")
    for folder in range(folders):
        (root / "imgs" / str(folder)).mkdir(parents=True)
        lines = []
        for index in range(folder * args.per_folder, min(args.count, (folder + 1) * args.per_folder)):
            rng = random.Random(f"pathfinder-{args.seed}-{index}")
            sample = render(rng, args.size, args.contour_length, args.distractors, bool(labels[index]))
            local = index - folder * args.per_folder
            sample.image.save(root / "imgs" / str(folder) / f"sample_{local}.png")
            lines.append(f"imgs/{folder} sample_{local}.png {local} {labels[index]} {args.contour_length} "
                         f"{paddle_length(args.size)} {len(sample.curves) - 2}\n")
            bar.update()
        (root / "metadata" / f"{folder}.npy").write_text("".join(lines), encoding="utf-8")
    bar.close()
    positives = sum(labels)
    return positives, args.count - positives


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="folder that receives <difficulty>/ (created)")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels, >= 16 (default 32; Path-X: 128)")
    parser.add_argument("--count", type=int, default=1000, help="number of images (default 1000)")
    parser.add_argument("--per-folder", type=int, default=500, help="images per imgs/<k> folder (default 500)")
    parser.add_argument("--difficulty", default="curv_baseline",
                        help="name of the folder under OUT_DIR, as in the release (default curv_baseline)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--contour-length", type=int, default=14, help="paddles per main curve, >= 2 (default 14)")
    parser.add_argument("--distractors", type=int, default=4, help="extra shorter curves per image (default 4)")
    args = parser.parse_args(argv)
    if args.size < 16:
        parser.error(f"--size must be >= 16, got {args.size}")
    if args.count < 1:
        parser.error(f"--count must be >= 1, got {args.count}")
    if args.per_folder < 1:
        parser.error(f"--per-folder must be >= 1, got {args.per_folder}")
    if args.contour_length < 2:
        parser.error(f"--contour-length must be >= 2, got {args.contour_length}")
    if args.distractors < 0:
        parser.error(f"--distractors must be >= 0, got {args.distractors}")
    if not args.difficulty or args.difficulty in {".", ".."} or "/" in args.difficulty or os.sep in args.difficulty:
        parser.error(f"--difficulty must be a plain folder name, got {args.difficulty!r}")
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    dest = args.out_dir / args.difficulty
    if dest.exists():
        sys.exit(f"{PROG}: error: {dest} already exists; remove it or choose another OUT_DIR or --difficulty")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{args.difficulty}.tmp-", dir=args.out_dir))
    try:
        positives, negatives = write_tree(tmp / "tree", args)
        if dest.exists():
            sys.exit(f"{PROG}: error: {dest} appeared while generating; left it untouched")
        os.rename(tmp / "tree", dest)
    except RuntimeError as err:
        sys.exit(f"{PROG}: error: {err}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{args.count} images of {args.size}x{args.size} ({positives} positive, {negatives} negative) -> {dest} "
          f"({time.perf_counter() - start:.1f}s)")


if __name__ == "__main__":
    main()
