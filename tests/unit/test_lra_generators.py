"""mega_fairseq.data.listops and mega_fairseq.data.pathfinder: the offline LRA data generators.

ListOps: every label is checked against an evaluator of its own (tests/helpers/listops_reference.py),
lengths stay in the window, the release's parenthesised form reduces to the flat form, files are
deterministic per seed and the splits differ. Pathfinder: the release layout and metadata, PNG
format, balanced labels, determinism, and, from the drawn geometry, that markers sit on curve ends
and that a positive's markers are joined by bright pixels. Both as command lines (128x128 images,
refusal to overwrite): tests/cli/test_lra_generators_cli.py.
"""

import math
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.listops_reference import SPLIT_FILES, flat, read_tsv, reference_value
from mega_fairseq.data import listops, pathfinder

# ---------------------------------------------------------------------------------------------
# ListOps

LISTOPS_ARGS = ["--train", "300", "--valid", "100", "--test", "100", "--min-length", "20", "--max-length", "120"]


@pytest.fixture(scope="module")
def listops_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("listops")
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        listops.main([str(root / name / "nested"), *LISTOPS_ARGS, "--seed", str(seed)])
    return root


def test_listops_known_trees():
    tree = ("MAX", [2, 9])
    assert listops.to_release_string(tree) == "( ( ( [MAX 2 ) 9 ) ] )"
    assert listops.flat_tokens(tree) == ["[MAX", "2", "9", "]"]
    nested = ("SM", [("MED", [1, 8, 4, 3]), ("MIN", [7, 5, 6]), 9])
    assert listops.evaluate(nested) == (3 + 5 + 9) % 10  # median of 1 3 4 8 is 3.5 -> 3
    assert flat(listops.to_release_string(nested)) == listops.flat_tokens(nested)
    assert listops.evaluate(("MED", [9, 8])) == 8 and listops.evaluate(("MED", [0, 5, 9])) == 5


def test_listops_files_labels_and_lengths(listops_runs):
    labels = Counter()
    for name, count in zip(SPLIT_FILES, (300, 100, 100)):
        rows = read_tsv(listops_runs / "a" / "nested" / name)
        assert len(rows) == count
        for source, label in rows:
            tokens = flat(source)
            assert 20 <= len(tokens) <= 120
            assert tokens[0][1:] in listops.OPERATORS and tokens[-1] == "]"
            assert label.isdigit() and int(label) == reference_value(tokens), source
            assert source.count("(") == source.count(")")
            labels[int(label)] += 1
    assert len(labels) >= 6, labels
    assert sorted(p.name for p in (listops_runs / "a" / "nested").iterdir()) == sorted(SPLIT_FILES)  # no temp files


def test_listops_determinism_and_distinct_splits(listops_runs):
    for name in SPLIT_FILES:
        a, b, c = ((listops_runs / run / "nested" / name).read_bytes() for run in "abc")
        assert a == b
        assert a != c
    sources = [{row[0] for row in read_tsv(listops_runs / "a" / "nested" / name)} for name in SPLIT_FILES]
    train, valid, test = sources
    assert len(valid & test) < 10 and len(valid & train) < 30  # short trees repeat by chance only
    first_train = [row[0] for row in read_tsv(listops_runs / "a" / "nested" / "basic_train.tsv")][:100]
    assert first_train != [row[0] for row in read_tsv(listops_runs / "a" / "nested" / "basic_val.tsv")]


def test_listops_default_window_and_generator():
    rng = random.Random(0)
    for _ in range(20):
        tree = listops.sample_example(rng, 500, 2000, 10, 10)
        tokens = listops.flat_tokens(tree)
        assert 500 <= len(tokens) <= 2000
        assert listops.evaluate(tree) == reference_value(tokens)
        assert flat(listops.to_release_string(tree)) == tokens
    rng = random.Random(1)
    trees = [listops.generate_tree(rng, 0, 3, 4) for _ in range(300)]
    assert any(isinstance(t, int) for t in trees) and any(isinstance(t, tuple) for t in trees)

    def check(tree, depth):
        if isinstance(tree, int):
            assert 0 <= tree <= 9 and depth <= 3
        else:
            assert depth < 3 and 2 <= len(tree[1]) <= 4
            for arg in tree[1]:
                check(arg, depth + 1)

    for tree in trees:
        check(tree, 0)


