"""Command-line interface. User errors: one line on stderr, exit status 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from architectures import BuilderError
from bench.core.arguments import EXIT_USER_ERROR, Parser
from bench.core.errors import (
    RERUN_TO_CONTINUE,
    Interrupted,
    UserError,
    is_host_out_of_memory,
    is_out_of_memory,
    one_line,
)
from bench.core.output import discard_if_closed, open_closed_standard_streams, set_up_standard_output
from bench.core.paths import folder_path, readable_folder, writable_file, writable_folder
from bench.core.store import (
    DESCRIPTOR_LIMIT_ERRNOS,
    FAILING_STORAGE_ERRNOS,
    PROCESS_LIMIT_ERRNOS,
    CompileCacheError,
    is_misplaced,
    is_resource_error,
    json_text,
)

EXIT_INTERRUPTED = 130
"""128 + SIGINT, what shells and make expect of a program stopped by Ctrl-C."""
EXIT_TERMINATED = 143
"""128 + SIGTERM, of a program stopped by `kill`, `docker stop` or Slurm's `scancel`."""
DISTRIBUTION = "mel-resolution-bench"
"""The name on PyPI (`bench` there is an unrelated project); the import package and command are `bench`."""


DATA_HELP = "dataset root (default: the spec's dataset.path; a relative path is taken from the working directory)"
CACHE_HELP = "waveform cache root (default $BENCH_CACHE, else ./cache in the working directory)"
MODELS_HELP = "(default $BENCH_MODELS, else $XDG_DATA_HOME/bench/models, usually ~/.local/share/bench/models)"


def _named_file(exc: OSError) -> tuple[str | bytes | None, str]:
    """(the file an error is about, "<file>: " or ""): a rename's target, not the temporary file it came from."""
    target = exc.filename2 or exc.filename
    return target, f"{os.fsdecode(target)}: " if target else ""


def misplaced_message(exc: OSError) -> str | None:
    """A folder where the suite keeps a file, or a file where it keeps a folder (a copy gone wrong, a
    name taken by hand: `bench.core.store.is_misplaced`), said as what to do about it; None for other errors."""
    import errno

    if not is_misplaced(exc):
        return None
    target, where = _named_file(exc)
    if exc.errno == errno.EISDIR:
        return f"{where}a folder where a file belongs; move it aside, then rerun"
    return f"{where}a file stands where a folder belongs on this path; move it aside, then rerun"


def resource_message(exc: OSError, command: str = "grid", launcher: str = "local") -> str:
    """A full disk, a quota, a read-only or forbidden folder, a failing file system, a process limit,
    said as what to do about it in `command` (the folders to choose and what a rerun keeps are a grid's
    `--results` and `--cache` and its runs only where the command has them). Under Slurm (`launcher`) a
    process limit is a job's, whose memory is --mem-gb: fewer jobs would not change it."""
    import errno

    target, where = _named_file(exc)
    what = exc.strerror or exc.__class__.__name__
    runs = command in RUNS_COMMANDS
    grid = command == "grid"  # `bench prepare` has --cache and --workers, no --results and no runs
    resumes = ("then rerun (finished runs are kept, interrupted ones resume)" if grid
               else "then rerun (what it finished is kept)" if command in KEEPS_FINISHED_WORK else "then rerun")
    folders = "--results / --cache folder" if grid else "--cache folder" if runs else "folder"
    slurm = grid and launcher == "slurm"
    fewer = "" if slurm or not runs else " or run fewer --workers"
    if isinstance(exc, CompileCacheError):  # torch.compile's own folder: --results and --cache do not move it
        fix = {errno.EFBIG: "raise the file-size limit (`ulimit -f`)", errno.EROFS: "make it writable",
               errno.EACCES: "change its permissions", errno.EPERM: "change its permissions"}.get(
            exc.errno, "free some space there")
        return (f"torch.compile could not write {where}{what}; {fix}, or set TORCHINDUCTOR_CACHE_DIR to another "
                f"folder (BENCH_COMPILE=0 trains without compiling), {resumes}")
    if exc.errno in FAILING_STORAGE_ERRNOS:
        return f"{where}{what}: the disk or network file system failed; check it (remount a stale NFS mount), {resumes}"
    if exc.errno in DESCRIPTOR_LIMIT_ERRNOS:
        nodes = " on the compute nodes (e.g. `ulimit -n 4096` in the job's environment)" if slurm else \
            " (e.g. `ulimit -n 4096`)"
        return f"{where}{what}; raise the open-file limit{nodes}{fewer}, {resumes}"
    if exc.errno in PROCESS_LIMIT_ERRNOS:
        advice = ("give each job more memory (--mem-gb GB)" if slurm
                  else "run fewer --workers (or raise `ulimit -u`)" if runs else "raise `ulimit -u` or free memory")
        return f"{where}{what}: too little memory or too many processes; {advice}, {resumes}"
    if exc.errno == errno.ENAMETOOLONG:
        options = "--results / --cache / --data " if grid else "--cache / --data " if runs else ""
        return f"{where}{what}; choose a shorter {options}path, {resumes}"
    if exc.errno in (errno.EACCES, errno.EPERM) and target:  # reading is refused too: say which
        path = Path(os.fsdecode(target))
        if os.path.lexists(path) and not os.access(path, os.R_OK):
            if not os.access(path, os.W_OK):  # whether the read or a write failed, both need the permissions
                # (another folder would not help a file of the dataset's: only its permissions name the fix)
                return f"cannot read or write {where}{what}; change its permissions, then rerun"
            return f"cannot read {where}{what}; make it readable, then rerun"
        closed = next((folder for folder in path.parents if os.path.isdir(folder)), None)
        if closed is not None and not os.access(closed, os.X_OK):
            return (f"cannot reach {where}{what} (the folder {closed} cannot be entered); change its permissions, "
                    "then rerun")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = f"free some space and {resumes}"
    elif exc.errno == errno.EFBIG:  # FAT32/exFAT's 4 GiB, or `ulimit -f` (which Slurm passes on to jobs)
        advice = ("larger than this file system (e.g. FAT32) or the file-size limit (`ulimit -f`) allows: choose "
                  f"another {folders} or raise the limit, then rerun")
    else:
        advice = f"make it writable or choose another {folders}, then rerun"
    return f"cannot write {where}{what}; {advice}"


