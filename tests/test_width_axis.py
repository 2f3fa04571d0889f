"""Network width as a grid axis: `width = [...]` in a `[[grid]]` block, checked from the outside
(spec files in, `bench plan` rows and run ids out) against counts worked out by hand."""

import hashlib
import json

import pytest

from bench.cli import main
from bench.core.errors import SpecError
from bench.spec import load_spec

from .conftest import MINIMAL_SPEC, ROOT, SPECS

DEMO6 = ROOT / "tests" / "data" / "demo6.toml"

REFERENCE_MTAT = """
name = "w"
seeds = [0]
[dataset]
name = "mtat"
clip_seconds = 29.1
n_tags = 50
[[grid]]
arch = ["vgg"]
sample_rate = [12000]
n_mels = [96]
hop_multiplier = [1]
log = ["log"]
width = [1.0, 0.5]
"""
"""The paper's reference input (12 kHz, 96 mels, hop x1: 96 x 1366) at two widths, 50 tags."""


def hand_count_vgg_96x1366(channels: tuple[int, int, int, int], n_tags: int = 50) -> tuple[int, int, int]:
    """(first conv, inner convs, linear) MACs of the VGG-CNN on 96 x 1366, from Table III's pools.

    Pools freq 2-4-3-4, time 4-5-8-8 give the blocks' input sizes
    96x1366 -> 48x341 -> 12x68 -> 4x8 (-> 1x1); a 3x3 'same' conv costs C_in * C_out * 9 * H * W.
    """
    c1, c2, c3, c4 = channels
    first = 96 * 1366 * 1 * c1 * 9
    inner = 48 * 341 * c1 * c2 * 9 + 12 * 68 * c2 * c3 * 9 + 4 * 8 * c3 * c4 * 9
    return first, inner, c4 * n_tags


def plan_json(capsys, path) -> list[dict]:
    assert main(["plan", str(path), "--format", "json", "--no-fvcore"]) == 0
    return json.loads(capsys.readouterr().out)["configurations"]


def test_plan_gmac_scales_with_width_squared_in_the_inner_layers(capsys, write_spec):
    # width 0.5 halves every channel count (128, 384, 768, 2048 are even: no rounding)
    rows = plan_json(capsys, write_spec(REFERENCE_MTAT))
    assert [r["width"] for r in rows] == [1.0, 0.5]
    by_width = {r["width"]: r for r in rows}
    for width, channels in ((1.0, (128, 384, 768, 2048)), (0.5, (64, 192, 384, 1024))):
        row = by_width[width]
        assert (row["input_shape"], row["pool_freq"], row["pool_time"]) == ("96x1366", "2-4-3-4", "4-5-8-8")
        assert row["gmac_analytic"] == pytest.approx(sum(hand_count_vgg_96x1366(channels)) / 1e9, rel=5e-6)
    first, _, linear = hand_count_vgg_96x1366((128, 384, 768, 2048))
    first_half, _, linear_half = hand_count_vgg_96x1366((64, 192, 384, 1024))
    inner = by_width[1.0]["gmac_analytic"] - (first + linear) / 1e9
    inner_half = by_width[0.5]["gmac_analytic"] - (first_half + linear_half) / 1e9
    assert inner_half / inner == pytest.approx(0.25, abs=1e-4)
    assert by_width[0.5]["params"] < by_width[1.0]["params"] / 3


