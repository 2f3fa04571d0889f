"""One training run: one readable loop.

Phases per epoch: train (Adam, BCE on logits, autocast), validate (ROC-AUC / PR-AUC), schedule (lr
halved on a validation plateau), checkpoint (atomic, as often as `CheckpointPolicy` says), stop early
when validation ROC-AUC has not improved for `patience` epochs. The test split is evaluated once, at
the end, with the best-validation weights.

The mel is computed here, on the training device, per batch, from cached waveforms. VGG sees whole
clips; MusiCNN a random segment per clip per epoch in training (only that segment's frames are
computed) and every non-overlapping segment in evaluation (a clip's scores are the mean of its
segments' sigmoids).

No host synchronisation inside the step loop: the loss is summed on the device and checked for
finiteness every `FINITE_CHECK_STEPS` steps and at the end of the epoch (a NaN still fails the run,
naming the epoch and the steps); evaluation scores stay on the device until the split is done.

Determinism: the data order and the training segments of epoch e come from generators seeded with
(seed, e), and the checkpoint carries the global RNG states (CPU and CUDA), so a run resumed from its
checkpoint follows the same path as one that never stopped (on the CPU).

Crash safety: checkpoint.pt is written (atomically) first, then best.pt, `{"epoch", "model"}`, when it
does not yet hold the best epoch so far; between checkpoints the best weights are kept in memory.
A kill between the two leaves a checkpoint whose best epoch is its own, or which carries the best
weights as `best_model`, so the best weights are in the checkpoint and best.pt is rewritten from it
on resume. A kill between checkpoints loses the
epochs since the last one, and the run resumes from there. A checkpoint or best.pt that cannot be
loaded (corrupt, truncated, not this run's, or holding anything but tensors and plain containers) is
set aside as `*.rejected` and the run restarts from scratch.

history.jsonl holds one JSON line per finished epoch, appended as the run trains (`tail -f` it); on
a resume it is rewritten to the epochs the checkpoint holds, so it is always the run's true history.
Ctrl-C stops the run with `Interrupted`, saying the epoch a rerun resumes from.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import random
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

import architectures
from architectures import InputConfig
from bench.core.errors import Interrupted, UserError, is_job_stop, resume_hint
from bench.core.interrupts import interrupts_deferred, stop_if_interrupt_lost
from bench.core.layout import BEST, CHECKPOINT, HISTORY  # noqa: F401 - re-exported
from bench.core.machine import available_host_bytes, usable_cpus
from bench.core.store import append_line, atomic_write_text, reject
from bench.data.cached_waveforms import CachedWaveforms
from bench.data.index import has_roc_auc, no_roc_auc
from bench.data.views import (
    ClipDataset,
    ReadBatches,
    epoch_order,
    eval_segments,
    full_batches,
    pad_frames,
    resident_waveforms,
    segment_mean,
)
from bench.spec import RunSpec
from bench.train.checkpoint import (  # noqa: F401 - re-exported: the loop's checkpoint API
    CHECKPOINT_KEYS,
    CheckpointPolicy,
    InvalidCheckpoint,
    load_torch,
    read_best,
    read_checkpoint,
    resume_state,
    save_torch,
)
from bench.train.devices import why_no_cuda
from bench.train.fastpath import (
    FastPath,
    RecompileWatch,
    between_phases,
    cuda_batch_problem,
    eval_batch_size,
    fast_path,
    planned_steps,
    resident_fits,
    sync,
)
from bench.train.frontend import MelFrontend
from bench.train.metrics import tag_metrics


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or inf, or fp16 loss scaling skipped the steps of inf or NaN
    gradients until the weights stood still: the run is recorded as failed."""


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda if available, else cpu; asking for cuda without one is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        reason = why_no_cuda()
        raise UserError(f"--device cuda: no CUDA device is available{': ' + reason if reason else ''} "
                        "(use --device cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device must be auto, cpu or cuda, not {name!r}")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def forward(model: nn.Module, path: FastPath, mel: torch.Tensor) -> torch.Tensor:
    """Logits (float32) of a (B, n_mels, frames) mel batch, executed as `path` says. Each call is a step
    of CUDA graphs where the path replays them: callers use the logits before the next call."""
    path.begin_step()
    with path.autocast():
        return model(path.prepare_input(mel)).float()


