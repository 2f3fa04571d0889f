"""`bench report RESULTS_DIR`: result.json files -> tidy tables, statistics, Markdown/LaTeX tables, figures.

The report is a pure function of `RESULTS_DIR/runs/*/result.json` (docs/architecture.md): it never
imports training code. Every analysis step is a function from DataFrames to DataFrames; the figures
(`bench.report.figures`) read only what these functions return.

Terms used throughout:

- *configuration*: (arch, width, sample_rate, n_mels, hop_multiplier, log) on one dataset. Seeds are
  its repetitions; means and standard deviations (ddof=1) are taken over seeds.
- *model*: (dataset, arch, width) -- one paper-shaped table, one Fig. 1 and two per-tag heatmaps each.
- *reference configuration*: 96 mel bands, hop x1 (the paper's baseline input) with the same dataset,
  arch, width, sample rate and log type. Relative changes and t-tests are taken against it.
- *global reference*: one per model, 96 mel bands, hop x1, log compression at the highest sample rate
  the model was run at (`GLOBAL_REFERENCE`). The global per-tag table and figure compare every
  configuration of the model with it, so that sample-rate and log-type effects show too.
- accuracies (`roc_auc`, `pr_auc`) are macro averages over tags, stored as fractions (0-1) in the CSV
  files as scikit-learn returns them; tables and figures show them in %.
- `gmac`: 1e9 multiply-adds for one forward pass over one clip (fvcore's count); `storage_bytes`: one
  float32 mel spectrogram of one clip.
- *setup*: what a run was trained on besides its configuration -- `clip_seconds`, `n_tags` and `split`
  from the run's canonical dataset config. Published numbers are put beside ours only where the
  model width and the setup are the paper's (`published_setup_problems`).
- failed runs (status != "ok"), unreadable result files, result files that do not describe their run
  (`bench.core.layout.result_problem`) and run folders without result.json are listed in
  `runs_not_ok.csv` and in the summary and never enter an average.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.core.layout import REPORT
from bench.core.paths import plain_name
from bench.core.store import (
    STALE_TEMP_SECONDS,
    atomic_write_text,
    atomic_write_together,
    exclusive_lock,
    is_finite_number,
    remove_temp_files,
)
from bench.core.text import printable, quoted, visible
from bench.report.columns import (  # noqa: F401 - the report's API, in one place
    AGGREGATE_COLUMNS,
    CONDITION,
    CONFIG,
    COST_FIELDS,
    GLOBAL_REFERENCE,
    KEY,
    LOG_ORDER,
    METRIC_NAMES,
    METRICS,
    MODEL,
    NOT_OK_COLUMNS,
    PER_TAG_COLUMNS,
    REFERENCE,
    SETUP,
    SIGNIFICANCE,
    SUMMARY_COLUMNS,
    config_label,
    input_label,
    models,
    paper_order,
    rate_label,
    select,
    width_label,
    width_text,
)
from bench.report.published import (  # noqa: F401 - the report's API, in one place
    PUBLISHED,
    PUBLISHED_COLUMNS,
    PUBLISHED_SETUP,
    published_comparison,
    published_numbers,
    published_setup_problems,
    published_skipped,
)
from bench.report.reading import (  # noqa: F401 - the report's API, in one place
    NOT_IN_SPEC,
    NOT_STARTED,
    duplicate_seeds,
    not_in_spec,
    not_started,
    per_tag_table,
    read_runs,
    run_folders,
    tidy_table,
)
from bench.report.statistics import (  # noqa: F401 - the report's API, in one place
    aggregate,
    compare_to_reference,
    global_references,
    is_reference,
    matched_gmac,
    mixed_setups,
    pareto_front,
    per_tag_delta,
    per_tag_delta_global,
    per_tag_matrix,
    per_tag_matrix_global,
    student_t_test,
)
from bench.report.tables import (  # noqa: F401 - the report's API, in one place
    LATEX_PACKAGES,
    Table,
    comparison_table,
    matched_gmac_tables,
    published_markdown,
    results_table,
    to_latex,
    to_markdown,
)


@dataclass
class ReportSummary:
    """What `report` found and wrote."""

    results_dir: Path
    out_dir: Path
    n_runs: int
    n_ok: int
    not_ok: pd.DataFrame
    """One row per run not averaged: run_id, status (failed | incomplete | unreadable | ...), reason."""
    n_configurations: int
    incomplete_configurations: list[str]
    """Configurations averaged over fewer seeds than expected, e.g. "vgg 16k log 48/x1 (n=2, missing 2)"."""
    published: pd.DataFrame
    warnings: list[str]
    files: list[Path]
    published_skipped: list[str] = field(default_factory=list)
    """One line per model with published numbers for its configurations but not the paper's width or setup."""
    matched: pd.DataFrame = field(default_factory=pd.DataFrame)
    """`matched_gmac`: narrower networks beside smaller inputs of matched GMAC (empty without both)."""

    def text(self) -> str:
        counts = self.not_ok["status"].value_counts()
        lines = [f"report of {self.results_dir}: {self.n_runs} run{'s' * (self.n_runs != 1)}, {self.n_ok} ok"
                 + "".join(f", {n} {status}" for status, n in counts.items())
                 + f"; {self.n_configurations} configuration{'s' * (self.n_configurations != 1)}"]
        outside = self.not_ok["status"] == NOT_IN_SPEC
        unstarted = self.not_ok["reason"] == NOT_STARTED
        for row in self.not_ok[~outside & ~unstarted].itertuples(index=False):
            lines.append(f"  not averaged: {row.run_id} [{row.status}] {row.reason}")
        for rows in (self.not_ok[outside], self.not_ok[unstarted]):  # these can be hundreds: one line each
            if not rows.empty:
                lines.append(f"  not averaged: {len(rows)} run(s) {rows.iloc[0].reason} (runs_not_ok.csv lists them)")
        for label in self.incomplete_configurations:
            lines.append(f"  fewer seeds: {label}")
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [f"  {line}" for line in self.published_skipped]
        if not self.published.empty:
            lines.append("published numbers beside ours (%, ours - published):")
            for r in self.published.itertuples(index=False):
                parts = [f"{METRIC_NAMES[m]} {getattr(r, f'{m}_ours'):.2f} vs {getattr(r, f'{m}_published'):.2f} "
                         f"({getattr(r, f'{m}_diff_pp'):+.2f} pp)"
                         for m in METRICS if np.isfinite(getattr(r, f"{m}_published"))]
                lines.append(f"  {r.dataset} {r.arch} w{width_text(r.width)} {rate_label(r.sample_rate)} {r.log} "
                             f"{config_label(r.n_mels, r.hop_multiplier)} (n={r.n_seeds}): " + ", ".join(parts))
        if not self.matched.empty:
            lines.append("smaller input or narrower network at matched GMAC (ROC-AUC change against 96/x1 at the "
                         "full width, pp; matched_gmac.csv):")
            def pp(diff: float) -> str:
                return f"{100 * diff:+.2f}" if np.isfinite(diff) else "n/a (no reference)"

            for r in self.matched.itertuples(index=False):
                p = "n/a" if not np.isfinite(r.welch_p) else f"{r.welch_p:.3g}"
                lines.append(f"  {r.dataset} {r.arch} {rate_label(r.sample_rate)} {r.log}: width {width_text(r.width)} "
                             f"({r.gmac:.3g} GMAC) {pp(r.roc_auc_diff)} vs "
                             f"{config_label(r.input_n_mels, r.input_hop_multiplier)} "
                             f"at width {width_text(r.ref_width)} "
                             f"({r.input_gmac:.3g} GMAC) {pp(r.input_roc_auc_diff)}: "
                             + ("tie" if r.loses_less == "tie" else f"{r.loses_less} loses less")
                             + f" (Welch p {p})")
        lines.append(f"wrote {len(self.files)} files to {self.out_dir}:")
        lines += [f"  {path.name}" for path in self.files]
        # run ids, errors and configuration values come from result.json files, maybe of someone else's: an
        # escape sequence in one is shown, not acted on by the terminal
        return "\n".join(visible(line) for line in lines)


