"""How long does `bench tag` take for a 3:27 MP3, end to end? (The Essentia paper times a 3:27 MP3:
3.34 s in Essentia, 8.60 s in the original musicnn Python pipeline, on an i7-6700.)

    .venv/bin/python benchmarks/tag_speed.py [--track track_3m27.mp3] [--runs 10] [--model MTT_musicnn]

Writes the track if it does not exist: 3:27 of the synthetic generator's music, 44.1 kHz stereo MP3
(two different clips as left and right). Then runs `bench tag TRACK --model MODEL` as a fresh process
`--runs` times and prints, per run and on average, the process's wall time (interpreter start to
exit) and the end-to-end time the command prints (from its start to its last result).
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from bench.cli import at_least
from bench.core.arguments import Parser

TRACK_SECONDS = 3 * 60 + 27
RATE = 44100


def write_track(path: Path) -> None:
    from bench.data.synthetic import plan_clips, synthesize

    plans = plan_clips(16, seed=0)
    left, right = (synthesize(plans[i], 0, TRACK_SECONDS, RATE) for i in (3, 8))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.mp3")  # a killed write leaves no half track to time
    sf.write(partial, np.stack([left, right], axis=1), RATE, format="MP3")
    partial.replace(path)


def main() -> int:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--track", default="track_3m27.mp3")
    parser.add_argument("--runs", type=at_least(1), default=10)
    parser.add_argument("--model", default="MTT_musicnn")
    args = parser.parse_args()
    track = Path(args.track)
    if not track.exists():
        write_track(parser.output_file(track, "--track", ".mp3"))
    try:
        info = sf.info(track)
    except (sf.LibsndfileError, OSError) as exc:  # a folder, or not audio
        parser.error(f"--track {track}: not a recording libsndfile reads ({exc})")
    print(f"{track}: {info.duration:.1f} s, {info.samplerate} Hz, {info.channels} channels, {info.format}")
    bench = Path(sys.executable).with_name("bench")
    process, printed = [], []
    for run in range(args.runs):
        t0 = time.perf_counter()
        done = subprocess.run([str(bench), "tag", str(track), "--model", args.model], capture_output=True, text=True)
        process.append(time.perf_counter() - t0)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        match = re.search(r"([0-9.]+) s end to end", done.stderr)
        printed.append(float(match.group(1)) if match else float("nan"))
        print(f"run {run + 1}: process {process[-1]:.2f} s, printed end to end {printed[-1]:.2f} s  "
              f"| {done.stdout.strip()}")
    print(f"mean of {args.runs}: process {statistics.mean(process):.2f} s (min {min(process):.2f}), "
          f"printed {statistics.mean(printed):.2f} s (min {min(printed):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
