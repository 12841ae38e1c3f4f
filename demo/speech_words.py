"""Synthesise a small spoken-keyword corpus in the layout of Speech Commands v0.02.

The real release (Warden 2018) is a 2.3 GB download; this script builds a stand-in of the same
shape from words spoken by the espeak-ng speech synthesiser, so that raw-waveform keyword
classification can be tried end to end on a CPU in minutes.

How a clip is made:

  * A "speaker" is an espeak-ng voice (an English accent, e.g. en-us or en-gb-scotland, with a
    voice variant such as +m3 or +f2; only those this installation lists are used), a speaking
    rate (-s, 120-200 words per minute), a pitch (-p, 20-80) and an amplitude (-a, 70-130). Its
    id is 8 hex digits of a hash of these, like the release's hashed speaker ids.
  * Every speaker says every word a few times (1-4, more for larger --per-word), each time with
    the rate and pitch jittered slightly. `espeak-ng --stdout` writes a 22,050 Hz WAV, which is
    read from memory, resampled to 16 kHz (scipy.signal.resample_poly, 320/441), trimmed of the
    leading and trailing silence, scaled by a random gain (0.5-1.0) and placed at a random offset
    in a clip of Gaussian background noise (standard deviation --noise), then clipped to [-1, 1].
  * Clips are 16,000 samples (1 s), except about 5% that are 12,000-15,999 samples long, as the
    release has some short clips. A word longer than its clip is cut at the clip's end.
  * Whole speakers go to the validation and test splits (never one speaker in two splits), as in
    the release. The release hashes the speaker id to pick a split; with the few dozen speakers
    here that would miss the fractions badly, so a seeded shuffle of the speakers is cut at the
    requested fractions instead (a non-zero fraction gets at least one speaker while one is left
    for training).

Output, as in the extracted speech_commands_v0.02.tar.gz:

    OUT_DIR/<word>/<speaker>_nohash_<k>.wav     16 kHz mono 16-bit PCM
    OUT_DIR/validation_list.txt                 <word>/<file>.wav, one a line
    OUT_DIR/testing_list.txt                    (clips in neither list are training data)

The corpus is built in a temporary folder beside OUT_DIR and renamed into place at the end, so an
interrupted run never leaves a partial OUT_DIR. Every random choice is drawn up front from --seed,
and espeak-ng is deterministic, so the same seed on the same installation gives byte-identical
files. The default 10 words x 120 clips take well under a minute on two CPU cores.

    python -m demo.speech_words data/speech_commands
    python -m demo.speech_words /tmp/sc --words yes,no --per-word 20 --seed 1 --force

espeak-ng must be on PATH: `apt-get install espeak-ng` (Debian/Ubuntu), `brew install espeak-ng`
(macOS).
"""

import argparse
import hashlib
import io
import math
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, NoReturn, Optional, Sequence

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from mega_fairseq.data.progress import progress

ESPEAK = "espeak-ng"
SAMPLE_RATE = 16_000
CLIP_SAMPLES = 16_000
SHORT_RANGE = (12_000, 15_999)  # inclusive range of the lengths of short clips
SHORT_FRACTION = 0.05
DEFAULT_WORDS = "yes,no,up,down,left,right,on,off,stop,go"
# English accents tried, in this order; those the installation does not list are skipped
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
           "en-029", "en-us-nyc")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4", "f5")