def _csv(frame: pd.DataFrame) -> str:
    """Numbers to 10 significant digits; a width as `width_text`, in full: it keys a model, and two widths
    alike to 10 digits are still two models (runs_not_ok.csv's width may be anything a result.json held)."""
    widths = {c: frame[c].map(lambda w: width_text(w) if is_finite_number(w) else w)
              for c in ("width", "ref_width") if c in frame.columns}
    return frame.assign(**widths).to_csv(index=False, float_format="%.10g", lineterminator="\n")


def _seeds_per_dataset(summary: pd.DataFrame, not_ok: pd.DataFrame) -> dict:
    """dataset -> the seeds its runs (ok or not) were started with: a spec trains every configuration with
    one list of seeds. A run that records no dataset (a folder without config.json) counts for each."""
    runs = pd.concat([frame[["dataset", "seed"]] for frame in (summary, not_ok)], ignore_index=True)
    runs = runs.assign(seed=pd.to_numeric(runs["seed"], errors="coerce")).dropna(subset=["seed"])
    known = runs.dropna(subset=["dataset"])
    anywhere = set(runs.loc[runs["dataset"].isna(), "seed"].astype(int))
    return {dataset: set(seeds.astype(int)) | anywhere for dataset, seeds in known.groupby("dataset")["seed"]}


