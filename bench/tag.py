"""`bench tag`: tag whole audio files with an imported released model or a run of our own grid.

decode (soundfile, whole file, mono) -> resample (soxr HQ) to the model's rate -> the mel front end
the model was trained with -> non-overlapping patches of the model's input length from the start (a
file shorter than one patch is padded; the remainder after the last whole patch is dropped, as
musicnn does) -> all patches through the network in a few batches (inference mode) -> the taggram
(sigmoid per patch and tag) and its mean over patches, whose top tags are printed.

Models: an imported one by name (`MTT_musicnn`, `MSD_musicnn`, `MTT_vgg`, `MSD_vgg`: looked up in
`--models`, $BENCH_MODELS or ./models) or by folder (holding model.json and weights.pt), or a run
folder of a grid (`results/<spec>/runs/<run_id>`: its config.json, best.pt and result.json).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.errors import UserError

PATCH_BATCH = 16
"""Patches per forward pass: big enough to keep the convolutions efficient, small enough that the
musicnn front end's activations stay in cache-friendly sizes (a 3:27 track has 69 patches)."""


@dataclass
class Tagger:
    name: str
    model: object
    """The torch module, in eval mode."""
    frontend: object
    """`bench.frontend.MelFrontend` as the model was trained."""
    tags: list[str]
    patch_frames: int

    @property
    def sample_rate(self) -> int:
        return self.frontend.config.sample_rate

    @property
    def patch_seconds(self) -> float:
        return self.patch_frames * self.frontend.config.hop_length / self.sample_rate


def _load_weights(path: Path):
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: missing") from None
    except Exception as exc:  # a damaged or foreign file
        raise UserError(f"{path}: cannot load the weights ({type(exc).__name__})") from None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: missing") from None
    except ValueError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None


def load_imported(folder: Path) -> Tagger:
    """A model written by `bench import musicnn`."""
    import architectures
    from architectures import InputConfig
    from bench import framing
    from bench.frontend import MelFrontend
    from bench.pretrained import MODEL_JSON, WEIGHTS

    meta = _read_json(folder / MODEL_JSON)
    fe = meta["frontend"]
    frontend = MelFrontend(fe["sample_rate"], fe["n_mels"], fe["hop_length"] // framing.BASE_HOP, fe["log"],
                           pad_mode=fe["pad_mode"], pad_to_hop=fe["pad_to_hop"], float16_mel=fe["float16_mel"])
    model = architectures.build(meta["arch"], InputConfig(**meta["input"]), len(meta["tags"]), **meta["options"])
    model.load_state_dict(_load_weights(folder / WEIGHTS))
    return Tagger(meta["name"], model.eval(), frontend, list(meta["tags"]), int(meta["patch_frames"]))


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


def load_run(folder: Path) -> Tagger:
    """The best-validation weights of a run of our own grid."""
    import architectures
    from architectures import InputConfig
    from bench import framing
    from bench.frontend import MelFrontend
    from bench.runner import read_result

    config = _read_json(folder / "config.json")
    state = _load_weights(folder / "best.pt")
    try:
        arch, options = config["arch"], config["options"]
        sample_rate, n_mels, hop, log = (config[k] for k in ("sample_rate", "n_mels", "hop_multiplier", "log"))
        clip_seconds = config["dataset"]["clip_seconds"]
    except (KeyError, TypeError) as exc:
        raise UserError(f"{folder / 'config.json'}: not a run config (no {exc})") from None
    n_tags = [v for v in state.values() if v.dim() == 2][-1].shape[0]  # the output layer comes last
    n_frames = framing.n_frames(clip_seconds, sample_rate, hop)
    model = architectures.build(arch, InputConfig(sample_rate, n_mels, hop, n_frames), n_tags, **options)
    model.load_state_dict(state)
    return Tagger(config.get("run_id", folder.name), model.eval(), MelFrontend(sample_rate, n_mels, hop, log),
                  run_tag_names(read_result(folder), n_tags), model.input_frames)