SPEED_RANGE = (120, 200)  # words per minute
PITCH_RANGE = (20, 80)
AMPLITUDE_RANGE = (70, 130)
SPEED_JITTER = 10  # per-utterance change of a speaker's rate, +-
PITCH_JITTER = 4
GAIN_RANGE = (0.5, 1.0)
SILENCE_THRESHOLD = 0.02  # of the peak: quieter leading/trailing samples are trimmed
TRIM_MARGIN = 160  # samples (10 ms) kept around the trimmed word
WORKERS = 4
WORD_PATTERN = re.compile(r"^[a-z0-9][a-z0-9'-]*$")
VALIDATION_LIST = "validation_list.txt"
TESTING_LIST = "testing_list.txt"
INSTALL_HINT = ("install it with `apt-get install espeak-ng` (Debian/Ubuntu) or `brew install espeak-ng` "
                "(macOS), or put it on PATH")


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: a voice and its base rate, pitch and amplitude."""
    id: str
    voice: str
    speed: int
    pitch: int
    amplitude: int


@dataclass(frozen=True)
class Clip:
    """Everything needed to render one WAV file, drawn up front so that rendering order is free."""
    word: str
    speaker: Speaker
    take: int  # the k of <speaker>_nohash_<k>.wav
    speed: int
    pitch: int
    length: int  # samples
    gain: float
    seed: int  # for the offset and the noise

    @property
    def relpath(self) -> str:
        return f"{self.word}/{self.speaker.id}_nohash_{self.take}.wav"


def fail(message: str) -> NoReturn:
    """Print an error the way argparse does and exit with status 2."""
    print(f"demo.speech_words: error: {message}", file=sys.stderr)
    sys.exit(2)


def run_espeak(args: Sequence[str], text: Optional[str] = None) -> bytes:
    """Run espeak-ng with `args` (text, if any, on stdin); return its stdout."""
    proc = subprocess.run([ESPEAK, *args], input=None if text is None else text.encode("utf-8"),
                          capture_output=True, check=False)
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip() or f"exit status {proc.returncode}"
        raise RuntimeError(f"{ESPEAK} {' '.join(args)} failed: {detail}")
    return proc.stdout


def to_16k(audio: np.ndarray, rate: int) -> np.ndarray:
    """Resample `audio` from `rate` Hz to 16 kHz (22,050 Hz -> 16 kHz is up 320, down 441)."""
    if rate == SAMPLE_RATE:
        return audio.astype(np.float32)
    common = math.gcd(SAMPLE_RATE, rate)
    return resample_poly(audio, SAMPLE_RATE // common, rate // common).astype(np.float32)


def synthesise(word: str, voice: str, speed: int, pitch: int, amplitude: int = 100) -> np.ndarray:
    """`word` spoken by espeak-ng `voice` at `speed` words per minute and `pitch` (0-99), as
    float32 samples at 16 kHz, with espeak-ng's leading and trailing silence kept."""
    wav = run_espeak(["--stdout", "-v", voice, "-s", str(speed), "-p", str(pitch), "-a", str(amplitude),
                      "--stdin"], text=word)
    if not wav:
        raise RuntimeError(f"{ESPEAK} wrote no audio for {word!r} (voice {voice})")
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    return to_16k(audio.mean(axis=1), rate)


def trim_silence(audio: np.ndarray) -> np.ndarray:
    """`audio` without the leading and trailing samples quieter than SILENCE_THRESHOLD of its
    peak (a 10 ms margin is kept); silent audio is returned unchanged."""
    level = np.abs(audio)
    peak = float(level.max()) if level.size else 0.0
    if peak == 0.0:
        return audio
    loud = np.flatnonzero(level > SILENCE_THRESHOLD * peak)
    return audio[max(0, loud[0] - TRIM_MARGIN):loud[-1] + 1 + TRIM_MARGIN]


def compose(word_audio: np.ndarray, length: int, gain: float, noise: float,
            rng: np.random.Generator) -> np.ndarray:
    """A `length`-sample clip of Gaussian noise (std `noise`) with `word_audio * gain` added at a
    random offset (at 0, cut at the end, when the word is longer than the clip), in [-1, 1]."""
    word_audio = word_audio[:length]
    offset = int(rng.integers(0, length - len(word_audio) + 1))
    clip = (rng.standard_normal(length) * noise).astype(np.float32)
    clip[offset:offset + len(word_audio)] += gain * word_audio
    return np.clip(clip, -1.0, 1.0)


def render(clip: Clip, noise: float) -> np.ndarray:
    """The samples of one clip."""
    speech = synthesise(clip.word, clip.speaker.voice, clip.speed, clip.pitch, clip.speaker.amplitude)
    return compose(trim_silence(speech), clip.length, clip.gain, noise, np.random.default_rng(clip.seed))


def listed_names(args: Sequence[str], pattern: str) -> List[str]:
    """The names matched by `pattern` in the output of `espeak-ng <args>`."""
    listing = run_espeak(args).decode("utf-8", "replace")
    return re.findall(pattern, listing, flags=re.MULTILINE)


def available_voices() -> List[str]:
    """The accent+variant voices (e.g. 'en-gb+f2') that this espeak-ng installation lists, plus
    each accent on its own."""
    languages = set(listed_names(["--voices=en"], r"^\s*\d+\s+(\S+)"))
    variants = set(listed_names(["--voices=variant"], r"!v/(\S+)"))
    accents = [accent for accent in ACCENTS if accent in languages]
    if not accents:
        raise RuntimeError(f"{ESPEAK} lists none of the English voices {', '.join(ACCENTS)}; "
                           f"is the espeak-ng-data package complete?")
    voices = list(accents)
    voices += [f"{accent}+{variant}" for accent in accents for variant in VARIANTS if variant in variants]
    return voices