@dataclass(frozen=True)
class SpecRuns:
    """The runs a spec names as it now stands: `path` (for messages), and each run's config fields as the
    report's rows name them (arch, width, sample_rate, n_mels, hop_multiplier, log, seed, dataset) by run_id."""

    path: str
    configs: dict[str, dict]

    @property
    def run_ids(self) -> frozenset[str]:
        return frozenset(self.configs)


def report(results_dir: str | Path, out_dir: str | Path | None = None, spec: SpecRuns | None = None) -> ReportSummary:
    """Read RESULTS_DIR/runs/*/result.json and write the report to out_dir (default RESULTS_DIR/report/).

    With `spec`, run folders that the spec does not name (runs of an earlier version of it: another
    configuration, seed, dataset or protocol) are listed in runs_not_ok.csv as "not in spec" and not
    averaged; without it, every run of the folder is.

    Writes summary.csv, aggregate.csv, comparison.csv, per_tag.csv, per_tag_delta.csv,
    per_tag_delta_global.csv, runs_not_ok.csv, matched_gmac.csv (when some family holds both narrower
    networks and smaller inputs: `matched_gmac`), tables.md, tables.tex, published.md (when a published
    number exists for our configurations: beside ours where width and setup are the paper's, else the
    reason it is left out) and the figures, PNG and PDF: fig1_<model>, per_tag_<model> (against the
    reference of each sample rate and log type), per_tag_global_<model> (against the model's global
    reference; left out with a note when that was not run), tradeoff_gmac, tradeoff_storage and
    tradeoff_latency (when the runs measured their latency).
    Raises UserError when the folder does not exist or holds no runs.

    One report at a time per output folder (a lock file in it, REPORT_LOCK): every worker of a grid
    reports at its end, and two reports writing at once would each leave files of what it read, a set
    that contradicts itself; each reads the runs once it holds the lock, so the last one is the newest.
    """
    results_dir = Path(results_dir)
    run_folders(results_dir)  # no such folder, or no runs: one line, before anything is created
    out = Path(out_dir) if out_dir is not None else results_dir / REPORT
    out.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(out / REPORT_LOCK):
        return _write_report(results_dir, out, spec)


REPORT_LOCK = ".report.lock"