def test_plan_table_shows_each_width(capsys):
    assert main(["plan", str(SPECS / "scaling-mtat-vgg.toml"), "--no-fvcore"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[1].split()
    reference = [line.split() for line in lines[2:] if " 96x1820 " in line]
    assert [float(cells[header.index("width")]) for cells in reference] == [1.0, 0.5, 0.25, 0.125]
    # width 1/8: channels 16, 48, 96, 256; maps 96x1820, 48x455, 12x91, 4x10 (pools 2x4, 4x5, 3x9, 4x10);
    # 3x3 convolutions and the 256 x 50 linear layer: 25,159,680 + 150,958,080 + 45,287,424 + 8,847,360
    # + 12,800 = 230,265,344 MACs, to 5 significant figures (rounded once)
    assert reference[3][header.index("gmac_analytic")] == "0.23027"


def test_plan_table_writes_large_gmac_as_whole_numbers(write_spec, capsys):
    """A network past 10,000 GMAC (width 32 at 96 x 1366, the spec's largest width x 1/2) showed `10101.` in
    the table: 5 significant figures are its whole GMAC there, with thousands separators as the totals."""
    assert main(["plan", str(write_spec(REFERENCE_MTAT.replace("[1.0, 0.5]", "[32.0]"))), "--no-fvcore"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header, (row,) = lines[1].split(), [line.split() for line in lines[2:] if " 96x1366 " in line]
    macs = sum(hand_count_vgg_96x1366((32 * 128, 32 * 384, 32 * 768, 32 * 2048)))
    assert macs > 10_000e9 and row[header.index("gmac_analytic")] == f"{round(macs / 1e9):,}"


def test_plan_table_writes_tiny_gmac_without_an_exponent(write_spec, capsys):
    """Width 1/32, 8 mel bands at hop x20: under 1e-4 GMAC, `g` wrote 3.2400e-05 beside 0.00023354 in one
    column."""
    spec = write_spec(REFERENCE_MTAT.replace("[1.0, 0.5]", "[0.03125]").replace("hop_multiplier = [1]",
                                                                                "hop_multiplier = [20]")
                      .replace("n_mels = [96]", "n_mels = [8]"))
    assert main(["plan", str(spec), "--no-fvcore", "--format", "json"]) == 0
    (planned,) = json.loads(capsys.readouterr().out)["configurations"]
    assert main(["plan", str(spec), "--no-fvcore"]) == 0
    lines = capsys.readouterr().out.splitlines()
    shown = lines[2].split()[lines[1].split().index("gmac_analytic")]
    assert planned["gmac_analytic"] < 1e-4 and "e" not in shown
    assert float(shown) == pytest.approx(planned["gmac_analytic"], rel=5e-5) and len(shown.lstrip("0.")) == 5


def test_run_ids_differ_by_width_and_keep_the_readable_prefix(write_spec):
    runs = load_spec(write_spec(REFERENCE_MTAT)).runs()
    assert [r.configuration.options.width for r in runs] == [1.0, 0.5]
    wide, narrow = (r.run_id for r in runs)
    assert wide != narrow
    assert wide.rsplit("-", 1)[0] == narrow.rsplit("-", 1)[0] == "vgg-12k-96mel-x1-log-s0"
    # width 1 in the grid is the same run as width 1 from [arch.vgg] (paper-mtat-vgg's reference, seed 0)
    assert wide == "vgg-12k-96mel-x1-log-s0-851f420f0b"


def test_block_width_overrides_the_arch_table_for_that_block_only(write_spec):
    text = MINIMAL_SPEC.replace('arch = ["vgg"]', 'arch = ["vgg", "musicnn"]') + """
[arch.vgg]
width = 0.0625
[arch.musicnn]
width = 0.25
segment_seconds = 2.0

[[grid]]
arch = ["vgg", "musicnn"]
sample_rate = 12000
n_mels = 96
hop_multiplier = 1
log = "log"
width = [0.5, 0.125]
"""
    configs = load_spec(write_spec(text)).configurations()
    got = [(c.arch, c.options.width) for c in configs]
    # block 0 (no width axis): the [arch.*] widths; block 1: each of its widths for each of its archs
    assert got == [("vgg", 0.0625), ("musicnn", 0.25), ("vgg", 0.5), ("vgg", 0.125),
                   ("musicnn", 0.5), ("musicnn", 0.125)]
    # the other options of the [arch.*] table are kept
    assert {c.options.segment_seconds for c in configs if c.arch == "musicnn"} == {2.0}


def test_deduplication_across_blocks_considers_width(write_spec):
    text = MINIMAL_SPEC.replace('log = ["log"]', 'log = ["log"]\nwidth = [1, 0.5]') + """
[[grid]]
arch = "vgg"
sample_rate = 12000
n_mels = [96, 48]
hop_multiplier = 1
log = "log"
width = [0.5, 0.25]

[[grid]]
arch = "vgg"
sample_rate = 12000
n_mels = 96
hop_multiplier = 1
log = "log"
"""
    configs = load_spec(write_spec(text)).configurations()
    got = [(c.mel.n_mels, c.options.width) for c in configs]
    # 96/0.5 appears in blocks 0 and 1; the last block (no width: [arch.vgg]'s default 1.0) repeats 96/1.0
    assert got == [(96, 1.0), (96, 0.5), (96, 0.25), (48, 0.5), (48, 0.25)]
    assert len({r.run_id for r in load_spec(write_spec(text)).runs()}) == 5


def test_a_single_width_equals_the_same_width_in_the_arch_table(write_spec):
    in_block = MINIMAL_SPEC.replace('log = ["log"]', 'log = ["log"]\nwidth = 0.25')
    in_table = MINIMAL_SPEC + "\n[arch.vgg]\nwidth = 0.25\n"
    a = load_spec(write_spec(in_block, "a.toml")).runs()
    b = load_spec(write_spec(in_table, "b.toml")).runs()
    assert [r.run_id for r in a] == [r.run_id for r in b]
    # and width = 1 (an integer) in a block is the run without a width anywhere
    plain = load_spec(write_spec(MINIMAL_SPEC, "c.toml")).runs()
    one = load_spec(write_spec(MINIMAL_SPEC.replace('log = ["log"]', 'log = ["log"]\nwidth = [1]'), "d.toml")).runs()
    assert [r.run_id for r in one] == [r.run_id for r in plain]


BAD_WIDTHS = [
    ("[1.0, -0.5]", "grid[0].width[1]", "-0.5"),
    ("[1.0, 0]", "grid[0].width[1]", "0"),
    ("[0.5, 65.0]", "grid[0].width[1]", "65.0"),
    ('[1.0, "half"]', "grid[0].width[1]", "'half'"),
    ("[1.0, true]", "grid[0].width[1]", "True"),
    ("[1.0, nan]", "grid[0].width[1]", "nan"),
    ("[]", "grid[0].width", "empty"),
]


@pytest.mark.parametrize("width,field,value", BAD_WIDTHS)
def test_a_bad_width_names_file_field_and_value(write_spec, capsys, width, field, value):
    path = write_spec(MINIMAL_SPEC.replace('log = ["log"]', f'log = ["log"]\nwidth = {width}'))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.field == field
    assert str(info.value).startswith(f"{path}: {field}: ") and value in str(info.value)
    assert main(["plan", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and field in err and value in err


def test_a_bad_width_in_a_later_block_names_that_block(write_spec):
    text = MINIMAL_SPEC + """
[[grid]]
arch = ["vgg", "musicnn"]
sample_rate = 12000
n_mels = 96
hop_multiplier = 1
log = "log"
width = [0.5, 0.5, 100]
"""
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(text))
    assert info.value.field == "grid[1].width[2]"  # the index as written, duplicates included
    assert "100" in str(info.value)


EXISTING_RUN_IDS = {
    "demo6.toml": [
        "vgg-16k-96mel-x1-log-s0-f89d7cb291",
        "vgg-16k-8mel-x1-log-s0-d8ee7a5eaa",
        "vgg-16k-96mel-x10-log-s0-31c3669726",
        "vgg-12k-96mel-x1-log-s0-6648dd11e9",
        "vgg-16k-96mel-x1-dB-s0-d059d183c3",
        "musicnn-16k-96mel-x1-log-s0-94819d751e",
    ],
    "paper-mtat-vgg.toml": [
        "vgg-12k-96mel-x1-log-s0-851f420f0b",
        "vgg-16k-96mel-x1-log-s0-a6124f3646",
        "vgg-16k-96mel-x4-dB-s0-632242d4b0",
        "vgg-16k-16mel-x1-dB-s0-42134a437c",
    ],
    "paper-mtat-musicnn.toml": ["musicnn-12k-96mel-x1-log-s1-66e224313c"],
    "paper-msd.toml": ["vgg-12k-48mel-x2-dB-s0-025ed3ebd0", "musicnn-12k-96mel-x1-dB-s2-8e7da9cc96"],
}
"""Run ids of the shipped specs (and of the earlier demo, tests/data/demo6.toml) from before grid blocks could
name a width (results are kept under them)."""


@pytest.mark.parametrize("name", sorted(EXISTING_RUN_IDS))
def test_existing_specs_keep_their_run_ids(name):
    """Ids written by earlier versions stay, but for VGG-CNNs whose rule-planned pools now pad their
    inputs instead of dropping the remainders: other networks, so other runs. Their ids differ by that
    padding alone: hashed without it, the canonical config gives the id they had."""
    runs = load_spec((SPECS if name != "demo6.toml" else DEMO6.parent) / name).runs()
    ids = []
    for run in runs:
        canonical = run.canonical()
        if canonical.pop("pool_padding", None) is None:
            ids.append(run.run_id)
        else:
            digest = hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
            assert run.run_id != f"{run.run_id[:-10]}{digest[:10]}"
            ids.append(f"{run.run_id[:-10]}{digest[:10]}")
    if name == "demo6.toml":
        assert ids == EXISTING_RUN_IDS[name]
        assert sum("pool_padding" in run.canonical() for run in runs) == 5  # its 8 s clips: the rule pools time
    else:  # the paper's 29.1 s clips: Table III (no padding), the ids as they were, unrebuilt
        assert not any(run.pool_padding() for run in runs)
        assert set(EXISTING_RUN_IDS[name]) <= {run.run_id for run in runs}


def test_scaling_spec_crosses_input_resolution_with_width(capsys):
    spec = load_spec(SPECS / "scaling-mtat-vgg.toml")
    keys = [(c.mel.n_mels, c.mel.hop_multiplier, c.options.width) for c in spec.configurations()]
    assert keys == [(96, 1, 1.0), (96, 1, 0.5), (96, 1, 0.25), (96, 1, 0.125),
                    (48, 1, 1.0), (24, 1, 1.0), (16, 1, 1.0),
                    (96, 2, 1.0), (96, 4, 1.0), (96, 10, 1.0)]
    assert {(c.arch, c.mel.sample_rate, c.mel.log) for c in spec.configurations()} == {("vgg", 16000, "log")}
    assert spec.seeds == (0, 1, 2) and len(spec.runs()) == 30
    assert (spec.dataset.name, spec.dataset.clip_seconds, spec.dataset.n_tags) == ("mtat", 29.1, 50)
    # its width-1 runs are paper-mtat-vgg's runs (same content), the narrower ones are new
    ids = {r.run_id for r in spec.runs()}
    paper = {r.run_id for r in load_spec(SPECS / "paper-mtat-vgg.toml").runs()}
    assert len(ids) == 30 and len(ids & paper) == 7 * 3
    # at matched cost: width 0.5 on the reference input costs about what 96 mels at x4 does
    rows = {(r["n_mels"], r["hop_multiplier"], r["width"]): r["gmac_analytic"]
            for r in plan_json(capsys, SPECS / "scaling-mtat-vgg.toml")}
    assert rows[(96, 1, 0.5)] == pytest.approx(rows[(96, 4, 1.0)], rel=0.1)
    assert rows[(96, 1, 0.125)] < rows[(96, 1, 0.25)] < rows[(96, 1, 0.5)] < rows[(96, 1, 1.0)]