def speaker_id(voice: str, speed: int, pitch: int, amplitude: int, seed: int, index: int) -> str:
    """8 hex digits naming a speaker, like the release's hashed ids."""
    key = f"{voice}|{speed}|{pitch}|{amplitude}|{seed}|{index}"
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:8]


def plan_speakers(rng: np.random.Generator, voices: Sequence[str], count: int, seed: int) -> List[Speaker]:
    """`count` speakers with distinct ids; voices are drawn without replacement while they last."""
    order = list(rng.permutation(len(voices)))
    speakers: List[Speaker] = []
    seen = set()
    for index in range(count):
        if not order:
            order = list(rng.permutation(len(voices)))
        voice = voices[order.pop()]
        speed = int(rng.integers(SPEED_RANGE[0], SPEED_RANGE[1] + 1))
        pitch = int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1))
        amplitude = int(rng.integers(AMPLITUDE_RANGE[0], AMPLITUDE_RANGE[1] + 1))
        ident = speaker_id(voice, speed, pitch, amplitude, seed, index)
        while ident in seen:  # a clash of 8 hex digits: vanishingly rare, but ids must be unique
            ident = hashlib.sha1(ident.encode("ascii")).hexdigest()[:8]
        seen.add(ident)
        speakers.append(Speaker(ident, voice, speed, pitch, amplitude))
    return speakers