def _write_report(results_dir: Path, out: Path, spec: SpecRuns | None) -> ReportSummary:
    from bench.report import figures  # matplotlib is only needed here

    folders = run_folders(results_dir)
    outside = [f for f in folders if spec is not None and f.name not in spec.run_ids]
    results, not_ok = read_runs(f for f in folders if spec is None or f.name in spec.run_ids)
    summary = tidy_table(results)
    aggregated = aggregate(summary, _seeds_per_dataset(summary, not_ok))
    comparison = compare_to_reference(aggregated, summary)
    per_tag = per_tag_table(results)
    delta = per_tag_delta(per_tag)
    delta_global = per_tag_delta_global(per_tag)
    matched = matched_gmac(aggregated, summary)
    published = published_comparison(aggregated)
    skipped = published_skipped(aggregated)

    notes = mixed_setups(summary)
    apart = comparison.loc[comparison["setup_differs"] & ~comparison["roc_auc_mean"].isna(), list(KEY)]
    if not apart.empty:
        notes.append(f"{len(apart)} configuration(s) not compared with their reference, trained on other data "
                     "(clip length, tags or split; comparison.csv: setup_differs): "
                     + ", ".join(" ".join(str(v) for v in row) for row in apart.itertuples(index=False)))
    fewer = summary[summary["tags_excluded"] > 0]
    if not fewer.empty:
        notes.append(f"{len(fewer)} run(s) averaged over fewer tags than they were trained on (a tag without a "
                     "positive or a negative test clip has no ROC-AUC; result.json: metrics.excluded_tags): "
                     + ", ".join(f"{r.run_id} ({r.tags_scored:g} of {r.tags_scored + r.tags_excluded:g})"
                                 for r in fewer.itertuples()))
    duplicates = duplicate_seeds(summary)
    if not duplicates.empty:
        notes.append(f"{len(duplicates)} ok runs share a configuration and seed with another (changed protocol or "
                     f"data?); all are averaged (`bench report SPEC` averages only the runs the spec names): "
                     f"{', '.join(duplicates['run_id'])}")
    if outside:
        listed = not_in_spec(outside, spec.path)
        not_ok = listed if not_ok.empty else pd.concat([not_ok, listed], ignore_index=True)
    unstarted = sorted(spec.run_ids - {f.name for f in folders}) if spec is not None else []
    if unstarted:  # runs the spec names that no grid has started: not done either
        listed = not_started({run_id: spec.configs[run_id] for run_id in unstarted})
        not_ok = listed if not_ok.empty else pd.concat([not_ok, listed], ignore_index=True)
    # every file is made in memory first and all are written as one set at the end: an error on the way (a
    # figure, a full disk) leaves the earlier report whole, not its CSV files beside older tables
    outputs: dict[str, bytes] = {}

    def write(name: str, text: str) -> None:
        outputs[name] = text.encode("utf-8")

    write("summary.csv", _csv(summary))
    write("aggregate.csv", _csv(aggregated))
    write("comparison.csv", _csv(comparison))
    write("per_tag.csv", _csv(per_tag))
    write("per_tag_delta.csv", _csv(delta))
    write("per_tag_delta_global.csv", _csv(delta_global))
    write("runs_not_ok.csv", _csv(not_ok))
    if not matched.empty:
        write("matched_gmac.csv", _csv(matched))

    model_list = models(aggregated)
    lost = all_seeds_failed(not_ok, aggregated)
    md, tex = [f"# Results: {printable(results_dir.name)}", ""], []
    reference = config_label(**REFERENCE)
    # a model whose every run failed has a table of `failed` cells, not none
    for _, title, key in models(pd.concat([aggregated[list(MODEL)], lost[list(MODEL)]], ignore_index=True)):
        mine = select(aggregated, key)
        if not mine.empty and not is_reference(mine).any():
            notes.append(f"{title}: no {reference} reference run, so no relative changes or t-tests")
        failed = {(r.sample_rate, r.log, r.n_mels, r.hop_multiplier) for r in select(lost, key).itertuples()}
        tables = [results_table(mine, title, failed)]
        if not mine.empty:
            tables.append(comparison_table(select(comparison, key), f"{title}: change against {reference}"))
        for table in tables:
            md.append(to_markdown(table))
            tex.append(to_latex(table))
    if not matched.empty:
        md += ["## Smaller input or narrower network at matched GMAC", ""]
        tex.append("% smaller input or narrower network at matched GMAC")
        for table in matched_gmac_tables(matched):
            md.append(to_markdown(table))
            tex.append(to_latex(table))
    if not model_list:
        md.append("No successful runs yet.\n")
    write("tables.md", "\n".join(md))
    write("tables.tex", "\n".join([LATEX_PACKAGES, *tex]) if tex else "% no successful runs yet\n")
    if not published.empty or skipped:
        write("published.md", published_markdown(published, skipped))

    global_refs = global_references(per_tag)
    drawn: set[str] = set()  # the tag names of the per-tag figures
    for slug, title, key in model_list:
        failed = len(select(lost, key))
        outputs.update(figures.rendered(figures.fig1(select(aggregated, key), title, failed), f"fig1_{slug}"))
        matrix = per_tag_matrix(select(delta, key))
        drawn.update(matrix.index)
        if not matrix.empty:
            note = figures.caption(_in_heatmap(select(aggregated, key), select(delta, key)), spread=False)
            outputs.update(figures.rendered(figures.per_tag(matrix, title, note, lost=failed), f"per_tag_{slug}"))
        references = select(global_refs, key)
        if references.empty:
            continue  # no per-tag values for this model
        ref = references.iloc[0]
        ref_label = input_label(ref.sample_rate, ref.n_mels, ref.hop_multiplier, ref.log)
        if not ref["present"]:
            notes.append(f"{title}: no {ref_label} run (the global reference: {config_label(**REFERENCE)} "
                         f"{GLOBAL_REFERENCE['log']} at the model's highest sample rate), so no per_tag_global_{slug}")
            continue
        matrix = per_tag_matrix_global(select(delta_global, key))
        drawn.update(matrix.index)
        if not matrix.empty:
            caption = figures.caption(_in_heatmap(select(aggregated, key), select(delta_global, key), ref),
                                      spread=False)
            outputs.update(figures.rendered(figures.per_tag(matrix, title, caption, reference=ref_label, lost=failed),
                                            f"per_tag_global_{slug}"))
    undrawn = figures.fonts_for(sorted(drawn))[1]
    if undrawn:
        notes.append(f"{len(undrawn)} tag name(s) have characters no installed font has, drawn as empty boxes in "
                     f"the per-tag figures ({', '.join(quoted(visible(t)) for t in undrawn[:5])}"
                     f"{', ...' if len(undrawn) > 5 else ''}): install a font that has them (for Chinese, Japanese "
                     "or Korean, Noto Sans CJK: Debian's fonts-noto-cjk) and run bench report again")
    if model_list:
        costs = {"gmac": "tradeoff_gmac", "storage_bytes": "tradeoff_storage"}
        if np.isfinite(aggregated["latency_ms"].to_numpy(dtype=float)).any():  # results from before it was measured
            costs["latency_ms"] = "tradeoff_latency"
        for cost, name in costs.items():
            outputs.update(figures.rendered(figures.tradeoff(aggregated, cost, len(lost)), name))

    remove_temp_files(out, STALE_TEMP_SECONDS)  # of killed reports
    files = atomic_write_together(out, outputs)
    # only a results folder's own report/ can hold an earlier release's report, which recorded nothing
    _remove_stale(out, files, releases_before=out.resolve() == (results_dir / REPORT).resolve())
    incomplete = [f"{r.arch} w{width_text(r.width)} {rate_label(r.sample_rate)} {r.log} "
                  f"{config_label(r.n_mels, r.hop_multiplier)} (n={r.n_seeds}, "
                  f"missing seeds {r.seeds_missing.replace(';', ', ')})"
                  for r in aggregated.itertuples(index=False) if r.seeds_missing]
    incomplete += [f"{r.arch} w{width_text(r.width)} {rate_label(r.sample_rate)} {r.log} "
                   f"{config_label(r.n_mels, r.hop_multiplier)} (n=0: every run failed, seeds "
                   f"{r.seeds.replace(';', ', ')})" for r in lost.itertuples(index=False)]
    return ReportSummary(results_dir, out, len(folders) + len(unstarted), len(results), not_ok, len(aggregated),
                         incomplete, published, notes, files, skipped, matched)


