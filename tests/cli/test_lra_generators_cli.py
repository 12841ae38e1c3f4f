"""The offline LRA data generators run as the prepare scripts run them (python -m
mega_fairseq.data.listops / .pathfinder): files, labels, messages and exit codes."""

import subprocess
import sys

from PIL import Image

from helpers.listops_reference import SPLIT_FILES, flat, read_tsv, reference_value


def run_cli(module: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_listops_cli(tmp_path):
    proc = run_cli("mega_fairseq.data.listops", tmp_path / "out", "--train", "20", "--valid", "5", "--test", "5",
                   "--min-length", "10", "--max-length", "60", "--seed", "7")
    assert proc.returncode == 0, proc.stderr
    assert "train: 20 examples" in proc.stdout
    for name, count in zip(SPLIT_FILES, (20, 5, 5)):
        rows = read_tsv(tmp_path / "out" / name)
        assert len(rows) == count
        assert all(10 <= len(flat(src)) <= 60 and int(label) == reference_value(flat(src)) for src, label in rows)
    bad = run_cli("mega_fairseq.data.listops", tmp_path / "bad", "--min-length", "50", "--max-length", "40")
    assert bad.returncode == 2 and "--min-length 50 is larger than --max-length 40" in bad.stderr



def test_pathfinder_size_128_cli_and_refusal(tmp_path):
    proc = run_cli("mega_fairseq.data.pathfinder", tmp_path, "--size", "128", "--count", "4", "--difficulty", "pathx")
    assert proc.returncode == 0, proc.stderr
    assert "4 images of 128x128 (2 positive, 2 negative)" in proc.stdout
    meta = (tmp_path / "pathx" / "metadata" / "0.npy").read_text().splitlines()
    assert len(meta) == 4 and all(line.split()[5] == "8" for line in meta)
    for line in meta:
        with Image.open(tmp_path / "pathx" / "imgs" / "0" / line.split()[1]) as image:
            assert image.mode == "L" and image.size == (128, 128)
    before = (tmp_path / "pathx" / "metadata" / "0.npy").read_bytes()
    again = run_cli("mega_fairseq.data.pathfinder", tmp_path, "--count", "2", "--difficulty", "pathx")
    assert again.returncode != 0 and "already exists" in again.stderr
    assert (tmp_path / "pathx" / "metadata" / "0.npy").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pathx"]