def load_tagger(model: str, models: str | None = None) -> Tagger:
    """`model` is an imported model's name, an imported model's folder or a run folder."""
    from bench.pretrained import MODEL_JSON, RELEASED, models_dir

    path = Path(model)
    if model in RELEASED and not path.is_dir():
        folder = models_dir(models) / model
        if not (folder / MODEL_JSON).is_file():
            raise UserError(f"{folder}: no imported {model} (run `bench import musicnn` first, "
                            "or point --models at the folder it wrote)")
        return load_imported(folder)
    if path.is_dir() and (path / MODEL_JSON).is_file():
        return load_imported(path)
    if path.is_dir() and (path / "config.json").is_file():
        return load_run(path)
    raise UserError(f"--model {model}: neither an imported model ({', '.join(RELEASED)}) nor a folder with "
                    "model.json (imported) or config.json and best.pt (a run)")


def taggram(tagger: Tagger, waveform: np.ndarray, batch: int = PATCH_BATCH) -> np.ndarray:
    """(patches, tags) sigmoid scores of a mono waveform at the tagger's sample rate."""
    import torch

    from bench.data.views import eval_segments

    with torch.inference_mode():
        mel = tagger.frontend(torch.from_numpy(waveform)[None])
        patches, _ = eval_segments(mel, tagger.patch_frames)
        scores = [torch.sigmoid(tagger.model(chunk)) for chunk in patches.split(batch)]
        return torch.cat(scores).numpy()


def save_taggram_png(path: Path, scores: np.ndarray, tags: list[str], patch_seconds: float, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.12 * len(tags) + 1.2))
    image = ax.imshow(scores.T, aspect="auto", origin="upper", interpolation="nearest", cmap="Greys",
                      vmin=0, vmax=1, extent=(0, len(scores) * patch_seconds, len(tags) - 0.5, -0.5))
    ax.set_yticks(range(len(tags)), tags, fontsize=6)
    ax.set_xlabel("time (s)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02, label="sigmoid")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)


def png_path(template: str, audio: str, several: bool) -> Path:
    """`--png PATH` for one file; with several, PATH with `-<audio stem>` before its suffix."""
    path = Path(template)
    return path.with_name(f"{path.stem}-{Path(audio).stem}{path.suffix or '.png'}") if several else path


def cli_main(audio: list[str], model: str, models: str | None, top: int, as_json: bool, png: str | None,
             started: float) -> int:
    """Tag every file; bad files are reported (one line each) and give exit status 2 at the end."""
    from bench.data.audio import BadAudio, decode_file

    if top < 1:
        raise UserError(f"--top must be >= 1, got {top}")
    t_load = time.perf_counter()
    tagger = load_tagger(model, models)
    times = {"load": time.perf_counter() - t_load, "decode": 0.0, "tag": 0.0}
    results, failed, audio_seconds = [], 0, 0.0
    for path in audio:
        t0 = time.perf_counter()
        try:
            waveform = decode_file(path, tagger.sample_rate)
        except BadAudio as exc:
            print(f"bench tag: error: {path}: {exc}", file=sys.stderr)
            failed += 1
            continue
        t1 = time.perf_counter()
        scores = taggram(tagger, waveform)
        times["decode"] += t1 - t0
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
        if png:
            save_taggram_png(png_path(png, path, len(audio) > 1), scores, tagger.tags, tagger.patch_seconds,
                             f"{Path(path).name}: {tagger.name}")
        if not as_json:
            tops = ", ".join(f"{t['tag']} ({t['score']:.3f})" for t in results[-1]["top"])
            print(f"{path}: {tops}", flush=True)
    if as_json:
        json.dump(results, sys.stdout, indent=1)
        sys.stdout.write("\n")
    elapsed = time.perf_counter() - started
    print(f"{tagger.name}: {len(results)} file(s), {audio_seconds:.1f} s of audio, {elapsed:.2f} s end to end "
          f"(model {times['load']:.2f} s, decode {times['decode']:.2f} s, mel + network {times['tag']:.2f} s)",
          file=sys.stderr)
    return 2 if failed else 0