def all_seeds_failed(not_ok: pd.DataFrame, aggregated: pd.DataFrame) -> pd.DataFrame:
    """The configurations (KEY columns, and `seeds`: those that failed) whose runs all failed, which
    aggregate.csv, made of ok runs, has no row for: a table marks them, so that a diverged configuration
    does not read as one that was never run. One with a seed still to run or running (or interrupted) is
    not among them: its other seeds may yet succeed."""
    numbers = {"width": float, "sample_rate": int, "n_mels": int, "hop_multiplier": int}
    # a result whose fields have the wrong type is listed as such, and belongs to no configuration
    known = not_ok.assign(**{c: pd.to_numeric(not_ok[c], errors="coerce") for c in numbers})
    known = known.dropna(subset=list(KEY)).astype(numbers)
    # what the next grid runs (not a run the spec no longer names: no grid runs it again)
    pending = known.loc[known["status"].isin(("incomplete", "invalid", "unreadable")), list(KEY)].drop_duplicates()
    failed = known[known["status"] == "failed"].merge(pending, on=list(KEY), how="left", indicator=True)
    failed = failed[failed["_merge"] == "left_only"].drop(columns="_merge")
    if failed.empty:
        return pd.DataFrame(columns=[*KEY, "seeds"])
    seeds = (failed.groupby(list(KEY), sort=False)["seed"]
             .agg(lambda s: ";".join(str(int(v)) for v in sorted(s.dropna()))).reset_index(name="seeds"))
    done = aggregated[list(KEY)].astype(seeds[list(KEY)].dtypes.to_dict())
    merged = seeds.merge(done, on=list(KEY), how="left", indicator=True)
    return merged[merged["_merge"] == "left_only"].drop(columns="_merge").reset_index(drop=True)