def takes_per_speaker(per_word: int) -> int:
    """How many times each speaker says each word: 1 for small corpora, up to 4 (120 clips a word
    gives 30 speakers), so that there are enough speakers to split."""
    return max(1, min(4, per_word // 30))


def split_counts(speakers: int, valid_fraction: float, test_fraction: float) -> Dict[str, int]:
    """Speakers per split: the fractions rounded, at least one for a non-zero fraction when a
    training speaker remains."""
    counts = {}
    for split, fraction in (("valid", valid_fraction), ("test", test_fraction)):
        count = round(fraction * speakers)
        if fraction > 0 and count == 0 and speakers - sum(counts.values()) >= 2:
            count = 1
        counts[split] = count
    counts["train"] = speakers - counts["valid"] - counts["test"]
    return counts


def assign_splits(rng: np.random.Generator, speakers: Sequence[Speaker], valid_fraction: float,
                  test_fraction: float) -> Dict[str, str]:
    """Speaker id -> 'train', 'valid' or 'test', from a seeded shuffle cut at the fractions."""
    counts = split_counts(len(speakers), valid_fraction, test_fraction)
    shuffled = [speakers[i] for i in rng.permutation(len(speakers))]
    splits = ["valid"] * counts["valid"] + ["test"] * counts["test"] + ["train"] * counts["train"]
    return {speaker.id: split for speaker, split in zip(shuffled, splits)}


def plan_clips(rng: np.random.Generator, words: Sequence[str], speakers: Sequence[Speaker],
               per_word: int, takes: int) -> List[Clip]:
    """`per_word` clips of each word: speaker j // takes says take j % takes of clip j. About
    SHORT_FRACTION of all clips (at least one) get a length below CLIP_SAMPLES."""
    total = len(words) * per_word
    short = set(rng.choice(total, size=min(total, max(1, round(SHORT_FRACTION * total))), replace=False).tolist())
    clips = []
    for w, word in enumerate(words):
        for j in range(per_word):
            speaker = speakers[j // takes]
            index = w * per_word + j
            length = int(rng.integers(SHORT_RANGE[0], SHORT_RANGE[1] + 1)) if index in short else CLIP_SAMPLES
            clips.append(Clip(
                word=word, speaker=speaker, take=j % takes,
                speed=int(np.clip(speaker.speed + rng.integers(-SPEED_JITTER, SPEED_JITTER + 1), 80, 450)),
                pitch=int(np.clip(speaker.pitch + rng.integers(-PITCH_JITTER, PITCH_JITTER + 1), 0, 99)),
                length=length, gain=float(rng.uniform(*GAIN_RANGE)), seed=int(rng.integers(2 ** 63))))
    return clips


def write_clip(root: Path, clip: Clip, noise: float) -> None:
    """Render `clip` and write it under `root` as 16-bit PCM WAV."""
    sf.write(root / clip.relpath, render(clip, noise), SAMPLE_RATE, subtype="PCM_16", format="WAV")


def write_corpus(root: Path, clips: Sequence[Clip], noise: float, splits: Dict[str, str]) -> None:
    """All WAV files and the two list files, under `root` (which exists)."""
    for word in dict.fromkeys(clip.word for clip in clips):
        (root / word).mkdir()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for future in progress([pool.submit(write_clip, root, clip, noise) for clip in clips], desc="clips",
                               unit="clip"):
            future.result()  # re-raises a worker's error
    for name, split in ((VALIDATION_LIST, "valid"), (TESTING_LIST, "test")):
        paths = sorted(clip.relpath for clip in clips if splits[clip.speaker.id] == split)
        (root / name).write_text("".join(f"{path}\n" for path in paths), encoding="utf-8", newline="\n")


def install(tmp: Path, out_dir: Path) -> None:
    """Rename the finished `tmp` to `out_dir`, replacing an existing `out_dir` (only --force lets
    one through) with as short a gap as two renames allow."""
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old)


def summarise(clips: Sequence[Clip], words: Sequence[str], splits: Dict[str, str]) -> List[str]:
    """One line per split: speakers, clips and clips per word."""
    lines = []
    for split in ("train", "valid", "test"):
        chosen = [clip for clip in clips if splits[clip.speaker.id] == split]
        per_word = ", ".join(f"{word} {sum(clip.word == word for clip in chosen)}" for word in words)
        speakers = len({clip.speaker.id for clip in chosen})
        lines.append(f"{split}: {len(chosen)} clips from {speakers} speakers ({per_word})")
    return lines


def parse_words(text: str, parser: argparse.ArgumentParser) -> List[str]:
    """The comma-separated --words, checked to be distinct folder-safe words."""
    words = [word.strip().lower() for word in text.split(",") if word.strip()]
    if not words:
        parser.error("--words is empty")
    for word in words:
        if not WORD_PATTERN.match(word):
            parser.error(f"--words: {word!r} is not a word of letters, digits, ' and - (it names a folder)")
    duplicates = sorted({word for word in words if words.count(word) > 1})
    if duplicates:
        parser.error(f"--words lists {', '.join(duplicates)} more than once")
    return words


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="folder to create for the corpus")
    parser.add_argument("--words", default=DEFAULT_WORDS,
                        help=f"comma-separated words, one folder each (default {DEFAULT_WORDS})")
    parser.add_argument("--per-word", type=int, default=120, help="clips of each word (default 120)")
    parser.add_argument("--valid-fraction", type=float, default=0.1,
                        help="share of the speakers (and so of the clips) for validation (default 0.1)")
    parser.add_argument("--test-fraction", type=float, default=0.1,
                        help="share of the speakers (and so of the clips) for testing (default 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--noise", type=float, default=0.01,
                        help="standard deviation of the Gaussian background noise (default 0.01)")
    parser.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists")
    args = parser.parse_args(argv)
    args.words = parse_words(args.words, parser)
    if args.per_word < 1:
        parser.error(f"--per-word must be >= 1, got {args.per_word}")
    for name in ("valid_fraction", "test_fraction"):
        if not 0.0 <= getattr(args, name) < 1.0:
            parser.error(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(args, name)}")
    if args.valid_fraction + args.test_fraction >= 1.0:
        parser.error(f"--valid-fraction + --test-fraction must be below 1 (training needs speakers), "
                     f"got {args.valid_fraction + args.test_fraction}")
    if not 0.0 <= args.noise <= 1.0:
        parser.error(f"--noise must be in [0, 1], got {args.noise}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    return args


def check_out_dir(out_dir: Path, force: bool) -> None:
    """Refuse an existing OUT_DIR unless --force, and anything but a folder even then."""
    if not out_dir.exists():
        return
    if not force:
        fail(f"{out_dir} already exists; choose another OUT_DIR or pass --force to replace it")
    if not out_dir.is_dir():
        fail(f"{out_dir} exists and is not a folder; --force only replaces a folder")


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if shutil.which(ESPEAK) is None:
        fail(f"{ESPEAK} was not found on PATH; {INSTALL_HINT}")
    out_dir = args.out_dir
    check_out_dir(out_dir, args.force)
    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    try:
        voices = available_voices()
    except RuntimeError as err:
        fail(str(err))
    takes = takes_per_speaker(args.per_word)
    speakers = plan_speakers(rng, voices, math.ceil(args.per_word / takes), args.seed)
    splits = assign_splits(rng, speakers, args.valid_fraction, args.test_fraction)
    clips = plan_clips(rng, args.words, speakers, args.per_word, takes)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    tmp.mkdir()
    try:
        write_corpus(tmp, clips, args.noise, splits)
        install(tmp, out_dir)
    except RuntimeError as err:
        fail(str(err))
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    for line in summarise(clips, args.words, splits):
        print(line)
    print(f"{len(clips)} clips, {len(speakers)} speakers, {len(voices)} voices -> {out_dir} "
          f"({time.perf_counter() - start:.1f}s)")


if __name__ == "__main__":
    main()