RUNS_COMMANDS = frozenset({"grid", "prepare"})
"""Commands with `--cache` and `--workers`, and `grid` with its runs and `--results` (what `resource_message`
advises)."""


def at_least(minimum: int):
    """An argparse type: an integer >= minimum (ranges are checked while parsing, before any work)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def within(field: str, parse):
    """An argparse type: `parse`, then the range a spec allows for `field` (bench.spec.LIMITS)."""

    def check(text: str):
        from bench.spec import LIMITS, format_limit

        value = parse(text)
        low, high = LIMITS[field]
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {format_limit(low)} and {format_limit(high)} "
                                             f"(as in a spec's {field}), "
                                             f"got {text}")
        return value

    return check


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def comma_list(text: str) -> tuple[str, ...]:
    """An argparse type: comma-separated names, each once, in order (spaces around them ignored)."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise argparse.ArgumentTypeError(f"expected names separated by commas, got {text!r}")
    return names


def _version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def cmd_plan(args: argparse.Namespace) -> int:
    import pandas as pd

    from bench.cost.plan import format_totals, grid_totals, plan_rows, plural, significant
    from bench.spec import load_spec, spec_warnings

    spec = load_spec(args.spec)
    if args.perf:  # given by name: it must be what `bench perf --out` wrote for this spec
        from bench.cost.plan import measured_projection

        if not Path(args.perf).is_file():
            raise UserError(f"--perf {args.perf}: no such file (`bench perf {args.spec} --out FILE` writes it)")
        if measured_projection(spec, args.perf) is None:
            raise UserError(f"--perf {args.perf}: not the JSON `bench perf --out` writes for spec {spec.name!r}")
    for warning in spec_warnings(spec):
        print(f"bench plan: warning: {warning}", file=sys.stderr)
    rows = plan_rows(spec, fvcore=not args.no_fvcore)
    if args.latency:
        add_latency(spec, rows, args.device)
    perf_json = args.perf or Path(args.results) / "perf" / f"{Path(args.spec).stem}.json"
    totals = grid_totals(spec, rows, perf_json)
    if args.format == "json":  # what the table leaves empty is null, the unsupported operators an object
        typed = [{k: (json.loads(v) if k == "fvcore_unsupported" and v else None if v == "" else v)
                  for k, v in row.items()} for row in rows]
        sys.stdout.write(json_text({"configurations": typed, "totals": totals}, indent=2))
        sys.stdout.write("\n")
    elif args.format == "csv":
        pd.DataFrame(rows).to_csv(sys.stdout, index=False)
    else:
        n_tags = totals["n_tags"]
        tags = f"{n_tags} tags" if n_tags else f"up to {spec.dataset.n_tags} tags (as many as its files list)"
        print(f"{spec.name}: {len(rows)} configurations x {plural(len(spec.seeds), 'seed')} = "
              f"{plural(len(spec.runs()), 'run')} ({spec.dataset.name}, {spec.dataset.clip_seconds:g} s clips, {tags})")
        table = pd.DataFrame(rows).drop(columns=["fvcore_unsupported"])
        for column in ("gmac", "gmac_analytic"):  # 5 significant figures, however small the network
            table[column] = [significant(v, 5) if v != "" else "" for v in table[column]]
        print(table.loc[:, (table != "").any(axis=0)].to_string(index=False))  # drop columns empty for this spec
        print("\n".join(format_totals(spec, totals)))
    return 0


def add_latency(spec, rows: list[dict], device_name: str) -> None:
    """`bench plan --latency`: each configuration's measured inference cost, untrained, on this device."""
    from bench.core.progress import progress_bar
    from bench.data.known import n_outputs
    from bench.train.devices import warn_of_cpu_fallback
    from bench.train.latency import untrained_latency
    from bench.train.loop import resolve_device

    device = resolve_device(device_name)
    warn_of_cpu_fallback(device_name, device, "bench plan")
    n_tags = n_outputs(spec.dataset)
    with progress_bar(len(rows), f"latency on {device}", unit="configuration") as bar:
        for configuration, row in zip(spec.configurations(), rows, strict=True):
            try:
                measured = untrained_latency(configuration, spec.dataset.clip_seconds, n_tags, device,
                                             spec.protocol.precision)
            except Exception as exc:  # even one clip: halved down to it (`measure_fitting`)
                if not (is_out_of_memory(exc) or is_host_out_of_memory(exc)):
                    raise
                mel = configuration.mel
                raise UserError(f"{spec.path}: {configuration.arch} at {mel.sample_rate} Hz, {mel.n_mels} mels, hop "
                                f"x{mel.hop_multiplier}: one clip's inference does not fit in the memory of {device} "
                                f"({one_line(exc)[:200]})") from None
            row.update(latency_ms=round(measured["latency_ms"], 3),
                       network_latency_ms=round(measured["network_latency_ms"], 3),
                       clips_per_second_b64=round(measured["throughput_clips_per_second"], 1),
                       throughput_batch=measured["batch"])
            bar.update(1)


