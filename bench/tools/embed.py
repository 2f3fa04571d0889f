"""`bench embed`: embeddings of audio files from an imported model or a run of a grid.

A file goes the way `bench tag` takes it (decode, resample to the model's rate, the model's own mel
front end, non-overlapping patches of its input length from the start), then each patch through the
network up to the embedding layers the architecture names (`embedding_names`, first = default):

    VGG-CNN        pool4          the last block, pooled to 1 x 1 (what the classifier reads)
    vgg-605k       pool5          the last pooled map, flattened in TensorFlow's order
    MusiCNN        penultimate    the dense layer after ReLU and BatchNorm (musicnn's name)
                   max_pool, mean_pool   max and mean over time of the dense connection

A file's embedding is the mean over its patches; `--per-patch` keeps every patch as well. Only the
means stay in memory; the per-patch arrays are read back from the cache into the output file, so
10,000 four-minute tracks need megabytes, not the gigabytes of all their patches.

Cache: one `.npz` per (model, audio) pair, `<cache>/<model id>/<audio id>.npz`, written atomically,
holding every layer per patch. The model id hashes its description and weights, the audio id the
file's bytes: a rerun (or a killed run started again) computes only what is missing, and a changed
file or retrained model is never served stale.

Output folder: `index.csv` (row, path, audio id, seconds, patches, first patch row), `<layer>.npy`
(files x dims, float32, rows in index order), `<layer>.patches.npy` with `--per-patch`, and
`embeddings.json` (the model, its layers and dimensions, files that failed and why).
"""

from __future__ import annotations

import collections
import contextlib
import csv
import errno
import hashlib
import io
import json
import os
import sys
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.core.errors import UserError
from bench.core.layout import BEST, CONFIG, MODEL_JSON
from bench.core.paths import plain_name
from bench.core.store import (
    STALE_TEMP_SECONDS,
    atomic_file,
    atomic_write_bytes,
    atomic_write_json,
    exclusive_lock,
    remove_temp_files,
)
from bench.core.text import visible
from bench.tools.tag import Tagger, load_folder, resolve_model

GROUP = 32
"""Files decoded and embedded together: their patches share forward passes."""
GROUP_BYTES = 512 * 2**20
"""...at most this many bytes of decoded waveform at once (32 hour-long tracks would be 7 GB at 16 kHz)."""
BATCH = 32
"""Patches per forward pass."""
SECONDS = "__seconds__"
"""The cache entry's key for the file's duration (seconds at the model's rate)."""
MAX_SECONDS = 10**7
"""The longest duration an entry may say (115 days): more is not what `put` wrote."""
INDEX = "index.csv"
SUMMARY = "embeddings.json"
CACHE = "cache"
OUT_LOCK = ".embed.lock"
"""What two `bench embed` into one --out take turns on while they write its outputs."""


@dataclass
class Embedder:
    tagger: Tagger
    identity: str
    """Hash of the model's description and weights (the cache's key)."""
    kind: str
    folder: Path

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.tagger.model.embedding_names)

    @property
    def sample_rate(self) -> int:
        return self.tagger.sample_rate


def _hash_files(paths: Iterable[Path]) -> str:
    """The contents' digest. Only regular files are read: opening a FIFO would wait for a writer forever."""
    digest = hashlib.sha256()
    for path in paths:
        if Path(path).exists() and not Path(path).is_file():
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:20]


def model_files(kind: str, folder: Path) -> list[Path]:
    """The files that define a model: its description and its weights."""
    if kind == "legacy-run":
        return [folder / CONFIG, folder / BEST]
    from bench.train.model_file import read_json

    return [folder / MODEL_JSON, folder / read_json(folder / MODEL_JSON).get("weights", "weights.pt")]


def file_identity(path: str | Path) -> str:
    return _hash_files([Path(path)])


def load_embedder(model: str, models: str | None = None, argument: str = "MODEL") -> Embedder:
    """`model`: an imported model's name or folder, or a run folder (as `bench tag --model`)."""
    kind, folder = resolve_model(model, models, argument)
    try:
        identity = _hash_files(model_files(kind, folder))
    except OSError as exc:
        raise UserError(f"{folder}: cannot read the model's files ({exc.strerror or exc})") from None
    tagger = load_folder(kind, folder)
    if not hasattr(tagger.model, "embeddings"):
        raise UserError(f"{folder}: architecture {type(tagger.model).__name__} names no embedding layers")
    return Embedder(tagger, identity, kind, folder)


