"""`bench tag`: tag whole audio files with an imported released model or a run of our own grid.

decode (soundfile, whole file, mono) -> resample (soxr HQ) to the model's rate -> the mel front end
the model was trained with -> non-overlapping patches of the model's input length from the start (a
file shorter than one patch is padded; the remainder after the last whole patch is dropped, as
musicnn does) -> every patch through the network (inference mode, small batches on worker threads)
-> the taggram (sigmoid per patch and tag) and its mean over patches, whose top tags are printed.

Models: an imported one by name (`MTT_musicnn`, `MSD_musicnn`, `MTT_vgg`, `MSD_vgg`: looked up in
`--models`, $BENCH_MODELS or $XDG_DATA_HOME/bench/models) or any folder with a model.json: an imported
model's, or a finished run's (`results/<spec>/runs/<run_id>`), both loaded by
`bench.train.model_file.load_model`. Runs finished before runs wrote model.json load from their
config.json, result.json and best.pt.
"""

from __future__ import annotations

import io
import itertools
import json
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.core.errors import UserError, one_line
from bench.core.layout import BEST, CONFIG, MODEL_JSON, load_result
from bench.core.paths import plain_name
from bench.core.store import atomic_write_bytes, json_text, read_regular_file
from bench.core.text import printable, quoted, visible
from bench.spec import LIMITS
from bench.train.model_file import check_pool_padding, load_model, load_weights, read_json

MEL_CHUNK_FRAMES = 8192
"""Frames of a file's mel computed at once (rounded down to whole patches): about 40 MB of STFT, where a
whole hour's at 16 kHz took 1.35 GB (`MelFrontend.chunks`)."""

PATCH_BATCH = 2
"""Patches per forward pass: a small batch tags a track faster on the CPU than a large one, as the
musicnn front end's activations of a few patches stay in the caches (measured per batch size:
docs/performance.md#measurements-behind-the-codes-choices)."""