def make_optimizer(model: nn.Module, path: FastPath, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam as the fast path says: the fused multi-tensor kernel on CUDA (one launch per step)."""
    fused = {"fused": True} if path.fused_adam else {}
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, **fused)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict, path: FastPath) -> None:
    """A checkpoint's Adam state, executed as this run's fast path says. `load_state_dict` restores the
    saved groups' `fused` flag too: a checkpoint written on CUDA (fused) and resumed on the CPU, or the
    other way round, would step with the other device's kernel (with fp16 loss scaling, a fused flag
    lost fails the first step). And it keeps the saved states' memory layout, while fused Adam assumes
    each state has its parameter's strides (channels_last on CUDA, not always on the CPU)."""
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        group["fused"] = True if path.fused_adam else None
        group["foreach"] = None
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if not torch.is_tensor(value):
                    continue
                if key == "step" and path.fused_adam:  # fused Adam keeps its step count on the device
                    optimizer.state[param][key] = value.to(dtype=torch.float32, device=param.device)
                elif value.shape == param.shape and value.stride() != param.stride():
                    optimizer.state[param][key] = torch.empty_like(param).copy_(value)


def run_peak_memory(device: torch.device, resident_bytes: int, reserved: bool = False) -> int | None:
    """The run's own peak of allocated CUDA memory (weights, optimiser state, activations, workspaces):
    the allocator's peak since the run started, less the worker's resident waveforms, which are
    allocated all the while but are not the run's (they are there for every run at that sample rate).
    With `reserved`, the peak the caching allocator held from the GPU instead: the allocated peak plus
    blocks cached but free at the time (training, evaluation and last-batch shapes that cannot reuse
    each other's blocks), what the run took from the GPU's memory that other runs share."""
    if device.type != "cuda":
        return None
    peak = torch.cuda.max_memory_reserved(device) if reserved else torch.cuda.max_memory_allocated(device)
    return max(0, peak - resident_bytes)


def optimizer_steps(optimizer: torch.optim.Optimizer) -> int:
    """Steps the optimiser has taken: Adam's step count, which the steps fp16 loss scaling skipped (inf
    or NaN gradients) do not advance. One host sync where fused Adam keeps the counts on the GPU."""
    counts = [torch.as_tensor(state["step"], dtype=torch.float64) for state in optimizer.state.values()
              if "step" in state]
    return int(torch.stack([c.to(counts[0].device) for c in counts]).max()) if counts else 0