UNTRAINED = "~untrained"
"""Suffix of a control's name: the same network with its initial weights."""


def untrained(embedder: Embedder, seed: int = 0) -> Embedder:
    """The same architecture, input and front end with freshly initialised weights (each layer's
    `reset_parameters` under `torch.manual_seed(seed)`, BatchNorm statistics reset): the random-feature
    control of a transfer experiment."""
    import copy

    import torch

    model = copy.deepcopy(embedder.tagger.model)
    torch.manual_seed(seed)
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    tagger = Tagger(embedder.tagger.name + UNTRAINED, model.eval(), embedder.tagger.frontend, embedder.tagger.tags,
                    embedder.tagger.patch_frames)
    identity = hashlib.sha256(f"{embedder.identity}{UNTRAINED}-{seed}".encode()).hexdigest()[:20]
    return Embedder(tagger, identity, embedder.kind, embedder.folder)


def embed_waveforms(tagger: Tagger, waveforms: list[np.ndarray], batch: int = BATCH) -> list[dict[str, np.ndarray]]:
    """Every layer's embedding of every patch: for each waveform, {layer: (patches, dims) float32}."""
    import torch

    with torch.inference_mode():
        patches = [tagger.patches(waveform) for waveform in waveforms]
        counts = [len(p) for p in patches]
        outputs: dict[str, list[torch.Tensor]] = {}
        for chunk in torch.cat(patches).split(batch):
            for layer, value in tagger.model.embeddings(chunk).items():
                outputs.setdefault(layer, []).append(value.float())
        joined = {layer: torch.cat(values).numpy() for layer, values in outputs.items()}
    result, start = [], 0
    for n in counts:
        result.append({layer: array[start:start + n].copy() for layer, array in joined.items()})
        start += n
    return result


@dataclass(frozen=True)
class FileEmbedding:
    """What is kept in memory of one file's embedding: per layer the mean over its patches (dims,) float32,
    the number of patches, the duration (seconds) and the audio id; its patches stay in the cache."""

    identity: str
    means: dict[str, np.ndarray]
    patches: int
    seconds: float

    @classmethod
    def of(cls, identity: str, arrays: dict[str, np.ndarray], layers: tuple[str, ...]) -> FileEmbedding:
        return cls(identity, {layer: arrays[layer].mean(axis=0) for layer in layers}, len(arrays[layers[0]]),
                   float(arrays[SECONDS]))


DECODE_VERSION = 3
"""What `bench.data.audio.decode_file` gives for a file's bytes and the front end makes of it, part of the
cache's folder name: 2, MP3s read without the decoder restarts that put wrong samples after every block
of 65,536 frames; 3, a run's samples rounded to float16 as its training's waveform cache held them
(`MelFrontend`'s float16_waveform), and a file shorter than one of its patches zero-padded as its cache
pads one (`Tagger.patches`)."""


class EmbeddingCache:
    """`<root>/<model id>-d<DECODE_VERSION>/<audio id>.npz`: one model's per-patch embeddings of one audio
    file, decoded as this version decodes it (the folders of other decoder versions are not read)."""

    def __init__(self, root: str | Path, model_identity: str):
        self.folder = Path(root) / f"{model_identity}-d{DECODE_VERSION}"

    def _path(self, audio_identity: str) -> Path:
        return self.folder / f"{audio_identity}.npz"

    def get(self, audio_identity: str, layers: tuple[str, ...]) -> dict[str, np.ndarray] | None:
        """The cached arrays (and SECONDS), or None when absent, unreadable or not what `put` writes
        (then computed again): per layer finite floats (patches, dims), as many patches in each."""
        try:
            with np.load(self._path(audio_identity), allow_pickle=False) as data:
                arrays = {key: data[key] for key in (*layers, SECONDS)}
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):  # torn by a copy or a disk fault
            return None
        patches = {array.shape[0] if array.ndim == 2 else 0 for array in (arrays[layer] for layer in layers)}
        if len(patches) != 1 or 0 in patches or arrays[SECONDS].shape != () or not all(
                arrays[key].dtype.kind == "f" and np.isfinite(arrays[key]).all() for key in (*layers, SECONDS)) \
                or not 0 < float(arrays[SECONDS]) <= MAX_SECONDS:
            return None
        return arrays

    def where(self, audio_identity: str) -> Path:
        """The file of an audio file's entry."""
        return self._path(audio_identity)

    def put(self, audio_identity: str, arrays: dict[str, np.ndarray]) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(self._path(audio_identity), buffer.getvalue())