def cmd_synth(args: argparse.Namespace) -> int:
    from bench.data.datasets import generate_synthetic

    writable_folder(args.out, "--out")
    # says what it replaced: a folder of other clips (the demo's data/synthetic, say) is generated anew
    line = generate_synthetic(args.out, clips=args.clips, seed=args.seed, clip_seconds=args.seconds)
    print(line or f"the synthetic dataset in {args.out} is complete already ({args.clips} clips of "
                  f"{args.seconds:g} s, seed {args.seed}): nothing generated")
    for task in args.task or []:
        from bench.data.synthetic.tasks import write_task

        print(f"downstream task {task!r}: {write_task(args.out, task, args.clips, args.seed)}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from bench.run.grid import check_inputs
    from bench.run.prepare import prepare_spec
    from bench.spec import load_spec, spec_warnings

    spec = load_spec(args.spec)
    check_inputs(spec, args.data, None, args.cache, dry_run=False)
    for warning in spec_warnings(spec):  # an upsampled or mistyped rate is in its cache's every file
        print(f"bench prepare: warning: {warning}", file=sys.stderr)
    prepare_spec(spec, args.data, args.cache, args.workers, progress=not args.quiet)
    return 0


def _download_bar(total, description, initial=0):
    from bench.core.progress import progress_bar

    return progress_bar(total, description, unit="B", initial=initial, unit_scale=True)


def cmd_download(args: argparse.Namespace) -> int:
    from bench.data.download import JAMENDO_BASE_URL, MTAT_BASE_URL, download_jamendo, download_mtat

    if args.dataset == "mtat" and args.quality:  # MTAT has one quality: refused, not silently ignored
        raise UserError("--quality: only for jamendo (MagnaTagATune is published in one quality)")
    writable_folder(args.to, "--to")
    if args.dataset == "jamendo":
        root = download_jamendo(args.to, quality=args.quality or "low", base_url=args.base_url or JAMENDO_BASE_URL,
                                keep_archives=args.keep_archives, progress=_download_bar)
        print(f"MTG-Jamendo audio is ready in {root}; put the metadata repository's data/splits/ there as "
              f"splits/ and use it with --data {root}")
        return 0
    root = download_mtat(args.to, base_url=args.base_url or MTAT_BASE_URL, keep_archives=args.keep_archives,
                         progress=_download_bar)
    print(f"MagnaTagATune is ready in {root} (use it with --data {root})")
    return 0


def cmd_convert_msd(args: argparse.Namespace) -> int:
    from bench.data.manifest import write_manifest
    from bench.data.msd import read_msd

    writable_file(args.out, "--out", ".csv")
    index = read_msd(args.root)
    out = write_manifest(index, args.out)
    counts = index.counts()
    print(f"wrote {out} ({len(index.clips)} clips: train {counts['train']}, valid {counts['valid']}, "
          f"test {counts['test']}; {index.excluded_summary()})")
    return 0


def cmd_dataset(args: argparse.Namespace) -> int:
    from bench.data.inspect import format_report, inspect_spec
    from bench.spec import load_spec

    spec = load_spec(args.spec)
    report = inspect_spec(spec, args.data)
    if args.json:
        sys.stdout.write(json_text(report.as_json()))
        sys.stdout.write("\n")
    else:
        print(format_report(report, sys.stdout.encoding))
    if not report.can_run:
        raise UserError(f"{spec.path}: the grid cannot run on {report.root}: {'; '.join(report.blockers)}")
    return 0


def cmd_grid(args: argparse.Namespace) -> int:
    from bench.run.grid import GridOptions, SlurmOptions, gres_gpus, in_job_script, run_grid, slurm_arguments
    from bench.spec import load_spec

    if args.launcher != "slurm":  # options that only a Slurm submission uses: refused, not silently ignored
        given = [flag for flag, value in (("--partition", args.partition), ("--gpus", args.gpus),
                                          ("--mem-gb", args.mem_gb), ("--gpu-mem-gb", args.gpu_mem_gb),
                                          ("--slurm-arg", args.slurm_arg or None))
                 if value is not None]
        if given:
            raise UserError(f"{', '.join(given)}: only for --launcher slurm (this grid's launcher is "
                            f"{args.launcher}, which uses the GPUs this machine has)")
    # a job's time limit is submitit's; its CPUs Slurm's alone (submitit's local executor ignores them)
    refused = [flag for flag, value, allowed in (("--time", args.time, ("slurm", "submitit-local")),
                                                 ("--cpus", args.cpus, ("slurm",)))
               if value is not None and args.launcher not in allowed]
    if refused:
        where = {("--cpus",): "--launcher slurm", ("--time",): "--launcher slurm or submitit-local",
                 ("--time", "--cpus"): "--launcher slurm (--time also for submitit-local)"}[tuple(refused)]
        why = {"--time": "local workers have no time limit", "--cpus": "this machine's workers share its CPUs"}
        raise UserError(f"{', '.join(refused)}: only for {where}: {'; '.join(why[flag] for flag in refused)}")
    extra = slurm_arguments(args.slurm_arg, on_the_cpu=args.device == "cpu")
    if args.device == "cpu":  # GPU options: refused, not silently ignored (a gres would hold GPUs nothing uses)
        gres = dict(extra).get("gres")
        given = [flag for flag, value in (("--runs-per-gpu", args.runs_per_gpu), ("--gpus", args.gpus),
                                          ("--gpu-mem-gb", args.gpu_mem_gb),
                                          (f"--slurm-arg gres={gres}", gres_gpus(str(gres or ""))))
                 if value is not None]
        if given:
            raise UserError(f"{', '.join(given)}: only for GPUs (this grid runs on the CPU: --device cpu)")
    defaults = SlurmOptions()
    partition = args.partition and in_job_script(args.partition, "--partition")
    if args.launcher == "slurm":  # the job script names submitit's folder, under the results, and this Python
        in_job_script(os.path.abspath(args.results), "--results")
        in_job_script(sys.executable, "the Python interpreter")
    slurm = SlurmOptions(partition=partition, time_minutes=args.time or defaults.time_minutes,
                         gpus_per_job=args.gpus or defaults.gpus_per_job,
                         cpus_per_job=args.cpus or defaults.cpus_per_job, mem_gb=args.mem_gb,
                         gpu_mem_gb=args.gpu_mem_gb, extra=extra)
    options = GridOptions(data=args.data, results=args.results, cache=args.cache, device=args.device,
                          workers=args.workers, launcher=args.launcher, shard_text=args.shard, dry_run=args.dry_run,
                          retry_failed=args.retry_failed, slurm=slurm, runs_per_gpu=args.runs_per_gpu,
                          quiet=args.quiet)
    spec = load_spec(args.spec)  # read once: the grid and its report are of the spec as it was planned
    status = run_grid(spec, options)
    if not args.no_report and not args.dry_run:  # the grid, then the report of whatever is done
        from bench.core.layout import RESULT, RUNS, spec_dir
        from bench.report.report import cli_main

        folder = spec_dir(args.results, spec.name)
        if any(folder.glob(f"{RUNS}/*/{RESULT}")):
            cli_main(folder, _spec_runs(spec))
    return status


def _spec_runs(spec):
    """What the report needs of a spec: its path and the runs it names, with their config fields (as loaded:
    `bench grid`'s report is of the spec it planned, `bench report`'s of the file as it now stands)."""
    from architectures.options import width_of
    from bench.report.report import SpecRuns

    return SpecRuns(spec.path, {run.run_id: {
        "arch": run.arch, "width": width_of(run.configuration.options), "sample_rate": run.mel.sample_rate,
        "n_mels": run.mel.n_mels, "hop_multiplier": run.mel.hop_multiplier, "log": run.mel.log, "seed": run.seed,
        "dataset": run.dataset.name} for run in spec.runs()})


def cmd_status(args: argparse.Namespace) -> int:
    from bench.core.layout import spec_folder_problem
    from bench.run.status import format_status, grid_status
    from bench.spec import load_spec

    spec = load_spec(args.spec)
    results, _ = folder_path(args.results, "--results")  # an empty path, a file in the way: one line
    if results.exists():
        results = readable_folder(args.results, "--results")
        if problem := spec_folder_problem(results, spec.name):
            raise UserError(f"--results {results}: {problem}")
    else:  # no grid has written there yet (or a mistyped folder): every run is not started, and it says which
        print(f"bench status: --results {results}: no such folder yet: no run of it has started there",
              file=sys.stderr)
    status = grid_status(spec, results)
    if args.json:
        sys.stdout.write(json_text(status.as_json()))
        sys.stdout.write("\n")
    else:
        print(format_status(status, spec.protocol.max_epochs))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.core.layout import REPORT, RUNS, spec_folder_problem
    from bench.report.report import cli_main

    target, spec = Path(args.target), None
    if target.suffix == ".toml" or target.is_file():  # a spec: its results folder under --results
        from bench.spec import load_spec

        spec = load_spec(target)
        problem = spec_folder_problem(args.results, spec.name)
        if problem:  # `make report RESULTS=results/demo`: the spec's folder given for the one above it
            raise UserError(f"--results {args.results}: {problem}")
        target = Path(args.results) / spec.name
        if not target.exists():
            grid = f"bench grid {args.target}" + (f" --results {args.results}" if args.results != "results" else "")
            raise UserError(f"results folder {target}: no such folder; `{grid}` trains its runs there (give another "
                            "folder with --results)")
    folder = readable_folder(target, "results folder")
    if args.out is not None:
        out = writable_folder(args.out, "--out")
        if (folder / RUNS).resolve() in (out.resolve(), *out.resolve().parents):  # `runs` may be a link
            raise UserError(f"--out {args.out}: is inside the run folders of {folder}; give a folder outside "
                            f"{folder / RUNS}")
    else:  # an archive on read-only storage, another user's results: one line that says where else
        out = folder / REPORT
        try:
            if out.is_dir() or not out.exists():  # a file there: the report says what to move
                writable_folder(out, "results folder")
        except UserError as exc:
            raise UserError(f"{exc}; give --out DIR to write the report elsewhere") from None
    return cli_main(folder, spec and _spec_runs(spec), out)


def cmd_perf(args: argparse.Namespace) -> int:
    from bench.tools.gpucheck_common import paper_spec_path
    from bench.tools.perf import PerfSettings, cli_main

    if args.out is not None:
        writable_file(args.out, "--out", ".json")
    settings = PerfSettings(batch=args.batch, budget_seconds=args.budget, scaling_cases=args.scaling,
                            epochs=args.epochs, compile=not args.no_compile, bf16_peak_tflops=args.bf16_peak_tflops,
                            compile_modes=args.compile_modes)
    return cli_main(args.spec or str(paper_spec_path()), args.device, args.out, settings)


def cmd_import(args: argparse.Namespace) -> int:
    from bench.tools.pretrained import import_musicnn, models_dir

    writable_folder(models_dir(args.out), "--out")
    import_musicnn(args.source, args.out, args.model)
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    from bench.tools.tag import cli_main

    if args.png is not None:
        writable_file(args.png, "--png")
    return cli_main(args.audio, args.model, args.models, args.top, args.json, args.png, args.started)


def cmd_embed(args: argparse.Namespace) -> int:
    from bench.tools.embed import cli_main

    return cli_main(args.audio, args.manifest, args.model, args.models, args.out, args.per_patch, args.quiet)


def cmd_transfer(args: argparse.Namespace) -> int:
    from bench.tools.transfer import TransferSettings, run_transfer

    settings = TransferSettings(layer=args.layer, classifiers=("logreg", "mlp") if args.mlp else ("logreg",),
                                folds=args.folds, untrained=args.untrained)
    return run_transfer(args.models_or_spec, args.task, settings, results=args.results, out=args.out,
                        models=args.models, label_column=args.label_column, quiet=args.quiet)


def cmd_export(args: argparse.Namespace) -> int:
    from bench.tools.export import cli_main

    onnx = writable_file(args.onnx, "--onnx")
    writable_file(onnx.with_name(onnx.name + ".json"), "--onnx's description")  # written beside it
    return cli_main(args.model, args.onnx, args.models, args.with_frontend)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="bench",
        description="How much spectrogram resolution does a CNN music tagger need? "
        "Plan, train and report mel-spectrogram resolution grids.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("plan", help="list a spec's configurations with shapes and cost; no data, no training")
    p.add_argument("spec", metavar="SPEC", help="grid spec (TOML), e.g. specs/paper-mtat-vgg.toml")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--no-fvcore", action="store_true",
                   help="skip fvcore's measured GMAC (fast: analytic count and parameters only)")
    p.add_argument("--latency", action="store_true",
                   help="also measure each configuration's inference cost (untrained): ms per clip at batch 1, "
                   "front end included and network alone, and clips/s at batch 64 (median of 5 passes)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where --latency measures")
    p.add_argument("--perf", metavar="JSON", help="`bench perf --out` measurements for the projected device-hours "
                   "(default RESULTS/perf/<spec file name>.json, what `make perf` writes, if present)")
    p.add_argument("--results", default="results", metavar="DIR",
                   help="results root where `make perf` writes (default ./results in the working directory)")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("synth", help="write a synthetic dataset in MagnaTagATune's layout (MP3s + annotations)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--clips", type=within("dataset.clips", at_least(1)), default=600, metavar="N",
                   help="number of clips (default 600)")
    p.add_argument("--seed", type=within("dataset.seed", at_least(0)), default=0, metavar="S",
                   help="generator seed (default 0)")
    p.add_argument("--seconds", type=within("dataset.clip_seconds", positive_float), default=29.1, metavar="SEC",
                   help="clip length, 1 s to 1 h (default 29.1)")
    p.add_argument("--task", action="append", choices=["hiss", "mode"],
                   help="also write a downstream task's manifest, <out>/<task>.csv, for `bench transfer`; "
                        "labels no tag gives away (hiss: a 4.3-5.2 kHz noise band or none; mode: major or minor)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("prepare", help="decode and resample a spec's dataset into per-sample-rate caches")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--data", metavar="DIR", help=DATA_HELP)
    p.add_argument("--cache", metavar="DIR", help=CACHE_HELP)
    p.add_argument("--workers", type=at_least(1), metavar="N", help="decoding processes (default: one per core)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("dataset", help="what a grid will train on: clips per split, tags, positives, exclusions "
                       "(reads the dataset as `bench grid` does; decodes nothing)")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--data", metavar="ROOT", help=DATA_HELP)
    p.add_argument("--json", action="store_true", help="one JSON object on stdout instead of the table")
    p.set_defaults(func=cmd_dataset)

    p = sub.add_parser("grid", help="prepare data if needed, then train every run of SPEC that is not done")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--data", metavar="DIR", help=DATA_HELP)
    p.add_argument("--results", default="results", metavar="DIR",
                   help="results root (default ./results in the working directory)")
    p.add_argument("--cache", metavar="DIR", help=CACHE_HELP)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--workers", type=at_least(1), metavar="N",
                   help="worker processes or Slurm jobs (default: runs-per-gpu per visible GPU, 1 on the CPU)")
    p.add_argument("--runs-per-gpu", type=at_least(1), metavar="K",
                   help="runs trained at once on each GPU (default: chosen from GPU memory and the runs' footprint)")
    p.add_argument("--launcher", default="local", choices=["local", "slurm", "submitit-local"],
                   help="local processes, Slurm jobs via submitit, or submitit's local executor")
    p.add_argument("--shard", metavar="i/n", help="run only runs k with k mod n == i (0 <= i < n)")
    p.add_argument("--dry-run", action="store_true", help="print what would run and why the rest is skipped")
    p.add_argument("--retry-failed", action="store_true", help="rerun runs recorded as failed")
    p.add_argument("--no-report", action="store_true", help="do not run `bench report` at the end")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no progress bars and no line per epoch (runs, results and problems are still printed)")
    slurm = p.add_argument_group("slurm (--partition, --gpus, --cpus, --mem-gb, --gpu-mem-gb, --slurm-arg: with "
                                 "--launcher slurm only; --time: submitit-local too)")
    slurm.add_argument("--partition", metavar="NAME")
    slurm.add_argument("--time", type=at_least(1), metavar="MIN", help="time limit per job (minutes; default 1440)")
    slurm.add_argument("--gpus", type=at_least(1), metavar="N", help="GPUs per job (default 1)")
    slurm.add_argument("--cpus", type=at_least(1), metavar="N",
                       help="CPUs per job, shared evenly by its tasks (--gpus x --runs-per-gpu; default 8)")
    slurm.add_argument("--mem-gb", type=at_least(1), metavar="GB", help="memory per job")
    slurm.add_argument("--gpu-mem-gb", type=at_least(1), metavar="GB",
                       help="memory of one GPU of the compute nodes: chooses --runs-per-gpu when it is not given "
                            "(without it, 1)")
    slurm.add_argument("--slurm-arg", action="append", default=[], metavar="NAME=VALUE",
                       help="a further sbatch option of every job, e.g. account=proj1, qos=normal, constraint=a100, "
                            "or gres=gpu:a100:1 where the cluster takes GPUs as a generic resource (repeatable)")
    p.set_defaults(func=cmd_grid)

    p = sub.add_parser("status", help="a grid in progress: runs done, running (epoch, best validation ROC-AUC), "
                       "failed, not started; elapsed and ETA (read-only, safe while workers write)")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--results", default="results", metavar="DIR",
                   help="results root (default ./results in the working directory)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("report", help="tables (csv, md, tex) and figures (png, pdf) from a spec's results")
    p.add_argument("target", metavar="RESULTS_DIR|SPEC",
                   help="a spec's results folder, e.g. results/demo, or the spec, e.g. specs/demo.toml")
    p.add_argument("--results", default="results", metavar="DIR",
                   help="results root where a SPEC's folder is (default ./results in the working directory)")
    p.add_argument("--out", metavar="DIR",
                   help="folder the report is written to (default: report/ in the results folder; another where "
                        "that cannot be written, e.g. an archive on read-only storage)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("perf", help="measure training throughput, conv peak, front end and data path; "
                       "project the spec's device-hours")
    p.add_argument("spec", metavar="SPEC", nargs="?",
                   help="grid spec whose configurations are measured (default specs/paper-mtat-vgg.toml of the "
                        "clone)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--batch", type=at_least(1), metavar="N",
                   help="clips per training step (default: the spec's batch on CUDA, 32 in the shipped specs; "
                        "8 on the CPU)")
    p.add_argument("--budget", type=positive_float, default=30.0, metavar="SEC",
                   help="seconds per measurement after its warm-up step (default 30)")
    p.add_argument("--scaling", type=at_least(1), default=6, metavar="N",
                   help="configurations measured for step time vs GMAC (default 6)")
    p.add_argument("--epochs", type=positive_float, default=None, metavar="E",
                   help="epochs per run assumed by the device-hours projection (default 30, or the spec's "
                        "max_epochs where that is fewer)")
    p.add_argument("--no-compile", action="store_true",
                   help="compile nothing: no torch.compile lever, and the fast path, the evaluation and (on a "
                        "GPU) the projection's scaling steps measured eager (minutes faster on a GPU, where the "
                        "grid's long runs compile: the projection is then theirs uncompiled)")
    p.add_argument("--bf16-peak-tflops", type=positive_float, metavar="N",
                   help="the GPU's dense bf16 peak in TFLOP/s, for the GPU targets (default: the datasheet's, for "
                        "the GPUs the suite knows by name)")
    p.add_argument("--compile-modes", type=comma_list, default=(), metavar="MODE[,MODE]",
                   help="also time compiled training steps under these inductor modes beside the default one, at the "
                        "headline and the smallest configuration (e.g. max-autotune-no-cudagraphs,reduce-overhead; "
                        "BENCH_COMPILE_MODE sets the mode of a grid's runs)")
    p.add_argument("--out", metavar="JSON", help="also write the measurements as JSON")
    p.set_defaults(func=cmd_perf)

    p = sub.add_parser("convert-msd", help="convert the MSD split pickles (read safely) into a CSV manifest, once")
    p.add_argument("root", metavar="ROOT", help="folder holding the Lee et al. split files")
    p.add_argument("--out", required=True, metavar="CSV", help="manifest to write (plus <stem>.tags.txt)")
    p.set_defaults(func=cmd_convert_msd)

    released = ["MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg"]
    p = sub.add_parser("import", help="convert the released musicnn models (TF checkpoints) into PyTorch weights")
    p.add_argument("package", choices=["musicnn"], help="what to import: the musicnn 0.1.0 models")
    p.add_argument("--from", dest="source", metavar="PATH",
                   help="the musicnn package folder (default: the installed musicnn package)")
    p.add_argument("--out", metavar="DIR", help="models folder " + MODELS_HELP)
    p.add_argument("--model", action="append", choices=released, metavar="NAME",
                   help=f"import only this model (repeatable; default all: {', '.join(released)})")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("tag", help="tag audio files with an imported model or a run of a grid; prints the top tags")
    p.add_argument("audio", nargs="+", metavar="AUDIO", help="audio files (anything libsndfile decodes: wav, mp3, ...)")
    p.add_argument("--model", default="MTT_musicnn", metavar="NAME|DIR",
                   help=f"{' | '.join(released)} (imported), or a run folder results/<spec>/runs/<run_id> "
                   "(default MTT_musicnn)")
    p.add_argument("--models", metavar="DIR", help="where imported models live " + MODELS_HELP)
    p.add_argument("--top", type=at_least(1), default=5, metavar="K", help="tags printed per file (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON: top tags and every tag's mean score per file")
    p.add_argument("--png", metavar="PATH",
                   help="save the taggram as an image in the format PATH's suffix names (.png, .pdf, .svg, ...; "
                        ".png where it has none; with several files: PATH's name without its suffix, -<audio "
                        "stem> and the suffix, e.g. taggram-song.pdf; the audio's whole name where stems repeat)")
    p.set_defaults(func=cmd_tag)

    p = sub.add_parser("embed", help="embeddings of audio files from a run or an imported model (.npy + index), "
                                     "cached and resumable")
    p.add_argument("model", metavar="MODEL", help="a run folder, or an imported model's name (MTT_musicnn, ...) "
                                                  "or folder")
    p.add_argument("audio", nargs="*", help="audio files (or --manifest)")
    p.add_argument("--manifest", metavar="CSV", help="a CSV with a column 'path' (relative to its folder)")
    p.add_argument("--models", metavar="DIR", help="where imported models live " + MODELS_HELP)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (its cache/ makes reruns cheap)")
    p.add_argument("--per-patch", action="store_true", help="also write every patch's embedding")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("transfer", help="score the embeddings of a grid's runs (or imported models) on a downstream "
                                        "task by cross-validated logistic regression")
    p.add_argument("models_or_spec", nargs="+", metavar="SPEC|RUN|MODEL",
                   help="a spec (its finished runs), run folders or imported models")
    p.add_argument("--task", required=True, metavar="CSV",
                   help="the task's manifest: path,label[,fold][,group] (paths relative to its folder)")
    p.add_argument("--label-column", default="label", metavar="NAME", help="the manifest's label column")
    p.add_argument("--layer", metavar="NAME",
                   help="embedding layer (default: each model's first: pool4 VGG, penultimate MusiCNN)")
    p.add_argument("--mlp", action="store_true", help="also score a one-hidden-layer MLP")
    p.add_argument("--untrained", action="store_true",
                   help="also score each configuration's network with initial weights, one per run seed: the "
                        "random-feature control")
    p.add_argument("--folds", type=at_least(2), metavar="K",
                   help="stratified folds when the manifest has no fold column (default 5)")
    p.add_argument("--results", default="results", metavar="DIR",
                   help="where a spec's results live (default ./results in the working directory)")
    p.add_argument("--out", metavar="DIR", help="output folder (default <results>/<spec>/transfer/<task>/)")
    p.add_argument("--models", metavar="DIR", help="where imported models live " + MODELS_HELP)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_transfer)

    p = sub.add_parser("export", help="a run or an imported model as ONNX (optionally with the mel front end), "
                                      "checked against PyTorch with onnxruntime")
    p.add_argument("model", metavar="RUN|MODEL", help="a run folder, or an imported model's name or folder")
    p.add_argument("--onnx", required=True, metavar="FILE", help="the ONNX file to write (plus FILE.json)")
    p.add_argument("--with-frontend", action="store_true",
                   help="take the waveform of one patch and compute the log-mel inside the graph")
    p.add_argument("--models", metavar="DIR", help="where imported models live " + MODELS_HELP)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("download", help="download a public dataset's audio (MagnaTagATune, MTG-Jamendo), resumably")
    p.add_argument("dataset", choices=["mtat", "jamendo"])
    p.add_argument("--to", required=True, metavar="DIR", help="target folder (becomes the dataset root)")
    p.add_argument("--base-url", metavar="URL", help="mirror of the dataset's home (default: the official one)")
    p.add_argument("--keep-archives", action="store_true", help="keep the archives after unpacking")
    p.add_argument("--quality", choices=["low", "full"],
                   help="jamendo: low-quality (default, NN/ID.low.mp3) or full-quality MP3s (NN/ID.mp3)")
    p.set_defaults(func=cmd_download)
    return parser