def optimise(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
    """One optimiser step on `loss` (loss scaling only where fp16 needs it)."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


FINITE_CHECK_STEPS = 50
"""Training steps between two checks of the summed loss for NaN / inf (each check syncs the host)."""

LOSS_SCALE_FLOOR = 2.0**-16
"""fp16 loss scaling halves its scale (from 2^16) at each step it skips for inf or NaN gradients and
doubles it after 2,000 good ones: at this floor it has skipped at least 32 more than it grew, which
calibration never needs (the loss, computed in float32, stays finite while the weights stand still)."""


class Trainer:
    """Everything one run needs: data, front end, model, optimiser, schedule, device settings."""

    def __init__(self, run: RunSpec, cache: CachedWaveforms, device: torch.device, log: Callable = print):
        self.run = run
        self.protocol = run.protocol
        self.device = device
        self.log = log
        self.tag_names = cache.index.tag_names
        mel = run.mel
        n_frames = mel.n_frames(run.dataset.clip_seconds)
        seed_everything(run.seed)
        self.data = {split: ClipDataset(cache, split) for split in ("train", "valid", "test")}
        for split, dataset in self.data.items():
            if len(dataset) == 0:
                raise UserError(f"the {split} split has no decodable clips")
        for split in ("valid", "test"):  # else the run would fail at its first validation, or after its last epoch
            targets = self.data[split].targets.numpy()
            if not has_roc_auc(targets.sum(axis=0), len(targets)).any():
                raise UserError(no_roc_auc(split, f"{len(targets):,} decodable clip{'s' if len(targets) != 1 else ''}"))
        fewest = architectures.min_train_batch(run.arch, mel.input_config(run.dataset.clip_seconds),
                                               **dataclasses.asdict(run.configuration.options))
        if len(self.data["train"]) < fewest:  # a split smaller than a batch is one batch of all its clips
            raise UserError(f"the train split has {len(self.data['train'])} decodable clip(s); {run.arch} trains on "
                            f"batches of at least {fewest} here (a BatchNorm in it normalises one value per clip)")
        steps = planned_steps(len(self.data["train"]), self.protocol.max_epochs, self.protocol.batch_size)
        self.path = fast_path(device, self.protocol.precision, steps, run.arch)
        problem = cuda_batch_problem(run) if device.type == "cuda" else None
        if problem:  # before anything is on the GPU: such a batch fails with an illegal memory access
            raise UserError(problem)
        if self.path.compile_note:
            log(f"  {self.path.compile_note}")
        self.frontend = MelFrontend.from_config(mel).to(device)
        config = InputConfig(mel.sample_rate, mel.n_mels, mel.hop_multiplier, n_frames)
        model = architectures.build(run.arch, config, len(self.tag_names),
                                    **dataclasses.asdict(run.configuration.options)).to(device)
        self.model = self.path.prepare_model(model)
        self.eval_batch = eval_batch_size(run, self.path)
        self.amp_dtype = self.path.torch_amp_dtype
        self.dtype_name = self.path.amp_dtype or "float32"  # as result.json and the history name it
        # fp16 (CUDA without bf16) needs loss scaling; bf16 and fp32 do not
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.optimizer = make_optimizer(self.model, self.path, self.protocol.lr, self.protocol.weight_decay)
        # eps 0: torch's default (1e-8) skips any cut of less than 1e-8, so a spec's lr of 2e-8 or less was
        # never halved, nor the default 1e-3 after 16 halvings
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="max", factor=self.protocol.lr_factor, patience=self.protocol.lr_patience - 1,
            eps=0.0)
        self.loss_fn = nn.BCEWithLogitsLoss()
        resident = resident_waveforms(cache, device, lambda n, reusable: resident_fits(n, device, reusable))
        self.resident = {split: resident.split(d) for split, d in self.data.items()} if resident else None
        self.resident_bytes = resident.nbytes if resident else 0
        self.readers: dict[tuple[str, int], ReadBatches] = {}
        self.recompiles = RecompileWatch()

    # ---------------------------------------------------------------------------------------
    # batches

    def _forward(self, mel: torch.Tensor) -> torch.Tensor:
        return forward(self.model, self.path, mel)

    def close_readers(self) -> None:
        """End the readers' threads and let go of their pinned buffers once the run has read its splits for the
        last time (they would be held through the latency measurement, and until the trainer is collected)."""
        for reader in self.readers.values():
            reader.close()
        self.readers.clear()

    def _batches(self, split: str, order: torch.Tensor, batch_size: int):
        """(waveform, target) batches of a split in `order`: from the device-resident copy, or read
        from the cache by the split's reader (`ReadBatches`). Waveforms are float16, as cached."""
        if self.resident is not None:
            yield from self.resident[split].batches(batch_size, order)
            return
        key = (split, batch_size)
        if key not in self.readers:
            self.readers[key] = ReadBatches(self.data[split], batch_size, self.device)
        yield from self.readers[key].batches(order)

    def _training_mel(self, wave: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The mel the network trains on: the whole clip (VGG), or for MusiCNN one random segment per
        clip, of which only the frames are computed (the start is drawn as it always was)."""
        with torch.no_grad():
            if self.model.segments is None:
                return self.frontend(wave)
            segment, frames = self.model.input_frames, self.frontend.n_frames(wave.shape[-1])
            if frames <= segment:
                return pad_frames(self.frontend(wave), segment)
            starts = torch.randint(0, frames - segment + 1, (len(wave),), generator=generator)
            return self.frontend.frames(wave, starts, segment)

    def train_epoch(self, epoch: int) -> tuple[float, int, int]:
        """One pass over the training split (full batches only); returns (mean loss, clips seen, steps
        that fp16 loss scaling skipped for inf or NaN gradients)."""
        self.model.train()
        between_phases(self.device)
        scaling = self.scaler.is_enabled()  # without it every step is taken: no count, no sync
        taken = optimizer_steps(self.optimizer) if scaling else 0
        generator = _generator(self.run.seed, epoch)
        order = full_batches(epoch_order(len(self.data["train"]), True, generator), self.protocol.batch_size)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        checked = 0
        with self.recompiles:
            for step, (wave, target) in enumerate(self._batches("train", order, self.protocol.batch_size)):
                stop_if_interrupt_lost()
                loss = self.loss_fn(self._forward(self._training_mel(wave, generator)), target)
                optimise(loss, self.optimizer, self.scaler)
                total += loss.detach().double() * len(wave)
                if (step + 1) % FINITE_CHECK_STEPS == 0:
                    self._check_finite(total, epoch, checked, step)
                    checked = step + 1
        steps = math.ceil(len(order) / self.protocol.batch_size)
        self._check_finite(total, epoch, checked, steps - 1)
        skipped = steps - (optimizer_steps(self.optimizer) - taken) if scaling else 0
        return total.item() / len(order), len(order), skipped

    def _check_finite(self, total: torch.Tensor, epoch: int, first: int, last: int) -> None:
        steps = f"step {last}" if first == last else f"steps {first}-{last}"
        if not torch.isfinite(total):
            raise NonFiniteLoss(f"training loss became {total.item()} at epoch {epoch} ({steps})")
        if self.scaler.is_enabled() and self.scaler.get_scale() <= LOSS_SCALE_FLOOR:
            raise NonFiniteLoss(f"fp16 loss scaling skipped step after step for inf or NaN gradients at epoch "
                                f"{epoch} ({steps}; its scale fell to {self.scaler.get_scale():.3g}): the weights "
                                f"no longer change; train with precision = \"fp32\"")

    def check_trained(self) -> None:
        """A run whose every step fp16 loss scaling skipped, too few to bring its scale to the floor,
        has weights that never changed: not a result."""
        if self.scaler.is_enabled() and optimizer_steps(self.optimizer) == 0:
            raise NonFiniteLoss("fp16 loss scaling skipped every training step for inf or NaN gradients: the "
                                "weights never changed; train with precision = \"fp32\"")

    @torch.no_grad()
    def predict(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Clip-level sigmoid scores and targets of a split (no autograd; segment means for MusiCNN).

        Scores stay on the device until the split is done (one copy to the host). A compiled model gets
        a last batch padded to full size, so evaluation needs one graph."""
        self.model.eval()
        between_phases(self.device)
        batch_size = self.eval_batch
        scores = []
        with self.recompiles:
            for wave, _target in self._batches(split, epoch_order(len(self.data[split]), False), batch_size):
                stop_if_interrupt_lost()
                n = len(wave)
                if self.path.compile and n < batch_size:
                    wave = torch.cat([wave, wave.new_zeros((batch_size - n, wave.shape[1]))])
                mel = self.frontend(wave)
                if self.model.segments is not None:
                    segments, n_segments = eval_segments(mel, self.model.input_frames)
                    clip_scores = segment_mean(torch.sigmoid(self._forward(segments)), n_segments)
                else:
                    clip_scores = torch.sigmoid(self._forward(mel))
                scores.append(clip_scores[:n])
        return self.data[split].targets.numpy(), torch.cat(scores).float().cpu().numpy()

    def evaluate(self, split: str) -> dict:
        y_true, y_score = self.predict(split)
        if not np.isfinite(y_score).all():
            raise NonFiniteLoss(f"the model produced non-finite scores on the {split} split")
        return tag_metrics(y_true, y_score, self.tag_names)

    def compiled_so_far(self) -> bool:
        """Whether this process's epochs so far trained compiled (a recompile-limit hit means not all)."""
        return self.path.compile and not self.recompiles.hits

    def execution(self, history: list[dict]) -> dict:
        """How the run was executed, for result.json: the fast path, whether the waveforms were
        resident, and whether compilation really held for every epoch (recompile-limit hits, or epochs
        trained before a resume by a process that compiled otherwise, mean it did not)."""
        hits = len(self.recompiles.hits)
        if hits:
            self.log(f"  torch.compile hit the recompile limit {hits} time(s): parts of the run trained uncompiled")
        # an epoch of an earlier version's checkpoint says nothing: taken as this process compiled
        compiled_epochs = sum(bool(h.get("compiled", self.compiled_so_far())) for h in history)
        dtypes = self.trained_dtypes(history)
        return {**self.path.as_dict(), "eval_batch": self.eval_batch, "amp_dtype": "+".join(dtypes),
                "resident_data": self.resident is not None,
                "recompile_limit_hits": hits, "compiled": not hits and compiled_epochs == len(history),
                "compiled_epochs": compiled_epochs, "loss_scaling": "float16" in dtypes}

    def trained_dtypes(self, history: list[dict]) -> list[str]:
        """The autocast dtypes the epochs trained in, in order of first use (several where a resume on
        another kind of device changed it; an epoch of an earlier version's checkpoint: this process's)."""
        return list(dict.fromkeys(h.get("amp_dtype", self.dtype_name) for h in history)) or [self.dtype_name]

    # ---------------------------------------------------------------------------------------
    # checkpoints

    def state(self, epoch: int, best: dict, history: list) -> dict:
        state = {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best": best,
            "history": history,
            "torch_rng": torch.get_rng_state(),
            "run_id": self.run.run_id,
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        load_optimizer_state(self.optimizer, state["optimizer"], self.path)
        self.scheduler.load_state_dict(state["scheduler"])
        self.scheduler.eps = 0.0  # loaded with the rest: an earlier version's checkpoint holds torch's 1e-8
        if state["scaler"]:  # empty where the checkpoint's process trained without loss scaling
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)


def served_inference(run: RunSpec, state: dict, n_tags: int, frontend: nn.Module, device: torch.device) -> dict:
    """Latency and throughput of the trained network as it would serve (`bench.train.latency`): a fresh
    fp32 copy with the best weights, uncompiled, in the default memory layout, on the run's device.

    The fp32 batch of the throughput pass can need more memory than training did (the estimate that
    set the runs per GPU), with the trainer still resident: out of memory, the batch is halved (the
    result records the batch measured) rather than failing a run whose training is done."""
    from bench.core import framing
    from bench.train import latency

    mel = run.mel
    options, config = dataclasses.asdict(run.configuration.options), mel.input_config(run.dataset.clip_seconds)
    model = architectures.build(run.arch, config, n_tags, **options)
    model.load_state_dict(state)
    model = model.to(device)
    samples = framing.clip_samples(run.dataset.clip_seconds, mel.sample_rate)
    batch = latency.served_batch(run.arch, config, n_tags, options,
                                 available_host_bytes() if device.type == "cpu" else None)
    return {**latency.measure_fitting(model, frontend, samples, device, batch,
                                      tf32=latency.served_tf32(run.protocol.precision)), "device": str(device)}


def train_run(run: RunSpec, cache: CachedWaveforms, run_dir: Path, device: torch.device,
              log: Callable = print, epoch_log: Callable | None = None, execution: dict | None = None) -> dict:
    """Train (or resume) one run in `run_dir`; returns its metrics, timings and history.

    `log` gets what happened to the run's files; `epoch_log` (default `log`) the line per epoch.
    `execution` says what runs it (its start, host, git commit and versions: `bench.run.runner`); the
    checkpoint keeps it with the epoch it started at, and the result lists every one as `executions`.
    Ctrl-C raises `Interrupted` naming the epoch a rerun resumes from."""
    # the epoch checkpoint.pt holds, once known; whether that is the last (training over); whether the run
    # compiled (what freeing it takes); the torch threads to restore where a resumed run took its earlier ones
    checkpointed = {"epoch": None, "compiled": False, "trained": False, "threads": None}
    try:  # the outer handler takes a Ctrl-C met while the run's memory is freed too
        try:
            return _train_run(run, cache, run_dir, device, log, epoch_log or log, checkpointed, execution or {})
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            # a failed run (a NaN loss, out of memory): the traceback holds the finished frames of the run,
            # and through their locals the model, its optimiser state and the batches; cleared, they are
            # freed below like a finished run's, not once the worker's next run has started on the GPU
            traceback.clear_frames(exc.__traceback__)
            raise
        finally:
            release_run_memory(device, checkpointed["compiled"])
            if checkpointed["threads"] is not None:
                torch.set_num_threads(checkpointed["threads"])
    except Interrupted:
        raise
    except KeyboardInterrupt:
        epoch = checkpointed["epoch"]
        if epoch is None and not (run_dir / CHECKPOINT).exists():  # stopped while the run was set up
            epoch = 0
        raise Interrupted(resume_hint(run.run_id, None if epoch is None else epoch + 1,
                                      checkpointed["trained"])) from None


def resumed_threads(history: list[dict], device: torch.device, log: Callable) -> int | None:
    """The torch threads a resumed run trains the rest of its epochs on, where not this process's: on
    the CPU a step's sums depend on the thread count, and a rerun can have another (the grid's workers
    fewer as runs finish, which gives each more; another OMP_NUM_THREADS). The earlier epochs' count,
    where this process may use that many CPUs, so that the run ends as it would have without the stop."""
    earlier = history[-1].get("torch_threads") if history else None
    now = torch.get_num_threads()
    if device.type != "cpu" or earlier is None or earlier == now:
        return None
    if earlier <= usable_cpus():
        log(f"  its earlier epochs trained on {earlier} torch thread(s): so does the rest of it (this process "
            f"has {now}), as it would have without the stop")
        return earlier
    log(f"  its earlier epochs trained on {earlier} torch threads, more CPUs than this process may use: the rest "
        f"trains on {now}, so its results can differ from an uninterrupted run's (result.json's history names "
        "each epoch's)")
    return None


EARLIER_RELEASE = {"from_epoch": 1}
"""The execution a resumed checkpoint written before executions were recorded stands for: its code is not
known, only that it was not this (a resume of it said nothing of the code it ran under)."""


def changed_code(earlier: list[dict], now: dict) -> list[str]:
    """What differs between the execution that trained a resumed run's last epochs and this one: the git
    commit, the code itself where the commit does not say (an installed copy has none, and `-dirty` does
    not say which changes; its `code_sha256`, shortened) and the versions of the suite and of torch,
    e.g. ["git commit 1a2b3c4 (now 5d6e7f8)"]."""
    if not earlier or not now:
        return []
    before = earlier[-1]
    if not any(before.get(name) for name in ("git_commit", "code_sha256", "versions")):  # `EARLIER_RELEASE`
        return ["the code of an earlier release, which its checkpoint does not name"]
    commits = before.get("git_commit"), now.get("git_commit")
    if None not in commits and commits[0] != commits[1]:
        pairs = [("git commit", *commits)]
    else:  # the same commit, or one unknown (an installed copy; a node without git): the code says
        pairs = [("code", *((execution.get("code_sha256") or "")[:12] or None for execution in (before, now)))]
    pairs += [(name, before.get("versions", {}).get(name), version)
              for name, version in now.get("versions", {}).items()]
    return [f"{name} {was} (now {is_now})" for name, was, is_now in pairs
            if None not in (was, is_now) and was != is_now]


def release_run_memory(device: torch.device, compiled: bool) -> None:
    """Free a finished run's tensors now: the worker's next run must not find its weights, gradients
    and optimiser state still on the GPU (in its peak, and as memory the free-memory rule cannot use).
    A compiled model is held by dynamo's caches until they are reset, and sits in a reference cycle
    (the module, its compiled call, a method bound to the module) that only the collector frees; an
    eager one is freed when the run returns (a full collection costs ~0.3 s, so only when needed)."""
    if compiled:
        torch._dynamo.reset()
        gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _history_line(record: dict) -> str:
    return json.dumps(record) + "\n"


def _train_run(run: RunSpec, cache: CachedWaveforms, run_dir: Path, device: torch.device, log: Callable,
               epoch_log: Callable, checkpointed: dict, execution: dict) -> dict:
    protocol = run.protocol
    checkpoint = run_dir / CHECKPOINT
    history: list[dict] = []
    best = {"roc_auc": -math.inf, "epoch": 0}
    start_epoch = 1
    state = resume_state(run_dir, run.run_id, log)
    trainer = Trainer(run, cache, device, log)
    checkpointed["compiled"] = trainer.path.compile
    if state is not None:
        unfit = None
        try:
            trainer.load(state)
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:  # e.g. weights of another shape
            if is_job_stop(exc):
                raise
            unfit = type(exc).__name__
        if unfit:  # out of the except block, whose traceback holds the trainer
            log(f"{checkpoint}: does not fit this run ({unfit}); set aside as {reject(checkpoint).name}, "
                f"the run starts from scratch")
            # the half-loaded trainer goes before its replacement is built: a compiled model sits in
            # reference cycles, and its weights and optimiser state would share the GPU with the new ones
            trainer.close_readers()
            state = trainer = None
            gc.collect()
            trainer = Trainer(run, cache, device, log)
    if device.type == "cuda":
        # the run's own peak from here: not that of the worker's earlier runs, nor the worker's
        # waveforms of another sample rate, which building the trainer released
        torch.cuda.reset_peak_memory_stats(device)
    if state is not None:
        history, best, start_epoch = state["history"], state["best"], state["epoch"] + 1
        log(f"resuming {run.run_id} after epoch {state['epoch']}")
        trained_in = trainer.trained_dtypes(history)
        if trained_in != [trainer.dtype_name]:
            log(f"  its earlier epochs trained in {' and '.join(trained_in)}; any epoch left trains in "
                f"{trainer.dtype_name} (result.json's amp_dtype names each)")
        before = {h["compiled"] for h in history if "compiled" in h}
        if before and before != {trainer.path.compile}:
            earlier = "partly compiled" if len(before) > 1 else "compiled" if True in before else "eager"
            log(f"  its earlier epochs trained {earlier}; any epoch left trains "
                f"{'compiled' if trainer.path.compile else 'eager'} (result.json's compiled_epochs counts them)")
        # a checkpoint of an earlier release names no execution: only the epoch it started at is known
        earlier_executions = state.get("executions") or [EARLIER_RELEASE]
        changed = changed_code(earlier_executions, execution)
        if changed:
            log(f"  its earlier epochs ran with {', '.join(changed)}; the rest runs with this code "
                "(result.json's provenance.executions names each)")
        threads = resumed_threads(history, device, log)
        if threads is not None:
            checkpointed["threads"] = torch.get_num_threads()
            torch.set_num_threads(threads)
    executions = [*(earlier_executions if state is not None else []), {**execution, "from_epoch": start_epoch}]

    policy = CheckpointPolicy()
    saved = {"epoch": start_epoch - 1, "best": best["epoch"]}  # what checkpoint.pt and best.pt hold
    checkpointed["epoch"] = saved["epoch"]
    atomic_write_text(run_dir / HISTORY, "".join(map(_history_line, history)))
    best_weights = None  # the best epoch's weights while best.pt does not hold them yet

    def save(epoch: int, last: bool = False) -> None:
        started = time.perf_counter()
        state = trainer.state(epoch, best, history)
        state["executions"] = executions
        if best["epoch"] not in (saved["best"], epoch):  # the checkpoint carries them until best.pt does
            state["best_model"] = best_weights
        # the checkpoint and the record of the epoch it holds are one step for Ctrl-C (and SIGTERM): one
        # between them would name a rerun that starts again the run whose checkpoint.pt is written
        with interrupts_deferred():
            save_torch(checkpoint, state)
            # what a rerun resumes from from here on, also if best.pt's write below is interrupted
            checkpointed.update(epoch=epoch, trained=last)
        if best["epoch"] != saved["best"]:  # after the checkpoint: see the module docstring
            save_torch(run_dir / BEST, {"epoch": best["epoch"], "model": best_weights})
        saved.update(epoch=epoch, best=best["epoch"])
        policy.written(started, time.perf_counter())

    for epoch in range(start_epoch, protocol.max_epochs + 1):
        if epoch - best["epoch"] > protocol.patience and best["epoch"] > 0:
            break
        sync(device)
        t0 = time.perf_counter()
        loss, seen, skipped = trainer.train_epoch(epoch)
        sync(device)
        t1 = time.perf_counter()
        valid = trainer.evaluate("valid")
        t2 = time.perf_counter()
        lr = trainer.optimizer.param_groups[0]["lr"]  # the rate this epoch trained with
        trainer.scheduler.step(valid["roc_auc"])
        record = {"epoch": epoch, "loss": loss, "valid_roc_auc": valid["roc_auc"], "valid_pr_auc": valid["pr_auc"],
                  "lr": lr, "train_seconds": t1 - t0,
                  "eval_seconds": t2 - t1, "clips": seen, "compiled": trainer.compiled_so_far(),
                  "amp_dtype": trainer.dtype_name, "skipped_steps": skipped, "torch_threads": torch.get_num_threads()}
        history.append(record)
        if valid["roc_auc"] > best["roc_auc"]:
            best = {"roc_auc": valid["roc_auc"], "epoch": epoch}
            best_weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        append_line(run_dir / HISTORY, _history_line(record))
        if policy.due(time.perf_counter()):
            save(epoch, last=epoch == protocol.max_epochs)
        epoch_log(f"  epoch {epoch:3d}/{protocol.max_epochs}  loss {loss:.4f}  valid roc_auc {valid['roc_auc']:.4f}  "
            f"pr_auc {valid['pr_auc']:.4f}  lr {record['lr']:.2g}  train {t1 - t0:.1f} s + valid {t2 - t1:.1f} s")
    if history and saved["epoch"] != history[-1]["epoch"]:
        save(history[-1]["epoch"], last=True)
    checkpointed["trained"] = True  # the checkpoint holds the last epoch: a rerun goes straight to the test
    if not history or history[-1]["epoch"] < start_epoch:  # this execution trained no epoch: the test only
        executions[-1]["from_epoch"] = None
    trainer.check_trained()

    best_state = read_best(run_dir / BEST, best["epoch"])
    trainer.model.load_state_dict(best_state)
    t0 = time.perf_counter()
    test = trainer.evaluate("test")
    test_seconds = time.perf_counter() - t0
    trainer.close_readers()
    train_seconds = sum(h["train_seconds"] for h in history)
    inference = served_inference(run, best_state, len(trainer.tag_names), trainer.frontend, device)
    execution = trainer.execution(history)
    return {
        "inference": inference,
        "test": test,
        "best_valid": best,
        "history": history,
        "epochs": len(history),
        "train_seconds": train_seconds,
        "eval_seconds": sum(h["eval_seconds"] for h in history) + test_seconds,
        "clips_per_second": sum(h["clips"] for h in history) / train_seconds if train_seconds else None,
        "amp_dtype": execution["amp_dtype"],
        "fast_path": execution,
        "peak_memory_bytes": run_peak_memory(device, trainer.resident_bytes),
        "peak_reserved_bytes": run_peak_memory(device, trainer.resident_bytes, reserved=True),
        "n_tags": len(trainer.tag_names),
        "tag_names": list(trainer.tag_names),
        "input_frames": trainer.model.input_frames,
        "clips": {split: len(d) for split, d in trainer.data.items()},
        "executions": executions,
        "torch_threads": torch.get_num_threads(),
    }