Decoder = Callable[[str, int], np.ndarray]


def decode(path: str, sample_rate: int) -> np.ndarray:
    """The whole file at `sample_rate`; a BadAudio for one that is not audio, found from its header with
    the decoder's own messages discarded first (`probe`, as `bench tag` does: libmpg123's "Note: Illegal
    Audio-MPEG-Header" lines would precede the one line that says so)."""
    from bench.data.audio import decode_file, probe

    probe(path)
    return decode_file(path, sample_rate,
                       warn=lambda text: print(f"warning: {visible(str(path))}: {text}", file=sys.stderr))


def embed_files(embedder: Embedder, paths: list[str], cache_root: str | Path, decoder: Decoder = decode,
                progress: Callable[[int], None] | None = None) -> tuple[dict[str, FileEmbedding], dict[str, str]]:
    """({path: its FileEmbedding}, {path: why it failed}) for every path, computing only what the cache
    (`EmbeddingCache(cache_root, embedder.identity)`, which then holds every path's patches) lacks. A
    file that cannot be decoded is recorded, not raised."""
    from bench.data.audio import BadAudio

    cache = EmbeddingCache(cache_root, embedder.identity)
    remove_temp_files(cache.folder, STALE_TEMP_SECONDS)  # of killed writers; two embeds may share a cache
    done: dict[str, FileEmbedding] = {}
    computed: dict[str, FileEmbedding] = {}  # not read from the cache: the model's own sizes
    failed: dict[str, str] = {}
    todo: list[tuple[str, str, np.ndarray]] = []

    def embed_todo() -> None:
        for (path, identity, waveform), arrays in zip(todo, embed_waveforms(embedder.tagger,
                                                                            [w for *_, w in todo]), strict=True):
            for layer in embedder.layers:  # the network's fault, not the file's: every file would be
                if not np.isfinite(arrays[layer]).all():
                    raise UserError(f"{embedder.folder}: its network gives {layer} embeddings that are not finite "
                                    f"(NaN or infinite) for {visible(path)}: its weights are damaged")
            arrays[SECONDS] = np.array(len(waveform) / embedder.sample_rate)
            cache.put(identity, arrays)
            done[path] = computed[path] = FileEmbedding.of(identity, arrays, embedder.layers)
        todo.clear()

    for start in range(0, len(paths), GROUP):
        group = paths[start:start + GROUP]
        for path in group:
            try:
                identity = file_identity(path)
            except OSError as exc:
                failed[path] = f"cannot read ({exc.strerror or exc})"
                continue
            cached = cache.get(identity, embedder.layers)
            # as many patches as the file's length gives (an entry of one layer has no other to agree with)
            if cached is not None and len(cached[embedder.layers[0]]) == embedder.tagger.patch_count(
                    round(float(cached[SECONDS]) * embedder.sample_rate)):
                done[path] = FileEmbedding.of(identity, cached, embedder.layers)
                continue
            try:
                todo.append((path, identity, decoder(path, embedder.sample_rate)))
            except BadAudio as exc:
                failed[path] = str(exc)
            if sum(w.nbytes for *_, w in todo) >= GROUP_BYTES:
                embed_todo()
        if todo:
            embed_todo()
        if progress:
            progress(len(group))
    _check_dims(done, computed, embedder.layers, cache)
    return done, failed