KEEPS_FINISHED_WORK = frozenset({"grid", "prepare", "embed", "transfer", "download"})
"""Commands whose finished work survives a Ctrl-C (results, caches, resumable transfers): a rerun continues.
Not `synth`: a rerun renders every clip again (the folder holds no record of whose clips are there)."""


PATH_METAVARS = {"DIR": False, "ROOT": False, "NAME|DIR": False, "RESULTS_DIR|SPEC": False, "CSV": True,
                 "JSON": True, "FILE": True, "PATH": True, "SPEC": True, "AUDIO": True, "MODEL": True,
                 "RUN|MODEL": True, "SPEC|RUN|MODEL": True}
"""The metavars of arguments that name a file or folder (True: a file, or a name that may be one)."""


def subcommand_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The parser of `bench COMMAND`, whose errors and arguments are the command's own."""
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices[command]


def refuse_empty_paths(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """An empty path given to any option or argument that names a file or folder (an unset shell
    variable: `--cache "$CACHE"`) is a UserError, not the option's default nor the working directory."""
    from bench.core.paths import refuse_empty

    for action in subcommand_parser(parser, args.command)._actions:
        file = PATH_METAVARS.get(action.metavar)
        if file is None:
            continue
        given = getattr(args, action.dest, None)
        name = max(action.option_strings, key=len) if action.option_strings else action.metavar
        for value in given if isinstance(given, list) else [given]:
            if isinstance(value, str):
                refuse_empty(value, name, file=file)


def say(line: str) -> None:
    """`line` on stderr, the command's last word; nothing where stderr is a pipe whose reader has gone
    (`2>&1 | head`), is closed (`2>&-`: /dev/null from `main`'s start) or is a file on a full disk, where
    the exit status alone tells what happened."""
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError as exc:
        if not isinstance(exc, BrokenPipeError) and not is_resource_error(exc):
            raise
        discard_if_closed(sys.stderr)


def output_written(status: int, command: str | None, launcher: str = "local") -> int:
    """`status`, once stdout's rest is flushed; where its file could not take it (a full disk under
    `bench plan > plan.txt`), the output is incomplete: said in one line, whatever else the command said
    (`bench tag --json` with a bad file among good ones ends with 2, its good files' scores in that rest),
    and a command that had ended well ends with EXIT_USER_ERROR."""
    unwritten = discard_if_closed(sys.stdout)
    if unwritten is None:
        return status
    say_unwritten(unwritten, command, launcher)
    return EXIT_USER_ERROR if status in (0, 1) else status


def say_unwritten(error: OSError, command: str | None, launcher: str = "local") -> None:
    """The one line of output a file could not take (`error`, naming it: `standard output (plan.txt)`)."""
    name = f"bench {command}" if command else "bench"
    say(f"{name}: error: {one_line(resource_message(error, command or '', launcher))}")


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    open_closed_standard_streams()  # before any file is opened, which would take a closed one's number
    set_up_standard_output()
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # said by the subcommand ("bench grid: error: ..."), not by `bench`
            subcommand_parser(parser, args.command).error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exc:  # --help, --version, or a usage error (already printed, one line)
        return output_written(exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR, None)
    except OSError as exc:  # --help or --version into an unbuffered stdout that cannot take it
        if isinstance(exc, BrokenPipeError):  # `bench --help | head -1`: what was read was asked for
            discard_if_closed(sys.stdout)
            return 0
        if not is_resource_error(exc):
            raise
        say_unwritten(exc, None)
        return EXIT_USER_ERROR
    args.started = started
    try:
        status = _command(parser, args)
    except BaseException:  # a traceback on its way, its own error the one to see: stdout's rest, if it can
        discard_if_closed(sys.stdout)
        raise
    # what stdout still buffers, however the command ended: where its reader has gone it is met here, not
    # in Python's flush at exit, and the status returned stands (a finished command's own: a dry run's
    # listing, `bench prepare | head` once prepared; 130 for Ctrl-C while piped into `tee`)
    return output_written(status, args.command, getattr(args, "launcher", "local"))


def _command(parser: Parser, args: argparse.Namespace) -> int:
    """The command's exit status, its error said in one line (the user's, the machine's), or a Ctrl-C's."""
    from bench.core.environment import check_library_settings
    from bench.core.interrupts import interrupts_noted, terminate_as_interrupt
    from bench.core.store import resource_cause

    terminated = bool  # bool() is False: no SIGTERM came before the command ran
    try:
        with terminate_as_interrupt() as terminated, interrupts_noted() as lost:  # a SIGTERM stops a command as
            check_library_settings()  # Ctrl-C does
            refuse_empty_paths(parser, args)
            status = args.func(args)
            if lost():  # a Ctrl-C or SIGTERM raised where Python could only print it: the command went on
                raise KeyboardInterrupt
            return status
    except KeyboardInterrupt as exc:  # Ctrl-C: say what a rerun does, where work is kept
        if isinstance(exc, Interrupted):
            say(f"bench {args.command}: interrupted; {one_line(exc)}")
        elif args.command in KEEPS_FINISHED_WORK:
            say(f"bench {args.command}: interrupted; {RERUN_TO_CONTINUE}")
        else:  # e.g. bench tag --json prints its results at the end: a rerun starts over
            say(f"bench {args.command}: interrupted")
        return EXIT_TERMINATED if terminated() else EXIT_INTERRUPTED
    except (UserError, BuilderError) as exc:  # BuilderError: an architecture registered with a misspelt builder
        say(f"bench {args.command}: error: {one_line(exc)}")
        return EXIT_USER_ERROR
    except BrokenPipeError:  # e.g. `bench plan ... | head`: what was asked for was read
        if args.command in KEEPS_FINISHED_WORK and not getattr(args, "dry_run", False):
            # `bench grid | head`: stopped before its work was done (a dry run's listing was only read)
            say(f"bench {args.command}: interrupted; its output was closed (the reader of its pipe ended); "
                f"{RERUN_TO_CONTINUE}")
            return EXIT_INTERRUPTED
        return 0
    except OSError as exc:
        message = (resource_message(exc, args.command, getattr(args, "launcher", "local")) if is_resource_error(exc)
                   else misplaced_message(exc))
        if message is None:
            raise
        say(f"bench {args.command}: error: {one_line(message)}")
        return EXIT_USER_ERROR
    except Exception as exc:  # the machine's state behind another error: torch.compile's, under its cache folder
        folder = None
        if "torch" in sys.modules:  # else nothing was compiled
            from bench.train.fastpath import compile_cache_folder

            folder = compile_cache_folder()
        machine = resource_cause(exc, folder)
        if machine is None:
            raise
        message = resource_message(machine, args.command, getattr(args, "launcher", "local"))
        say(f"bench {args.command}: error: {one_line(message)}")
        return EXIT_USER_ERROR


def console() -> None:
    """The `bench` console script: `main`, then, for `bench tag`, an immediate exit once the output is
    flushed. Python's shutdown with torch loaded takes a noticeable share of the time `bench tag`
    takes for a track (measured: docs/performance.md#measurements-behind-the-codes-choices), and
    `bench tag` leaves nothing that needs it (no child processes, no files open)."""
    argv = sys.argv[1:]
    status = main(argv)
    from bench.core.interrupts import interrupts_dropped

    # the command has ended and its status says how: a Ctrl-C from here on (a second one, landing while
    # Python joins a process pool's threads at its exit) is no traceback of the command's
    sys.unraisablehook = interrupts_dropped(sys.unraisablehook)
    if argv[:1] == ["tag"]:
        for stream in (sys.stdout, sys.stderr):  # stdout None where its reader had gone (log_to_stdout)
            if stream is not None:
                stream.flush()
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