def test_listops_interrupted_run_leaves_no_file(tmp_path, monkeypatch):
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return ("SM", [1, 2])

    monkeypatch.setattr(listops, "sample_example", failing)
    with pytest.raises(KeyboardInterrupt):
        listops.main([str(tmp_path), "--train", "10", "--min-length", "4", "--max-length", "10"])
    assert list(tmp_path.iterdir()) == []


def test_listops_rejects_impossible_settings(capsys, monkeypatch):
    for args, message in ((["--max-depth", "2", "--min-length", "200"], "at most 122 tokens"),
                          (["--max-args", "1"], "--max-args must be >= 2"),
                          (["--max-length", "3", "--min-length", "1"], "--max-length must be >= 4")):
        with pytest.raises(SystemExit) as exit_info:
            listops.main(["unused", *args])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    monkeypatch.setattr(listops, "MAX_REJECTIONS", 2000)
    with pytest.raises(RuntimeError, match="widen the length window"):
        listops.sample_example(random.Random(0), 3000, 3100, 4, 10)  # possible (<= 11112) but too rare


# ---------------------------------------------------------------------------------------------
# Pathfinder


@pytest.fixture(scope="module")
def pathfinder_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pathfinder")
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        pathfinder.main([str(root / name), "--count", "60", "--per-folder", "25", "--seed", str(seed)])
    return root


def read_metadata(tree: Path):
    rows = {}
    for meta in sorted((tree / "metadata").iterdir()):
        lines = meta.read_text(encoding="utf-8").splitlines()
        rows[meta.name] = [line.split(" ") for line in lines]
    return rows


def test_pathfinder_layout(pathfinder_runs):
    out = pathfinder_runs / "a"
    assert [p.name for p in out.iterdir()] == ["curv_baseline"]  # the temporary folder is gone
    tree = out / "curv_baseline"
    metadata = read_metadata(tree)
    assert sorted(metadata) == ["0.npy", "1.npy", "2.npy"]
    assert [len(metadata[f"{k}.npy"]) for k in range(3)] == [25, 25, 10]
    labels = Counter()
    for k in range(3):
        assert sorted(p.name for p in (tree / "imgs" / str(k)).iterdir()) == sorted(
            f"sample_{i}.png" for i in range(len(metadata[f"{k}.npy"])))
        for i, fields in enumerate(metadata[f"{k}.npy"]):
            assert len(fields) == 7
            assert fields[:3] == [f"imgs/{k}", f"sample_{i}.png", str(i)]
            assert fields[3] in {"0", "1"}
            assert fields[4] == "14" and int(fields[5]) >= 1 and 0 <= int(fields[6]) <= 4
            labels[fields[3]] += 1
            with Image.open(tree / fields[0] / fields[1]) as image:
                assert image.format == "PNG" and image.mode == "L" and image.size == (32, 32)
                pixels = np.asarray(image)
            assert pixels.dtype == np.uint8 and pixels.max() == 255 and (pixels == 0).mean() > 0.3
    assert labels == {"0": 30, "1": 30}


def test_pathfinder_determinism(pathfinder_runs):
    def contents(name):
        tree = pathfinder_runs / name / "curv_baseline"
        return {str(p.relative_to(tree)): p.read_bytes() for p in sorted(tree.rglob("*")) if p.is_file()}

    a, b, c = contents("a"), contents("b"), contents("c")
    assert a == b
    assert a.keys() == c.keys()
    assert sum(a[key] != c[key] for key in a if key.endswith(".png")) == 60