def _check_dims(done: dict[str, FileEmbedding], computed: dict[str, FileEmbedding], layers: tuple[str, ...],
                cache: EmbeddingCache) -> None:
    """One model's entries hold one size per layer (that of the entries computed now, else the most
    common): an entry of another size (written by hand, or by another program into the cache) is named,
    where stacking the files' embeddings would fail."""
    for layer in layers:
        sizes = collections.Counter(embedding.means[layer].shape for embedding in done.values())
        if len(sizes) > 1:
            usual = (next(iter(computed.values())).means[layer].shape if computed
                     else sizes.most_common(1)[0][0])
            odd = next(e for e in done.values() if e.means[layer].shape != usual)
            raise UserError(f"{cache.where(odd.identity)}: {layer} of {odd.means[layer].size} values, where this "
                            f"model's other entries hold {usual[0]}: not this model's; remove it and rerun")


def write_outputs(out: Path, embedder: Embedder, paths: list[str], files: dict[str, FileEmbedding],
                  failed: dict[str, str], per_patch: bool, cache: EmbeddingCache) -> dict:
    """<layer>.patches.npy (read back from `cache`, one file at a time), index.csv, <layer>.npy (mean over
    patches) and embeddings.json, each written atomically. The per-patch arrays are the large write and
    go first, staged: a full disk or a vanished cache entry stops them before anything is replaced, and
    the folder keeps its earlier outputs. Before the first file is replaced, embeddings.json says
    `"complete": false` (with every layer of the earlier outputs and these), and only the final summary,
    written last, says `"complete": true`: a run killed part-way never leaves a mix of two runs' files
    under a summary that looks whole, and its rerun still knows what to remove. The arrays an earlier
    run wrote here and this one does not (another model's layers, per-patch arrays without --per-patch)
    are removed, so none is read against this index."""
    kept = [p for p in paths if p in files]
    remove_temp_files(out, STALE_TEMP_SECONDS)
    try:
        earlier = json.loads((out / SUMMARY).read_text()).get("layers") or {}
    except (OSError, ValueError, AttributeError):
        earlier = {}
    if not isinstance(earlier, dict):  # a summary written by hand, or by something else
        earlier = {}
    # its layer names name files to remove: only plain names of this folder (one from elsewhere could
    # name "../x" or an absolute path, whose .npy would be removed)
    earlier = {layer: dims for layer, dims in earlier.items() if plain_name(layer)}
    means = {layer: np.stack([files[p].means[layer] for p in kept]).astype(np.float32) if kept
             else np.zeros((0, 0), np.float32) for layer in embedder.layers}
    dims = {layer: int(array.shape[1]) for layer, array in means.items()}

    def being_written() -> None:
        atomic_write_json(out / SUMMARY, {"complete": False, "layers": {**earlier, **dims},
                                          "note": "being written by bench embed, or stopped part-way: rerun it"})

    if per_patch:
        _write_patches(out, dims, [(p, files[p]) for p in kept], cache, before_replacing=being_written)
    else:
        being_written()
    rows, first = [], 0
    for row, path in enumerate(kept):
        rows.append([row, path, files[path].identity, round(files[path].seconds, 3), files[path].patches, first])
        first += files[path].patches
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["row", "path", "audio_id", "seconds", "patches", "first_patch"])
    writer.writerows(rows)
    # a path that is not UTF-8 (a Latin-1 name) keeps its own bytes, the name the file system knows it by
    atomic_write_bytes(out / INDEX, text.getvalue().encode("utf-8", "surrogateescape"))
    for layer, array in means.items():
        _save_npy(out / f"{layer}.npy", array)
    for layer in earlier:
        if layer not in embedder.layers:
            (out / f"{layer}.npy").unlink(missing_ok=True)
        if layer not in embedder.layers or not per_patch:
            (out / f"{layer}.patches.npy").unlink(missing_ok=True)
    summary = {"complete": True, "model": embedder.tagger.name, "model_id": embedder.identity,
               "model_folder": str(embedder.folder), "sample_rate": embedder.sample_rate,
               "patch_seconds": round(embedder.tagger.patch_seconds, 4), "layers": dims,
               "default_layer": embedder.layers[0], "files": len(kept), "per_patch": per_patch, "failed": failed}
    atomic_write_json(out / SUMMARY, summary)
    return summary


