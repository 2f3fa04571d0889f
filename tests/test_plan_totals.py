"""`bench plan` as a newcomer reads it: the tag count the dataset really gives, grid totals, the
measured projection when `bench perf` wrote one, and a warning for values far outside the usual."""

import json
import subprocess

import pytest

from bench.cli import main
from bench.cost.plan import grid_totals, plan_rows
from bench.spec import load_spec, spec_warnings

from .conftest import MINIMAL_SPEC, ROOT, SPECS

DEMO6 = ROOT / "tests" / "data" / "demo6.toml"
"""The earlier 6-run demo (8 s clips): the numbers below are its."""


def test_the_demo_is_planned_with_the_synthetic_datasets_17_tags(capsys):
    spec = load_spec(DEMO6)  # asks for n_tags = 50; the synthetic data has 17 tags
    vgg = plan_rows(spec, fvcore=False)[0]
    # the demo's trained VGG (width 1/16) has 70,283 parameters; with 50 outputs it would have
    # 33 x (128 + 1) = 4,257 more (its last layer is Linear(128, n_tags)): 74,540
    assert vgg["params"] == 70_283
    assert main(["plan", str(DEMO6), "--no-fvcore"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "demo: 6 configurations x 1 seed = 6 runs (synthetic, 8 s clips, 17 tags)"


def test_paper_grid_totals(tmp_path):
    spec = load_spec(SPECS / "paper-mtat-vgg.toml")
    totals = grid_totals(spec, plan_rows(spec, fvcore=False))
    assert totals["runs"] == 264 and totals["configurations"] == 88 and totals["n_tags"] == 50
    # 25,860 clips of the 12:1:3 split, 29.1 s at 12 and 16 kHz (349,200 + 465,600 samples), float16
    assert totals["clips"] == 18_706 + 1_825 + 5_329
    assert totals["cache_bytes"] == 25_860 * (349_200 + 465_600) * 2
    # VGG-CNN's 17,365,940 parameters (counted by hand in test_cost), float32, in each of the 264 runs' best.pt
    assert totals["weights_bytes"] == 264 * 17_365_940 * 4 and totals["largest_weights_bytes"] == 17_365_940 * 4
    # the largest input, 128 x 1820 (16 kHz x1), pools 2,4,4,4 / 4,5,9,10: 128x1820 -> 64x455 -> 16x91 ->
    # 4x10 -> 1x1; 3x3 convs 1->128->384->768->2048 then 2048 x 50: 268,369,920 + 12,882,083,840 +
    # 3,864,625,152 + 566,231,040 + 102,400 = 17,581,412,352 MACs
    assert totals["gmac_per_clip_max"] == pytest.approx(17.581412352, abs=5e-4) and totals["projection"] is None
    # every configuration's GMAC once per seed (the spec's 3)
    per_configuration = [float(r["gmac_analytic"]) for r in plan_rows(spec, fvcore=False)]
    assert totals["gmac_per_clip_sum_over_runs"] == pytest.approx(3 * sum(per_configuration), rel=1e-9)


def test_the_cache_line_says_where_its_clip_count_comes_from(write_spec):
    """MTAT's built-in split: its published sizes; an MTG-Jamendo split folder of another name: only an
    upper bound (the subset's published tracks), which the folder's own split may not reach."""
    from bench.cost.plan import format_totals

    def cache_line(spec_text):
        spec = load_spec(write_spec(spec_text))
        return next(line for line in format_totals(spec, grid_totals(spec, plan_rows(spec, fvcore=False)))
                    if line.startswith("waveform cache:"))

    mtat = MINIMAL_SPEC.replace('name = "synthetic"', 'name = "mtat"')
    assert cache_line(mtat).endswith("; mtat's published split sizes, not counted from a folder: bench dataset "
                                     "counts it)")
    jamendo = MINIMAL_SPEC.replace('name = "synthetic"', 'name = "jamendo"\nsplit_file = "mysplits/fold1"')
    assert cache_line(jamendo).endswith("; at most jamendo's published clips: bench dataset counts the folder's)")
    assert cache_line(MINIMAL_SPEC).endswith("(float16, one copy per sample rate)")  # the synthetic: its own count


def plan_with_perf(capsys, results, device: str, device_name: str, hours: float, epochs: int):
    """`bench plan` of the paper's VGG grid beside a perf JSON of `hours` at results/perf/: (its path, the lines)."""
    perf = results / "perf" / "paper-mtat-vgg.json"
    perf.parent.mkdir(exist_ok=True)
    perf.write_text(json.dumps({"spec": "paper-mtat-vgg", "device": device, "device_name": device_name,
                                "projection": {"device_hours": hours, "runs": 264,
                                               "assumptions": {"epochs_per_run": epochs}}}))
    assert main(["plan", str(SPECS / "paper-mtat-vgg.toml"), "--no-fvcore", "--results", str(results)]) == 0
    return perf, capsys.readouterr().out.splitlines()


def test_a_small_projection_is_not_rounded_to_nothing(capsys, tmp_path):
    _, lines = plan_with_perf(capsys, tmp_path, "cpu", "AMD EPYC (2 cores)", 0.0452, 2)
    assert lines[-1].startswith("projected: 0.045 CPU-hours of AMD EPYC (2 cores)")


def test_plan_prints_the_projection_bench_perf_measured(capsys, tmp_path):
    perf, lines = plan_with_perf(capsys, tmp_path, "cuda", "NVIDIA H200", 123.45, 30)
    # the smallest: 48 mels x10 at 12 kHz, 0.492513 GMAC (the paper's 0.49), to three figures
    assert lines[-4] == "grid: 264 runs (88 configurations x 3 seeds); 0.493-17.6 GMAC per clip, " \
                        f"{lines[-4].split(', ')[-1]}"
    assert lines[-3] == ("waveform cache: 42.1 GB for 25,860 clips (float16, one copy per sample rate; mtat's "
                         "published split sizes, not counted from a folder: bench dataset counts it)")
    # VGG-CNN has 17,365,940 parameters at every input (the Table III pools leave the layers' sizes): 264 runs of
    # float32 weights are 18.3 GB, one run's 69.5 MB, and its checkpoint with Adam's two moments 3 x that
    assert lines[-2] == ("results: 18.3 GB of trained weights (best.pt, float32; 69.5 MB for the largest network), "
                         "and while a run trains its checkpoint (weights and Adam's two moments: about 208 MB for the "
                         "largest; removed when the run is done)")
    assert lines[-1] == ("projected: 123.5 GPU-hours of NVIDIA H200, one run at a time, at 30 epochs per run "
                         f"(measured by bench perf: {perf})")
    # measured before the spec changed (another seed count: 88 x 2 runs): said, not printed as this grid's
    perf.write_text(perf.read_text().replace('"runs": 264', '"runs": 176'))
    assert main(["plan", str(SPECS / "paper-mtat-vgg.toml"), "--no-fvcore", "--results", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"projected device-hours: {perf} was measured for 176 runs, not this grid's 264 (the spec changed since): "
        "run bench perf again")
    perf.write_text(perf.read_text().replace('"runs": 176', '"runs": 264'))
    # as many runs, other ones (another sample rate, say): its fingerprint of the runs says so
    report = json.loads(perf.read_text())
    report["projection"]["runs_fingerprint"] = "0123456789ab"
    perf.write_text(json.dumps(report))
    assert main(["plan", str(SPECS / "paper-mtat-vgg.toml"), "--no-fvcore", "--results", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"projected device-hours: {perf} was measured for other runs of this spec (its configurations, dataset "
        "or protocol changed since): run bench perf again")
    report["projection"]["runs_fingerprint"] = load_spec(SPECS / "paper-mtat-vgg.toml").runs_fingerprint()
    perf.write_text(json.dumps(report))
    assert main(["plan", str(SPECS / "paper-mtat-vgg.toml"), "--no-fvcore", "--results", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("projected: 123.5 GPU-hours")
    perf.write_text(json.dumps({"spec": "another-spec", "projection": {"device_hours": 1.0}}))
    assert main(["plan", str(SPECS / "paper-mtat-vgg.toml"), "--no-fvcore", "--results", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith(  # another spec's: not this one's, and kept
        f"projected device-hours: not read: {tmp_path}/perf/paper-mtat-vgg.json is not the JSON bench perf writes")
    # `make plan RESULTS=DIR` reads what `make perf RESULTS=DIR` wrote (it passed no --results)
    made = subprocess.run(["make", "--no-print-directory", "-n", "plan", f"RESULTS={tmp_path}", "STAMP="],
                          capture_output=True, text=True, cwd=SPECS.parent, check=True).stdout
    (command,) = [line for line in made.splitlines() if "bench plan" in line]
    assert f'--results "{tmp_path}"' in command  # quoted: a folder name may hold a space
    # named with --perf, another spec's file or a missing one is a mistake, said in one line
    assert main(["plan", str(SPECS / "paper-mtat-vgg.toml"), "--no-fvcore", "--perf", str(perf)]) == 2
    assert f"--perf {perf}: not the JSON `bench perf --out` writes for spec 'paper-mtat-vgg'" in capsys.readouterr().err
    assert main(["plan", str(SPECS / "paper-mtat-vgg.toml"), "--perf", str(tmp_path / "none.json")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_plan_json_has_configurations_and_totals(capsys):
    assert main(["plan", str(DEMO6), "--no-fvcore", "--format", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert len(plan["configurations"]) == 6 and plan["totals"]["runs"] == 6 and plan["totals"]["clips"] == 600


def test_jamendo_subsets_have_their_published_tag_counts(write_spec):
    from bench.data.known import tag_count

    for subset, n in (("genre", 87), ("instrument", 40), ("moodtheme", 56), ("all", 183), ("top50tags", 50)):
        text = MINIMAL_SPEC.replace('name = "synthetic"', f'name = "jamendo"\nsubset = "{subset}"\nn_tags = 200')
        assert tag_count(load_spec(write_spec(text)).dataset) == n, subset


def test_a_dropped_zero_is_warned_about(capsys, write_spec):
    spec = write_spec(MINIMAL_SPEC.replace("sample_rate = [12000]", "sample_rate = [1200, 16000]"))
    assert spec_warnings(load_spec(spec)) == [
        f"{spec}: sample_rate 1200 Hz is far outside the usual 8-48 kHz of music tagging (a dropped or extra zero?)"]
    assert main(["plan", str(spec), "--no-fvcore"]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"bench plan: warning: {spec}: sample_rate 1200 Hz")
    long_clips = write_spec(MINIMAL_SPEC.replace('name = "synthetic"', 'name = "synthetic"\nclip_seconds = 291'),
                            "long.toml")
    (warning,) = spec_warnings(load_spec(long_clips))
    assert "dataset.clip_seconds 291 s is far outside the usual 3-60 s" in warning
    assert spec_warnings(load_spec(SPECS / "paper-mtat-vgg.toml")) == []


def test_jamendo_splits_hold_the_same_tracks_in_every_split():
    from bench.data.known import JAMENDO_SPLITS

    # each official split (0-4) divides one set of tracks three ways; top-50's is the published 54,380,
    # and the other subsets' splits hold fewer than their published 55,215 / 25,135 / 18,486 tracks
    # (tracks left without a tag once the tags missing from some split are dropped)
    totals = {subset: {sum(sizes) for sizes in splits} for subset, splits in JAMENDO_SPLITS.items()}
    assert totals == {"top50tags": {54_380}, "genre": {55_094}, "instrument": {24_976}, "moodtheme": {17_982}}


def test_split_sizes_known_before_reading_the_data(write_spec):
    import dataclasses

    from bench.data.known import split_sizes

    jamendo = load_spec(SPECS / "jamendo-top50.toml").dataset
    # lines of the official splits/split-0/autotagging_top50tags-{train,validation,test}.tsv, and split-3's
    assert split_sizes(jamendo) == (32_136, 10_888, 11_356)
    assert split_sizes(dataclasses.replace(jamendo, split_file="splits/split-3")) == (33_173, 10_468, 10_739)
    assert split_sizes(dataclasses.replace(jamendo, split_file="/data/mtg-jamendo/splits/split-4")) == (
        30_868, 11_593, 11_919)
    assert split_sizes(dataclasses.replace(jamendo, split_file="my-splits/fold-3")) is None
    assert split_sizes(dataclasses.replace(jamendo, subset="all")) is None
    mtat = load_spec(SPECS / "paper-mtat-vgg.toml").dataset
    assert split_sizes(mtat) == (18_706, 1_825, 5_329)
    # sota-music-tagging-models' split; with the top 10 tags more clips have none of them: not known
    assert split_sizes(dataclasses.replace(mtat, split="won")) == (15_247, 1_529, 4_332)
    assert split_sizes(dataclasses.replace(mtat, split="won", n_tags=10)) is None
    # Lee et al.'s MSD lists (the 241,889 tracks of sota-music-tagging-models' and musicnn's MSD runs)
    assert split_sizes(load_spec(SPECS / "paper-msd.toml").dataset) == (201_680, 11_774, 28_435)
    # the synthetic set's folders 0-b, c and d-f: 600 clips are 16 x 37 + 8, the first 8 folders one more
    synthetic = load_spec(SPECS / "demo.toml").dataset
    assert split_sizes(dataclasses.replace(synthetic, clips=600)) == (8 * 38 + 4 * 37, 37, 3 * 37)
    assert split_sizes(dataclasses.replace(synthetic, clips=400)) == (300, 25, 75)


def test_mtat_sizes_are_its_25863_clips_less_the_three_that_do_not_decode():
    """annotations_final.csv lists 25,863 clips with 188 tag columns (Law et al. 2009); three MP3s of
    the distribution are empty or undecodable, which every peer leaves out."""
    import dataclasses

    from bench.data.known import split_sizes, tag_count
    from bench.data.mtat import BROKEN_CLIP_IDS

    mtat = load_spec(SPECS / "paper-mtat-vgg.toml").dataset
    assert BROKEN_CLIP_IDS == {"35644", "55753", "57881"}
    assert sum(split_sizes(mtat)) + len(BROKEN_CLIP_IDS) == 25_863
    assert tag_count(dataclasses.replace(mtat, n_tags=1000)) == 188
    assert tag_count(mtat) == 50


def test_jamendo_grid_is_projected_from_its_split():
    from bench.tools.cases import spec_cases
    from bench.tools.projection import project

    spec = load_spec(SPECS / "jamendo-top50.toml")
    # 1 s per training step of 32 clips, evaluation free: 30 epochs x 32,136 / 32 s per run, 36 runs
    projection = project(spec, spec_cases(spec), lambda case: 1.0, 32, 30, lambda case: 0.0)
    assert projection["runs"] == 36
    assert abs(projection["device_hours"] - 36 * 30 * 32_136 / 32 / 3600) < 1e-9


def test_an_architecture_without_a_width_option_is_planned_at_width_1(monkeypatch):
    """docs/architectures.md lets an architecture's options have no `width`: its plan row says width 1
    (its own size), and its cost is the paper VGG's: 10.01 GMAC at 96 x 1366 (hand-counted)."""
    import dataclasses

    import architectures
    from bench.cost.plan import plan_row
    from bench.spec import Configuration, MelConfig

    @dataclasses.dataclass(frozen=True)
    class PlainOptions:
        def validate(self):
            return []

    monkeypatch.setattr(architectures, "_REGISTRY", dict(architectures._REGISTRY))
    architectures.register(architectures.Architecture(
        name="plain-vgg", options=PlainOptions, builder="tests.test_plan_totals:build_plain_vgg",
        planner="vgg_plan", description="the paper's VGG without options"))
    row = plan_row(Configuration("plain-vgg", MelConfig(12000, 96, 1, "log"), PlainOptions()), 29.1, 50, fvcore=False)
    assert row["width"] == 1.0 and round(row["gmac_analytic"], 2) == 10.01
    assert row["params"] == 17_365_940  # the paper VGG with 50 outputs, counted by hand in test_cost.py


def build_plain_vgg(input_config, n_tags, options):
    from architectures.options import VGGOptions
    from architectures.vgg import build

    return build(input_config, n_tags, VGGOptions())


def test_a_perf_file_of_another_shape_is_not_a_projection(tmp_path):
    from bench.cost.plan import measured_projection

    spec = load_spec(DEMO6)
    for text in ("[]", '{"spec": "demo", "projection": {"assumptions": [1]}}', '{"spec": "demo", "projection": 3}'):
        (tmp_path / "p.json").write_text(text)
        projection = measured_projection(spec, tmp_path / "p.json")
        assert projection is None or projection["epochs_per_run"] is None, text


@pytest.mark.parametrize("projection", [
    {"device_hours": 1},  # no epochs per run to print
    {"device_hours": "x", "runs": "y", "assumptions": {"epochs_per_run": 30}},
    {"device_hours": 2.5, "assumptions": {"epochs_per_run": "z"}},
    {"device_hours": 2.5, "runs": 264.5, "assumptions": {"epochs_per_run": 30}},
    {"device_hours": float("inf"), "assumptions": {"epochs_per_run": 30}},
    {"device_hours": 10**400, "assumptions": {"epochs_per_run": 30}},  # JSON's integers have no bound
    {"device_hours": 2.5, "runs": 10**400, "assumptions": {"epochs_per_run": 30}},
    # an empty projection had been read as one with nothing measured: "not measured", and no error with --perf
    {}, {"device_hours": None, "assumptions": {"epochs_per_run": None}},
], ids=["no-epochs", "strings", "epochs-string", "runs-fraction", "infinite", "hours-past-float", "runs-past-float",
        "empty", "nones"])
def test_a_perf_file_with_fields_bench_perf_never_writes_is_not_read(capsys, tmp_path, projection):
    """A perf JSON for the spec whose projection holds what `bench perf` never writes (hand-edited or
    foreign): `bench plan` beside it prints no projection (it ended in a TypeError or ValueError while
    formatting it) but says the file is not read, and named with --perf it is a one-line error."""
    perf = tmp_path / "perf" / "paper-mtat-vgg.json"
    perf.parent.mkdir()
    perf.write_text(json.dumps({"spec": "paper-mtat-vgg", "device": "cuda", "projection": projection}))
    assert main(["plan", str(SPECS / "paper-mtat-vgg.toml"), "--no-fvcore", "--results", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"projected device-hours: not read: {perf} is not")
    assert main(["plan", str(SPECS / "paper-mtat-vgg.toml"), "--no-fvcore", "--perf", str(perf)]) == 2
    assert "not the JSON `bench perf --out` writes" in capsys.readouterr().err


@pytest.mark.parametrize("text", ['{"spec": "paper-mtat-vgg", "projection": {',
                                  '{"spec": "other", "projection": null}'], ids=["truncated", "another-spec"])
def test_a_perf_file_at_the_default_path_that_is_not_this_specs_is_said_to_be_unread(capsys, tmp_path, text):
    """A damaged file, or another spec's of the same file name, at results/perf/<stem>.json read "not
    measured (bench perf SPEC --out <that file>)": advice to replace it, as if nothing were there."""
    perf = tmp_path / "perf" / "paper-mtat-vgg.json"
    perf.parent.mkdir()
    perf.write_text(text)
    assert main(["plan", str(SPECS / "paper-mtat-vgg.toml"), "--no-fvcore", "--results", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"projected device-hours: not read: {perf} is not the JSON bench perf writes for spec 'paper-mtat-vgg' "
        "(damaged, edited, or another spec's); bench perf SPEC --out FILE measures it, bench plan SPEC --perf FILE "
        "reads it")


def test_a_perf_file_nested_past_the_parsers_depth_is_not_a_projection(capsys, tmp_path):
    perf = tmp_path / "perf" / "paper-mtat-vgg.json"
    perf.parent.mkdir()
    perf.write_text("[" * 200_000 + "]" * 200_000)  # json.loads raises RecursionError, not ValueError
    assert main(["plan", str(SPECS / "paper-mtat-vgg.toml"), "--no-fvcore", "--results", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("projected device-hours: not read")


def test_a_network_too_large_for_fvcore_to_run_here_is_one_line(capsys, write_spec, monkeypatch):
    """fvcore counts GMAC by running the network on one clip: VGG at width 64 (allowed) has 70.7
    billion parameters, 283 GB in fp32, which torch cannot allocate on a workstation. That stopped
    `bench plan` with torch's traceback; the analytic count needs no memory (--no-fvcore)."""
    from bench.cost import gmac, plan

    def model_cost(*args, **kwargs):  # torch's words where the host refuses the memory
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 231928233984 bytes. Error code 12 (Cannot allocate memory)")

    spec = write_spec(MINIMAL_SPEC.replace("[[grid]]", "[arch.vgg]\nwidth = 64\n[[grid]]"))
    assert main(["plan", str(spec), "--no-fvcore", "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["configurations"]
    assert row["params"] > 70e9  # the analytic count, from a network built without memory
    plan._cost.cache_clear()
    monkeypatch.setattr(gmac, "model_cost", model_cost)
    try:
        assert main(["plan", str(spec)]) == 2
    finally:
        plan._cost.cache_clear()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith(
        "vgg at 96x1366: fvcore counts GMAC by running the network on one clip, and this machine could not allocate "
        "its memory; --no-fvcore counts them analytically, without running it\n")


def test_grid_totals_are_written_out_without_an_exponent(capsys, write_spec):
    """VGG at width 12 costs over 1,000 GMAC per clip at 96x1366 (10.01 at width 1; MACs grow with the
    square of the width): the totals said `1.4e+03-1.4e+03 GMAC per clip` (three figures with `g`)."""
    import re

    spec = write_spec(MINIMAL_SPEC.replace("[[grid]]", "[arch.vgg]\nwidth = 12\n[[grid]]"))
    assert main(["plan", str(spec), "--no-fvcore"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"; (1,\d{2}0)-\1 GMAC per clip, (1,\d{3}) summed over the runs\n", out), out
    assert "e+" not in out


def test_the_synthetic_sets_split_sizes_are_known_before_it_is_generated(write_spec, tiny_synthetic):
    import dataclasses

    from bench.data.datasets import load_index
    from bench.data.known import split_sizes, unknown_split_why

    synthetic = load_spec(write_spec(MINIMAL_SPEC)).dataset  # 600 clips, MTAT's 16 folders in turn
    # 600 = 16 x 37 + 8: folders 0-7 hold 38 clips, 8-f 37; train 0-b 8 x 38 + 4 x 37, valid c, test d-f
    assert split_sizes(synthetic) == (452, 37, 111)
    assert split_sizes(dataclasses.replace(synthetic, clips=400)) == (300, 25, 75)  # the demo's: 25 per folder
    # what the reader counts in a generated set (48 clips, 3 per folder)
    generated = dataclasses.replace(synthetic, clips=48, clip_seconds=3.0)
    index = load_index(generated, tiny_synthetic, generate=False, progress=False)
    assert tuple(index.counts()[s] for s in ("train", "valid", "test")) == split_sizes(generated) == (36, 3, 9)
    assert unknown_split_why(synthetic) == ""
    dropping = dataclasses.replace(synthetic, drop_untagged=True)
    assert split_sizes(dropping) is None and "drop_untagged = true" in unknown_split_why(dropping)
    assert "17 tags" in unknown_split_why(dropping)  # the set's 17, not the spec's n_tags = 50
    elsewhere = dataclasses.replace(synthetic, split_file="my-split")
    assert split_sizes(elsewhere) is None and "'my-split'" in unknown_split_why(elsewhere)


MANIFEST_SPEC = MINIMAL_SPEC.replace('name = "synthetic"', 'name = "manifest"\npath = "nowhere"')


def test_plan_says_why_a_grid_has_no_projection(write_spec, tmp_path, capsys):
    """A manifest's split sizes are known only once its CSV is read: `bench perf` makes no projection of
    it and says why (`no_projection`), and `bench plan` says the same rather than asking for bench perf,
    and takes that JSON as bench perf's."""
    spec_path = write_spec(MANIFEST_SPEC)
    assert main(["plan", str(spec_path), "--no-fvcore", "--results", str(tmp_path / "results")]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == ("projected device-hours: none before the dataset is read (a manifest's splits are counted "
                    "only when its CSV is read)")
    perf_json = tmp_path / "perf.json"  # as bench perf writes it for this spec (its other sections left out)
    perf_json.write_text(json.dumps({"spec": "t", "device": "cpu", "projection": None,
                                     "no_projection": "a manifest's splits are counted only when its CSV is read"}))
    assert main(["plan", str(spec_path), "--no-fvcore", "--perf", str(perf_json)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == (f"projected device-hours: none in {perf_json} (a manifest's splits are counted only when "
                    "its CSV is read)")


def test_the_totals_count_the_gmac_the_table_shows(write_spec):
    """fvcore's count where the table gives one (its `gmac` column; BatchNorm included), the analytic one
    where it does not (a network fvcore could not trace): the totals line agrees with the table."""
    spec = load_spec(write_spec(MINIMAL_SPEC.replace("seeds = [0]", "seeds = [0, 1]")))
    rows = [{"gmac": 2.5, "gmac_analytic": 2.4, "params": 10}, {"gmac": "", "gmac_analytic": 3.0, "params": 20}]
    totals = grid_totals(spec, rows)
    assert (totals["gmac_per_clip_min"], totals["gmac_per_clip_max"]) == (2.5, 3.0)
    assert totals["gmac_per_clip_sum_over_runs"] == pytest.approx(2 * 5.5) and totals["runs"] == 4
    assert totals["weights_bytes"] == 2 * 4 * 30 and totals["largest_weights_bytes"] == 80