def _in_heatmap(aggregated: pd.DataFrame, delta: pd.DataFrame, reference: pd.Series | None = None) -> pd.DataFrame:
    """The aggregate rows a per-tag heatmap of `delta` shows: its configurations and what they are compared
    with (each condition's reference, or the one global `reference`), so that its caption's seeds and clip
    lengths leave out the configurations kept off it (trained on other data than their reference)."""
    shown = delta[list(KEY)].drop_duplicates()
    references = shown.assign(**REFERENCE) if reference is None else pd.DataFrame([reference[list(KEY)]])
    keys = pd.concat([shown, references], ignore_index=True).drop_duplicates()
    return aggregated.merge(keys.astype(aggregated[list(KEY)].dtypes.to_dict()), on=list(KEY))


WRITTEN = ".written"
"""The names of the files the last report wrote in its folder, one per line: the next report removes those
it does not write again, and nothing else."""

EARLIER_OUTPUTS = re.compile(r"((fig1|per_tag|per_tag_global)_[a-z0-9]+(-[a-z0-9]+)*(-w[0-9][0-9.e+-]*)?"
                             r"|tradeoff_(gmac|storage|latency))\.(png|pdf)|matched_gmac\.csv|published\.md")
"""The names of the conditional outputs (a model's figures, matched_gmac.csv, published.md) of a report that
recorded none (written before WRITTEN was): a model's name in a file name is `[<dataset>-]<arch>[-w<width>]`."""


def _remove_stale(out: Path, written: list[Path], releases_before: bool = True) -> None:
    """Remove the files of the earlier report that this one did not write (a figure of a model whose runs
    are gone would sit beside tables that no longer show it), and record what this one wrote. Files no
    report wrote (the user's own, `fig1_vgg_annotated.png` beside `fig1_vgg.png`) are left alone.
    `releases_before`: the folder may hold a report of a release that recorded nothing (a results folder's
    report/), whose outputs are known by name; not a folder given with `--out` (a paper's figures)."""
    kept = {path.name for path in written}
    try:
        earlier = {name for name in (out / WRITTEN).read_text(encoding="utf-8").splitlines() if plain_name(name)}
    except (FileNotFoundError, UnicodeDecodeError):  # none, or damaged: as a report that recorded none
        earlier = {path.name for path in out.iterdir() if EARLIER_OUTPUTS.fullmatch(path.name)} \
            if releases_before else set()
    for name in sorted(earlier - kept - {WRITTEN}):
        if (out / name).is_symlink() or (out / name).is_file():  # never a folder of the user's named there
            (out / name).unlink(missing_ok=True)
    atomic_write_text(out / WRITTEN, "".join(f"{name}\n" for name in sorted(kept)))


def cli_main(results_dir: str | Path, spec: SpecRuns | None = None, out_dir: str | Path | None = None) -> int:
    """`bench report RESULTS_DIR` (`bench report SPEC`: with the spec's runs): write the report (to out_dir,
    default RESULTS_DIR/report/) and print what was found and written."""
    print(report(results_dir, out_dir, spec=spec).text())
    return 0