@dataclass
class Tagger:
    name: str
    model: object
    """The torch module, in eval mode."""
    frontend: object
    """`bench.train.frontend.MelFrontend` as the model was trained."""
    tags: list[str]
    patch_frames: int

    @property
    def sample_rate(self) -> int:
        return self.frontend.config.sample_rate

    @property
    def patch_seconds(self) -> float:
        return self.patch_frames * self.frontend.config.hop_length / self.sample_rate

    @property
    def patch_samples(self) -> int:
        """The waveform length of one patch: (patch_frames - 1) hops, which both framings turn into
        exactly `patch_frames` frames (centred frames, with or without padding to a multiple of the hop)."""
        n = max(1, (self.patch_frames - 1) * self.frontend.config.hop_length)
        while self.frontend.n_frames(n) < self.patch_frames:
            n += 1
        if self.frontend.n_frames(n) != self.patch_frames:  # pragma: no cover - framing always steps by one
            raise UserError(f"no waveform length gives {self.patch_frames} frames")
        return n

    def patch_count(self, n_samples: int) -> int:
        """How many patches `patches` cuts from a waveform of `n_samples` samples: a short one is one patch."""
        return max(1, self.frontend.n_frames(n_samples) // self.patch_frames)

    def patches(self, waveform: np.ndarray):
        """The model's inputs of a mono waveform at its rate: the log-mel cut into non-overlapping
        patches from the start, (patches, n_mels, patch_frames) (call under `torch.inference_mode`).

        A waveform shorter than one patch: a run's (the suite's framing) is zero-padded to one patch,
        as its cache zero-pads a short file, so its mel is that of the clip the run would have seen; a
        released model's mel is padded with its minimum (`eval_segments`). The mel is computed
        `MEL_CHUNK_FRAMES` at a time, into the patches, so that a long file's STFT is never held whole."""
        import torch

        from bench.data.views import eval_segments

        samples = np.ascontiguousarray(waveform, dtype=np.float32)
        if self.frontend.pad_to_hop and self.frontend.n_frames(len(samples)) < self.patch_frames:
            samples = np.pad(samples, (0, self.patch_samples - len(samples)))
        size = self.patch_frames
        mels = self.frontend.chunks(torch.from_numpy(samples)[None], size * max(1, MEL_CHUNK_FRAMES // size))
        first = next(mels)
        if first.shape[-1] < size:  # the whole file, shorter than a patch: padded as `eval_segments` pads it
            return eval_segments(first, size)[0]
        patches, done = first.new_empty((self.patch_count(len(samples)), first.shape[1], size)), 0
        for mel in itertools.chain([first], mels):
            count = mel.shape[-1] // size  # the frames past the last whole patch are no patch
            if count:
                patches[done:done + count] = eval_segments(mel[..., :count * size], size)[0]
                done += count
        return patches


def run_tag_names(result: dict | None, n_tags: int) -> list[str]:
    """The run's tag names in output order: stored with the result; for results written before they
    were stored, the per-tag metrics' order when no tag was excluded, else tag_0, tag_1, ..."""
    if result:
        if len(result.get("tag_names") or []) == n_tags:
            return list(result["tag_names"])
        metrics = result.get("metrics", {})
        if not metrics.get("excluded_tags") and len(metrics.get("per_tag", {})) == n_tags:
            return list(metrics["per_tag"])
    return [f"tag_{i}" for i in range(n_tags)]


def run_id_of(folder: Path) -> str | None:
    """The run a run folder holds: its config.json's run_id, so that a folder copied or renamed
    (`cp -r runs/<run_id> my_tagger`) is still that run; None without one (the folder's name rules)."""
    try:
        run_id = json.loads(read_regular_file(Path(folder) / CONFIG)).get("run_id")
    except (OSError, ValueError, AttributeError, RecursionError):  # RecursionError: JSON nested too deep
        return None
    return run_id if plain_name(run_id) else None  # it names result files (`bench transfer`'s <run_id>.json)


def finished_run(folder: Path) -> dict:
    """The run's valid, ok result; a folder of an unfinished or failed run is refused."""
    result, problem = load_result(folder, run_id_of(folder))
    if result is None or result.get("status") != "ok":
        why = problem or ("no result.json" if result is None else f"status {result.get('status')!r}")
        raise UserError(f"{folder}: not a finished run ({why})")
    return result


def load_legacy_run(folder: Path) -> Tagger:
    """A run finished before runs wrote model.json: its config.json, result.json and best.pt."""
    import architectures
    from architectures import InputConfig
    from bench.core import framing
    from bench.train.frontend import MelFrontend

    config = read_json(folder / CONFIG)
    result = finished_run(folder)
    state = load_weights(folder / BEST, "model")
    try:
        arch, options = config["arch"], config["options"]
        sample_rate, n_mels, hop, log = (config[k] for k in ("sample_rate", "n_mels", "hop_multiplier", "log"))
        clip_seconds = config["dataset"]["clip_seconds"]
    except (KeyError, TypeError) as exc:
        raise UserError(f"{folder / CONFIG}: not a run config (no {exc})") from None
    # numbers a network can be built and a file framed for: up to a spec's largest (far beyond any run's;
    # 10**400 or a hop of 256 x 10**30 ended in OverflowErrors), from above 0, since the specs of the
    # versions that wrote such runs allowed what later ones refuse (a clip under 1 s)
    for name, value in (("sample_rate", sample_rate), ("n_mels", n_mels), ("hop_multiplier", hop),
                        ("dataset.clip_seconds", clip_seconds)):
        high = LIMITS[name][1]
        if isinstance(value, bool) or not isinstance(value, (int, float) if "." in name else int) \
                or not 0 < value <= high:
            kind = "a number" if "." in name else "an integer"
            raise UserError(f"{folder / CONFIG}: {name} = {value!r}; expected {kind} above 0, at most {high:,g}")
    try:  # as load_model does for a run that has model.json: one line for what does not fit
        n_tags = [v for v in state.values() if v.dim() == 2][-1].shape[0]  # the output layer comes last
        n_frames = framing.n_frames(clip_seconds, sample_rate, hop)
        model = architectures.build(arch, InputConfig(sample_rate, n_mels, hop, n_frames), n_tags, **options)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:  # an unknown architecture: KeyError
        raise UserError(f"{folder / CONFIG}: not a network this version builds ({type(exc).__name__}: "
                        f"{one_line(exc)[:200]})") from None
    check_pool_padding(model, config.get("pool_padding"), folder)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # weights of another network
        raise UserError(f"{folder / BEST}: does not fit {folder / CONFIG} ({one_line(exc)[:200]})") from None
    frontend = MelFrontend(sample_rate, n_mels, hop, log, float16_waveform=True)  # as its cache held them
    return Tagger(config.get("run_id", folder.name), model.eval(), frontend,
                  run_tag_names(result, n_tags), model.input_frames)


def resolve_model(model: str, models: str | None = None, argument: str = "--model") -> tuple[str, Path]:
    """("model" | "legacy-run", folder) for `--model`: an imported model's name (unless a folder of that
    name holds a model), or a folder with model.json (an imported model or a finished run), or a run
    finished before runs wrote model.json. `argument` names what the user typed in the error message."""
    from bench.tools.pretrained import RELEASED, models_dir

    path = Path(model)
    if path.is_dir() and (path / CONFIG).is_file():  # a run: only a finished one is a model
        finished_run(path)
        return ("model" if (path / MODEL_JSON).is_file() else "legacy-run"), path
    if path.is_dir() and (path / MODEL_JSON).is_file():
        return "model", path
    if model in RELEASED:  # a folder of that name holding no model (`bench embed --out`'s) is not it
        folder = models_dir(models) / model
        if not (folder / MODEL_JSON).is_file():
            raise UserError(f"{folder}: no imported {model} (run `bench import musicnn` first, "
                            "or point --models at the folder it wrote)")
        return "model", folder
    raise UserError(f"{argument} {model}: neither an imported model ({', '.join(RELEASED)}) nor a folder with "
                    "model.json (an imported model or a finished run)")


def model_sample_rate(kind: str, folder: Path) -> int:
    """The sample rate the model expects, read without loading it (decoding can start meanwhile)."""
    path = folder / (MODEL_JSON if kind == "model" else CONFIG)
    config = read_json(path)
    try:
        return int(config["frontend"]["sample_rate"] if kind == "model" else config["sample_rate"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{path}: no sample rate") from None


def load_folder(kind: str, folder: Path) -> Tagger:
    """The tagger in `folder`, of the kind `resolve_model` found there: one loader for every model.json."""
    if kind == "legacy-run":
        return load_legacy_run(folder)
    loaded = load_model(folder)
    return Tagger(loaded.name, loaded.model, loaded.frontend, loaded.tags, loaded.patch_frames)


def load_tagger(model: str, models: str | None = None, argument: str = "--model") -> Tagger:
    """`model` is an imported model's name, an imported model's folder or a run folder."""
    return load_folder(*resolve_model(model, models, argument))


def taggram(tagger: Tagger, waveform: np.ndarray, batch: int = PATCH_BATCH, workers: int | None = None) -> np.ndarray:
    """(patches, tags) sigmoid scores of a mono waveform at the tagger's sample rate.

    The batches of patches run on `workers` threads (default: torch's thread count), each
    single-threaded: on a small CPU that others share, this degrades gracefully where torch's own
    intra-op threads wait for each other at every layer (on busy cores, several threads were measured
    much slower than one: docs/performance.md#measurements-behind-the-codes-choices).
    """
    import torch

    from bench.train.fastpath import torch_threads

    def forward(chunk: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return torch.sigmoid(tagger.model(chunk))

    with torch.inference_mode():
        chunks = tagger.patches(waveform).split(batch)
    workers = min(workers or torch.get_num_threads(), len(chunks))
    if workers <= 1:
        return torch.cat([forward(c) for c in chunks]).numpy()
    with torch_threads(1), ThreadPoolExecutor(workers) as pool:
        return torch.cat(list(pool.map(forward, chunks))).numpy()


def save_taggram_png(path: Path, scores: np.ndarray, tags: list[str], patch_seconds: float, title: str) -> None:
    import matplotlib
    from matplotlib.figure import Figure

    # no TeX: a tag's or a file name's $...$ is text ("money $$", "Ke$ha - $ave.mp3"), not a formula
    with matplotlib.rc_context({"text.parse_math": False}):
        fig = Figure(figsize=(7, 0.12 * len(tags) + 1.2))  # no pyplot: no GUI backend, none kept in memory
        ax = fig.subplots()
        image = ax.imshow(scores.T, aspect="auto", origin="upper", interpolation="nearest", cmap="Greys",
                          vmin=0, vmax=1, extent=(0, len(scores) * patch_seconds, len(tags) - 0.5, -0.5))
        ax.set_yticks(range(len(tags)), tags, fontsize=6)
        ax.set_xlabel("time (s)")
        ax.set_title(title, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02, label="sigmoid")
        fig.tight_layout()
        # rendered, then written whole: a full disk leaves no part of a PNG, and its error names the file; in
        # the format its name says (`check_png_targets` let through only IMAGE_SUFFIXES)
        buffer = io.BytesIO()
        fig.savefig(buffer, dpi=150, format=path.suffix.lstrip(".").lower())
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())


IMAGE_SUFFIXES = (".png", ".pdf", ".svg", ".svgz", ".jpg", ".jpeg", ".gif", ".tif", ".tiff", ".webp", ".eps", ".ps")
"""What `--png` may be named: image formats matplotlib writes, each in its own format."""


def check_png_targets(targets: list[Path], audio: list[str]) -> None:
    """Refuse a `--png` target that is not an image file name (`song.mp3`: the taggram would be written
    over what may be an audio file) or that is one of the inputs."""
    for target in targets:
        if target.suffix.lower() not in IMAGE_SUFFIXES:
            raise UserError(f"--png {target}: not an image file name (.png, .pdf or .svg, say); the taggram is "
                            "not written over a file of another kind")
        for path in audio:
            if Path(path).resolve() == target.resolve():
                raise UserError(f"--png {target}: that is an input of this command")


def png_paths(template: str, audio: list[str]) -> list[Path]:
    """`--png PATH` for each audio file: PATH itself for one file (PATH.png where it has no suffix, as
    with several); with several, PATH with `-<audio stem>` before its suffix, or `-<audio file name>`
    where stems repeat (a.mp3, a.wav), and a counter where whole names repeat (two folders' a.mp3, or
    A.mp3 and a.mp3, one file on a file system that ignores case): one PNG per input, never
    overwritten. A counter skips names already taken (a third input named a.mp3-1.wav)."""
    path = Path(template)
    suffix = path.suffix or ".png"
    if len(audio) == 1:
        return [path.with_suffix(suffix)]
    stems = [Path(a).stem for a in audio]
    names = [stem if stems.count(stem) == 1 else Path(a).name for stem, a in zip(stems, audio, strict=True)]
    count = Counter(name.casefold() for name in names)
    taken = {name.casefold() for name in names if count[name.casefold()] == 1}
    unique = []
    for name in names:
        if count[name.casefold()] > 1:
            k = 1
            while f"{name}-{k}".casefold() in taken:
                k += 1
            name = f"{name}-{k}"
        taken.add(name.casefold())
        unique.append(name)
    return [path.with_name(f"{path.stem}-{name}{suffix}") for name in unique]


def input_problem(path: str) -> str | None:
    """Why `path` cannot be tagged, seen from its header only (no decoding), or None."""
    from bench.data.audio import BadAudio, probe

    try:
        probe(path)
    except BadAudio as exc:
        return str(exc)
    return None


def _decode(path: str, sample_rate: int) -> tuple[np.ndarray | Exception, float]:
    """(waveform or the BadAudio it raised, seconds it took)."""
    from bench.data.audio import BadAudio, decode_file

    t0 = time.perf_counter()
    try:
        return decode_file(path, sample_rate, warn=lambda text: print(
            f"bench tag: warning: {visible(str(path))}: {text}", file=sys.stderr)), time.perf_counter() - t0
    except BadAudio as exc:
        return exc, time.perf_counter() - t0


def cli_main(audio: list[str], model: str, models: str | None, top: int, as_json: bool, png: str | None,
             started: float) -> int:
    """Tag every file; bad files are reported (one line each) and give exit status 2 at the end.

    The next file is decoded on a thread while the model loads (torch's import is most of that) and
    while the current file is tagged: libsndfile and soxr release the GIL.
    """
    if top < 1:
        raise UserError(f"--top must be >= 1, got {top}")
    kind, folder = resolve_model(model, models)
    sample_rate = model_sample_rate(kind, folder)
    pngs = png_paths(png, audio) if png else [None] * len(audio)
    check_png_targets([out for out in pngs if out is not None], audio)
    # every input is looked at before the model loads: a typo costs milliseconds, not the model's load
    problems = [input_problem(path) for path in audio]
    for path, problem in zip(audio, problems, strict=True):
        if problem:
            print(f"bench tag: error: {visible(str(path))}: {problem}", file=sys.stderr)
    failed = sum(1 for problem in problems if problem)
    pngs = [out for out, problem in zip(pngs, problems, strict=True) if not problem]
    audio = [path for path, problem in zip(audio, problems, strict=True) if not problem]
    if not audio:
        return 2
    decoder = ThreadPoolExecutor(1)
    try:
        pending = [decoder.submit(_decode, path, sample_rate) for path in audio[:1]]
        t_load = time.perf_counter()
        tagger = load_folder(kind, folder)
        times = {"load": time.perf_counter() - t_load, "decode": 0.0, "tag": 0.0}
        results, audio_seconds = [], 0.0
        for n, path in enumerate(audio):
            waveform, decode_seconds = pending.pop().result()
            if n + 1 < len(audio):
                pending.append(decoder.submit(_decode, audio[n + 1], sample_rate))
            times["decode"] += decode_seconds
            if isinstance(waveform, Exception):
                print(f"bench tag: error: {visible(str(path))}: {one_line(str(waveform))}", file=sys.stderr)
                failed += 1
                continue
            t1 = time.perf_counter()
            scores = taggram(tagger, waveform)
            if not np.isfinite(scores).all():  # the network's fault, not the file's: every file would be
                raise UserError(f"{folder}: its network gives scores that are not finite (NaN or infinite) for "
                                f"{visible(str(path))}: its weights are damaged")
            times["tag"] += time.perf_counter() - t1
            seconds = len(waveform) / tagger.sample_rate
            audio_seconds += seconds
            mean = scores.mean(axis=0)
            order = np.argsort(-mean, kind="stable")
            results.append({
                "file": path, "model": tagger.name, "seconds": round(seconds, 3), "patches": len(scores),
                "patch_seconds": round(tagger.patch_seconds, 4),
                "top": [{"tag": tagger.tags[i], "score": round(float(mean[i]), 4)} for i in order[:top]],
                "scores": {tag: round(float(s), 4) for tag, s in zip(tagger.tags, mean, strict=True)},
            })
            if pngs[n] is not None:
                save_taggram_png(pngs[n], scores, tagger.tags, tagger.patch_seconds,
                                 f"{printable(Path(path).name)}: {tagger.name}")
            if not as_json:
                # shown, not acted on: a name's escape sequence or newline (any tag text of a manifest dataset)
                tops = ", ".join(f"{quoted(visible(t['tag']))} ({t['score']:.3f})" for t in results[-1]["top"])
                print(f"{visible(str(path))}: {tops}", flush=True)
    finally:
        decoder.shutdown(wait=False, cancel_futures=True)
    if as_json:
        sys.stdout.write(json_text(results))
        sys.stdout.write("\n")
    elapsed = time.perf_counter() - started
    print(f"{visible(tagger.name)}: {len(results)} file(s), {audio_seconds:.1f} s of audio, {elapsed:.2f} s end to end "
          f"(model load {times['load']:.2f} s; decoding {times['decode']:.2f} s, on a second thread; "
          f"mel + network {times['tag']:.2f} s)", file=sys.stderr)
    return 2 if failed else 0