def _write_patches(out: Path, dims: dict[str, int], kept: list[tuple[str, FileEmbedding]],
                   cache: EmbeddingCache, before_replacing: Callable[[], None]) -> None:
    """<layer>.patches.npy, float32 (all patches, dims): the .npy header, then each file's patches from
    the cache appended in index order, so that only one file's patches are in memory at a time. Plain
    writes, not a memory map: a full disk is an OSError naming the file, where a map's page fault
    would kill the process (SIGBUS). Every layer's file is written and synced to disk before any
    replaces its earlier version, and `before_replacing` runs in between."""
    layers, total = tuple(dims), sum(embedding.patches for _, embedding in kept)
    with contextlib.ExitStack() as stack:
        handles = {}
        for layer in layers:
            handles[layer] = stack.enter_context(open(stack.enter_context(atomic_file(out / f"{layer}.patches.npy")),
                                                      "wb"))
            np.lib.format.write_array_header_1_0(handles[layer], {"descr": np.lib.format.dtype_to_descr(
                np.dtype(np.float32)), "fortran_order": False, "shape": (total, dims[layer])})
        for path, embedding in kept:
            arrays = cache.get(embedding.identity, layers)
            if arrays is None or len(arrays[layers[0]]) != embedding.patches:  # removed or changed meanwhile
                raise UserError(f"{path}: its cached embedding (in {cache.folder}) is gone or changed; run again")
            for layer in layers:
                handles[layer].write(np.ascontiguousarray(arrays[layer], dtype=np.float32).tobytes())
        for handle in handles.values():  # a full disk shows here, before anything is replaced
            handle.flush()
            os.fsync(handle.fileno())
        before_replacing()


def _save_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue())


def manifest_paths(manifest: str) -> list[str]:
    """The `path` column of a CSV manifest (relative to its folder), every file checked to exist."""
    from bench.data.task import audio_path, read_rows

    path, _, rows = read_rows(manifest, ("path",))
    return [audio_path(path, line, (row.get("path") or "").strip()) for line, row in rows]


def _earlier_model(out: Path) -> tuple[str, str] | None:
    """(name, model id) of the embeddings an earlier run wrote in `out`, or None."""
    try:
        summary = json.loads((out / SUMMARY).read_text())
        return str(summary["model"]), str(summary["model_id"])
    except (OSError, ValueError, TypeError, KeyError):
        return None


def cli_main(audio: list[str], manifest: str | None, model: str, models: str | None, out: str,
             per_patch: bool, quiet: bool) -> int:
    """Embed every file; files that cannot be decoded are reported (one line each), recorded in
    embeddings.json, and give exit status 2 at the end."""
    from bench.core.paths import writable_folder
    from bench.core.progress import progress_bar

    if manifest and audio:
        raise UserError("give audio files or --manifest, not both")
    paths = manifest_paths(manifest) if manifest else list(audio)
    if not paths:
        raise UserError("no audio: give audio files or --manifest FILE")
    target = Path(writable_folder(out, "--out"))
    embedder = load_embedder(model, models)
    with progress_bar(len(paths), f"embedding ({visible(embedder.tagger.name)})", enabled=not quiet) as bar:
        files, failed = embed_files(embedder, paths, target / CACHE, progress=bar.update)
    for path, why in failed.items():
        print(f"bench embed: error: {visible(str(path))}: {why}", file=sys.stderr)
    if not files:  # e.g. a mistyped file name: an earlier run's outputs stay as they were
        print(f"bench embed: error: no file could be embedded; nothing written to {target}", file=sys.stderr)
        return 2
    # two embeds into one --out take turns: interleaved, one's index would stand beside the other's arrays
    with exclusive_lock(target / OUT_LOCK):
        earlier = _earlier_model(target)
        summary = write_outputs(target, embedder, paths, files, failed, per_patch,
                                EmbeddingCache(target / CACHE, embedder.identity))
    dims = ", ".join(f"{layer} ({n})" for layer, n in summary["layers"].items())
    print(f"{visible(embedder.tagger.name)}: {summary['files']} file(s) -> {target}: {dims}")
    if earlier and earlier[1] != embedder.identity:  # one model's arrays per folder: say whose were replaced
        print(f"replaced the embeddings of {earlier[0]} (model id {earlier[1]}) that were in {target}; "
              f"they are still in its cache/ (rerun with that model), or use another --out per model")
    return 2 if failed else 0