def test_pathfinder_impossible_contour_fails_cleanly(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pathfinder, "SCENE_TRIES", 2)
    monkeypatch.setattr(pathfinder, "TARGET_TRIES", 2)
    with pytest.raises(SystemExit) as exit_info:
        pathfinder.main([str(tmp_path), "--count", "3", "--contour-length", "60"])
    assert "could not fit two curves of 60 paddles" in str(exit_info.value.code)
    assert list(tmp_path.iterdir()) == []  # neither the destination nor the temporary folder is left
    with pytest.raises(SystemExit):
        pathfinder.main([str(tmp_path), "--size", "8"])
    assert "--size must be >= 16" in capsys.readouterr().err


def connected(mask: np.ndarray, start, goal) -> bool:
    """Whether goal is reachable from start through True pixels (4-neighbourhood)."""
    seen = np.zeros_like(mask)
    todo = [start]
    seen[start] = True
    while todo:
        y, x = todo.pop()
        if (y, x) == goal:
            return True
        for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
            if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not seen[ny, nx]:
                seen[ny, nx] = True
                todo.append((ny, nx))
    return False


def dilate(mask: np.ndarray) -> np.ndarray:
    """Grow True regions by one pixel (3x3 neighbourhood)."""
    padded = np.pad(mask, 1)
    height, width = mask.shape
    out = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            out |= padded[dy:dy + height, dx:dx + width]
    return out


@pytest.mark.parametrize("size", [32, 128])
def test_pathfinder_geometry(size):
    pixel = lambda point: (int(point[1]), int(point[0]))  # noqa: E731  (x, y) -> (row, column)
    for index in range(12):
        positive = index % 2 == 0
        sample = pathfinder.render(random.Random(index), size, 14, 4, positive)
        image = np.asarray(sample.image)
        assert sample.image.size == (size, size) and sample.image.mode == "L"
        main = sample.curves[:2]
        assert all(len(curve) == 14 for curve in main) and len(sample.curves) <= 6
        ends = [(curve[0][0], curve[-1][1]) for curve in main]
        a, b = sample.markers
        if positive:
            assert {a, b} == set(ends[0])
        else:
            assert a in ends[0] and b in ends[1]
        assert np.hypot(a[0] - b[0], a[1] - b[1]) >= size / 4
        for marker in sample.markers:  # each marker is a bright blob
            row, col = pixel(marker)
            assert image[max(0, row - 1):row + 2, max(0, col - 1):col + 2].max() == 255
        for curve in sample.curves:  # every paddle is drawn
            for start, end in curve:
                assert image[pixel(((start[0] + end[0]) / 2, (start[1] + end[1]) / 2))] > 0
        if positive:  # bridging the dash gaps joins the two markers through curve pixels
            mask = image > 0
            for _ in range(math.ceil(pathfinder.Geometry.for_size(size).gap / 2)):
                mask = dilate(mask)
            assert connected(mask, pixel(a), pixel(b))


def test_pathfinder_marker_distance_does_not_give_the_label_away():
    distances = {True: [], False: []}
    for index in range(120):
        positive = index % 2 == 0
        markers = pathfinder.render(random.Random(100 + index), 32, 14, 4, positive).markers
        distances[positive].append(math.dist(*markers))
    pos, neg = np.array(distances[True]), np.array(distances[False])
    best = max(max((pos >= t).mean() + (neg < t).mean(), (pos < t).mean() + (neg >= t).mean()) / 2
               for t in np.linspace(0, 40, 161))
    assert best < 0.7, best  # a distance threshold barely beats chance
    assert min(pos.min(), neg.min()) >= 8 - 1e-9


def test_pathfinder_draw_sample_deterministic():
    first = pathfinder.draw_sample(random.Random(5), 32, 14, 4, True)
    second = pathfinder.draw_sample(random.Random(5), 32, 14, 4, True)
    assert isinstance(first, Image.Image) and first.tobytes() == second.tobytes()
    assert pathfinder.draw_sample(random.Random(6), 32, 14, 4, True).tobytes() != first.tobytes()
