"""The per-tag heatmaps: a diverging colour scale centred at zero, and the table and figure against each
model's one global reference (96 mels, hop x1, log at the highest sample rate), where sample-rate effects
show.

The inputs are hand-made result files and matrices; the expected numbers are the ones written into them
(and the colour facts come from the colours themselves: CIE lightness, red against blue), never read back
from bench.report.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.report import figures
from bench.report.report import (
    per_tag_matrix,
    per_tag_matrix_global,
    report,
)

# --- the colour scale -------------------------------------------------------------------------------------


def lightness(rgba) -> float:
    """CIE L* (0 black .. 100 white) of an sRGB colour."""
    rgb = np.asarray(rgba[:3], dtype=float)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    y = float(linear @ [0.2126, 0.7152, 0.0722])
    return 116 * np.cbrt(y) - 16 if y > 216 / 24389 else 24389 / 27 * y


def heatmap_image(matrix: pd.DataFrame, **kwargs):
    fig = figures.per_tag(matrix, "vgg", **kwargs)
    return fig, fig.axes[0].images[0]


# losses up to 30 pp, gains only up to 5: the scale must still be centred at 0
LOPSIDED = pd.DataFrame({"48/x1": [-30.0, -12.0, 5.0], "8/x1": [-20.0, np.nan, 0.0]},
                        index=["vibrato", "drums", "voice"])


def test_norm_is_centred_at_zero_and_symmetric():
    _, image = heatmap_image(LOPSIDED)
    norm = image.norm
    assert float(norm(0.0)) == pytest.approx(0.5)
    for x in (0.5, 5.0, 12.0, 30.0):
        assert float(norm(x)) + float(norm(-x)) == pytest.approx(1.0)
        assert float(norm(x)) > 0.5 > float(norm(-x))
    assert float(norm(-30.0)) == pytest.approx(0.0)  # the largest change spans the scale
    assert float(norm(30.0)) == pytest.approx(1.0)


def test_colours_are_diverging_red_for_a_loss_blue_for_a_gain():
    _, image = heatmap_image(LOPSIDED)
    colour = lambda value: image.cmap(float(image.norm(value)))  # noqa: E731
    centre = colour(0.0)
    assert max(centre[:3]) - min(centre[:3]) < 0.05, "no change is a neutral colour"
    previous = lightness(centre)
    assert previous > 90, "no change is near white"
    for x in (3.0, 8.0, 15.0, 22.0, 30.0):
        loss, gain = colour(-x), colour(x)
        assert loss[0] > loss[2], f"a loss of {x} pp is red-ish: {loss}"
        assert gain[2] > gain[0], f"a gain of {x} pp is blue-ish: {gain}"
        # equal size, equal strength: the two sides are equally light, and darker the larger the change
        assert abs(lightness(loss) - lightness(gain)) < 5, x
        assert lightness(loss) < previous and lightness(gain) < previous
        previous = max(lightness(loss), lightness(gain))


def test_colour_bar_is_labelled_and_cells_say_their_change():
    fig, image = heatmap_image(LOPSIDED)
    colorbar = fig.axes[1]
    label = colorbar.get_ylabel()
    assert "ΔROC-AUC" in label and "(pp)" in label and "96/x1" in label
    assert label.endswith("+ gain, \N{MINUS SIGN} loss")
    cells = {t.get_text() for t in fig.axes[0].texts}
    assert {"\N{MINUS SIGN}30", "\N{MINUS SIGN}12", "+5", "\N{MINUS SIGN}20"} <= cells
    assert np.ma.is_masked(image.get_array()[1, 1])  # drums has no 8/x1 value: not coloured as a change


def drawn_texts(fig) -> list:
    """The texts a drawn figure shows: titles, axis labels, annotations and cell values, legend entries,
    and the tick labels of ticks inside the view (matplotlib keeps labels for ticks beyond it, undrawn)."""
    texts = [fig._suptitle, *fig.texts] if fig._suptitle is not None else list(fig.texts)
    for legend in fig.legends:
        texts += [legend.get_title(), *legend.get_texts()]
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                if low <= tick.get_loc() <= high:
                    texts += [tick.label1, tick.label2]
    unique = {id(t): t for t in texts}  # the suptitle is also among fig.texts
    return [t for t in unique.values() if t.get_visible() and t.get_text().strip()]


def overlapping_texts(fig) -> list[tuple[str, str]]:
    """Pairs of texts of a drawn figure whose boxes overlap by more than a pixel each way."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in drawn_texts(fig)]
    pairs = []
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            both = box_a.intersection(box_a, box_b)
            if both is not None and both.width > 1 and both.height > 1:
                pairs.append((a, b))
    return pairs


def test_a_wide_heatmap_still_says_each_change_and_no_text_overlaps():
    """A model's global heatmap of the demo: 13 configurations. Loss and gain look alike in grayscale,
    so every cell keeps its number (smaller), and the title lines, the colour bar's label and the tick
    labels stay clear of each other; the title says mean, not mean ± std: a heatmap draws no spread."""
    columns = [f"16k {m}/x{h} log" for m in (96, 48, 16, 8) for h in (1, 3, 10)] + ["12k 96/x1 log"]
    rng = np.random.default_rng(0)
    values = rng.uniform(-40, 40, size=(17, len(columns)))
    matrix = pd.DataFrame(values, columns=columns, index=[f"tag {i}" for i in range(17)])
    note = "mean over 2 seeds, 4 s clips"
    fig, _ = heatmap_image(matrix, note=note, reference="16k 96/x1 log")
    cells = [t for t in fig.axes[0].texts]
    assert len(cells) == int((np.abs(values) >= 1).sum())
    assert {t.get_text() for t in cells} >= {f"{v:+.0f}".replace("-", "\N{MINUS SIGN}") for v in values.ravel()
                                               if abs(v) >= 1}
    assert min(t.get_fontsize() for t in cells) >= 5
    assert fig.get_figwidth() <= 7.0
    assert overlapping_texts(fig) == []
    assert fig.axes[0].get_title(loc="left").endswith(note)


def test_a_narrow_heatmaps_title_is_wrapped_to_its_width(tmp_path):
    """MusiCNN's paper grid draws 2 configurations: its heading was wrapped to the 3.4 in figure but the
    caption after it was not, and the saved image came out 4.6 in wide, blank on the right."""
    from PIL import Image

    matrix = pd.DataFrame(np.linspace(-3, 3, 100).reshape(50, 2), columns=["48/x1", "32/x1"],
                          index=[f"tag {i}" for i in range(50)])
    note = "mean over 3 seeds (2 configurations with fewer), 29.1\N{NO-BREAK SPACE}s\N{NO-BREAK SPACE}clips"
    fig = figures.per_tag(matrix, "musicnn, width 1, mtat", note)
    png, _ = figures.save(fig, tmp_path / "narrow")
    with Image.open(png) as image:
        assert image.size[0] <= fig.get_figwidth() * 200 + 10  # saved at 200 dpi, cropped to what is drawn
    assert "29.1\N{NO-BREAK SPACE}s\N{NO-BREAK SPACE}clips" in fig.axes[0].get_title(loc="left")


def test_heatmap_titles_say_mean_without_a_spread():
    frame = pd.DataFrame({"n_seeds": [2, 2], "clip_seconds": [4.0, 4.0]})
    assert figures.caption(frame) == "mean ± std over 2 seeds, 4\N{NO-BREAK SPACE}s\N{NO-BREAK SPACE}clips"
    assert figures.caption(frame, spread=False) == "mean over 2 seeds, 4\N{NO-BREAK SPACE}s\N{NO-BREAK SPACE}clips"


# --- the global reference ---------------------------------------------------------------------------------


def result_doc(config, seed, roc_by_tag):
    arch, rate, mels, hop, log = config
    digest = hashlib.sha256(repr((config, seed)).encode()).hexdigest()[:10]
    return {
        "run_id": f"{arch}-{rate // 1000}k-{mels}mel-x{hop}-{log}-s{seed}-{digest}", "spec": "test", "status": "ok",
        "config": {"arch": arch, "width": 1.0, "sample_rate": rate, "n_mels": mels, "hop_multiplier": hop,
                   "log": log, "seed": seed, "dataset": "synthetic", "n_frames": 100},
        "canonical": {"arch": arch, "dataset": {"name": "synthetic", "clip_seconds": 8.0, "n_tags": 2}},
        "metrics": {"roc_auc": float(np.mean(list(roc_by_tag.values()))), "pr_auc": 0.5, "n_tags": 2,
                    "excluded_tags": [],
                    "per_tag": {t: {"roc_auc": v, "pr_auc": 0.5, "positives": 5} for t, v in roc_by_tag.items()}},
        "cost": {"gmac": mels / 96 / hop * rate / 16000, "gmac_analytic": 1.0, "params": 1000,
                 "storage_bytes": mels * 400, "train_seconds": 1.0, "epochs": 1, "best_epoch": 1,
                 "clips_per_second": 1.0},
    }


def write_runs(root: Path, runs: dict) -> Path:
    """runs: {(arch, rate, mels, hop, log): [per-tag ROC-AUC of seed 0, of seed 1, ...]}."""
    for config, seeds in runs.items():
        for seed, roc_by_tag in enumerate(seeds):
            doc = result_doc(config, seed, roc_by_tag)
            folder = root / "runs" / doc["run_id"]
            folder.mkdir(parents=True)
            (folder / "result.json").write_text(json.dumps(doc))
    return root


REFERENCE_16K = ("vgg", 16000, 96, 1, "log")
RUNS = {
    REFERENCE_16K: [{"air": 1.0, "drums": 0.9}, {"air": 1.0, "drums": 0.9}],
    # 12 kHz cannot represent air (6.3-7.2 kHz): 0.4 and 0.6, mean 0.5
    ("vgg", 12000, 96, 1, "log"): [{"air": 0.4, "drums": 0.9}, {"air": 0.6, "drums": 0.9}],
    ("vgg", 16000, 96, 1, "dB"): [{"air": 1.0, "drums": 0.7}, {"air": 1.0, "drums": 0.7}],
    ("vgg", 16000, 48, 1, "log"): [{"air": 0.9, "drums": 0.9}, {"air": 0.9, "drums": 0.9}],
}


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    root = write_runs(tmp_path_factory.mktemp("results") / "demo", RUNS)
    return root, report(root)


def read_csv(root: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(root / "report" / name)


def test_global_table_shows_the_12k_loss_of_air(reported):
    root, _ = reported
    table = read_csv(root, "per_tag_delta_global.csv")
    row = table[(table["sample_rate"] == 12000) & (table["tag"] == "air")]
    assert len(row) == 1
    assert row["roc_auc_diff"].item() == pytest.approx(-0.5)
    assert row["ref_sample_rate"].item() == 16000 and row["ref_roc_auc_mean"].item() == pytest.approx(1.0)
    # every configuration but the reference itself, both tags
    configs = set(zip(table["sample_rate"], table["n_mels"], table["hop_multiplier"], table["log"], strict=True))
    assert configs == {(12000, 96, 1, "log"), (16000, 96, 1, "dB"), (16000, 48, 1, "log")}
    assert len(table) == 3 * 2
    dB = table[(table["log"] == "dB") & (table["tag"] == "drums")]
    assert dB["roc_auc_diff"].item() == pytest.approx(-0.2)  # the log type's effect shows too

    matrix = per_tag_matrix_global(table)
    assert matrix.loc["air", "12k 96/x1 log"] == pytest.approx(-50.0)
    assert matrix.loc["drums", "12k 96/x1 log"] == pytest.approx(0.0)
    assert matrix.loc["drums", "16k 96/x1 dB"] == pytest.approx(-20.0)
    assert matrix.loc["air", "16k 48/x1 log"] == pytest.approx(-10.0)
    assert matrix.index[0] == "air"  # worst drop first
    assert list(matrix.columns) == ["12k 96/x1 log", "16k 48/x1 log", "16k 96/x1 dB"]  # paper order


def test_per_rate_table_has_no_12k_column(reported):
    root, _ = reported
    table = read_csv(root, "per_tag_delta.csv")
    assert 12000 not in set(table["sample_rate"])  # the 12 kHz run is its own sample rate's reference
    assert set(table["log"]) == {"log"}  # and the dB run its own log type's
    matrix = per_tag_matrix(table)
    assert list(matrix.columns) == ["48/x1"]
    assert matrix.loc["air", "48/x1"] == pytest.approx(-10.0)


def test_report_writes_the_global_figure(reported):
    root, summary = reported
    out = root / "report"
    for name in ("per_tag_delta_global.csv", "per_tag_global_vgg.png", "per_tag_global_vgg.pdf",
                 "per_tag_vgg.png", "per_tag_vgg.pdf"):
        assert (out / name).stat().st_size > 0, name
        assert out / name in summary.files
    assert not [w for w in summary.warnings if "global" in w]

    fig = figures.per_tag(per_tag_matrix_global(read_csv(root, "per_tag_delta_global.csv")), "vgg",
                          reference="16k 96/x1 log")
    ax = fig.axes[0]
    fig.draw_without_rendering()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["12k 96/x1 log", "16k 48/x1 log", "16k 96/x1 dB"]
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "air"
    assert ax.images[0].get_array()[0, 0] == pytest.approx(-50.0)
    assert "16k 96/x1 log" in fig.axes[1].get_ylabel() and "16k 96/x1 log" in ax.get_title(loc="left")


@pytest.mark.usefixtures("figures_unrendered")
def test_no_global_figure_without_the_global_reference(tmp_path):
    # the highest sample rate is 22.05 kHz, where 96/x1 log was not run: no global comparison, one note
    runs = dict(RUNS) | {("vgg", 22050, 48, 1, "log"): [{"air": 1.0, "drums": 0.9}]}
    summary = report(write_runs(tmp_path / "no-global", runs))
    out = tmp_path / "no-global" / "report"
    assert not list(out.glob("per_tag_global_*"))
    assert (out / "per_tag_vgg.png").exists()
    (note,) = [w for w in summary.warnings if "per_tag_global" in w]
    assert "22.05k 96/x1 log" in note and note.startswith("vgg")
    table = read_csv(tmp_path / "no-global", "per_tag_delta_global.csv")
    assert table.empty and "ref_sample_rate" in table.columns


@pytest.mark.parametrize("n_configs", [30, 59, 119])
def test_every_column_label_of_a_crowded_heatmap_is_readable(n_configs):
    """Up to 120 configurations (60 inputs x log/dB): each column keeps its label, none overprints
    another, at 4 pt or more (the figure grows wider than the page past about 60 columns)."""
    columns = [f"16k {m}/x{h} {log}" for m in range(8, 200) for h in (1, 3) for log in ("log", "dB")][:n_configs]
    values = np.random.default_rng(1).uniform(-20, 20, size=(10, n_configs))
    fig, _ = heatmap_image(pd.DataFrame(values, columns=columns, index=[f"tag {i}" for i in range(10)]),
                           reference="16k 96/x1 log")
    ticks = fig.axes[0].get_xticklabels()
    assert [t.get_text() for t in ticks] == columns
    assert min(t.get_fontsize() for t in ticks) >= 4
    assert [pair for pair in overlapping_texts(fig) if pair[0] in columns or pair[1] in columns] == []


# --- tag names in any script ----------------------------------------------------------------------------------


def test_a_tag_name_in_a_script_the_style_font_lacks_is_drawn_from_an_installed_font_that_has_it():
    """DejaVu Sans has no U+1D81 (LATIN SMALL LETTER D WITH PALATAL HOOK); STIXGeneral, which matplotlib
    ships, has it. Tag names of plain Latin letters change nothing."""
    from matplotlib.font_manager import FontProperties, findfont
    from matplotlib.ft2font import FT2Font

    assert figures.fonts_for(["guitar", "female vocalists", "hip-hop"]) == ([], [])
    # no font has an escape sequence's ESC, a control character or a zero-width space: none to install
    assert figures.fonts_for(["drums\x1b[0m", "vocals\x01", "hip\u200bhop"]) == ([], [])
    families, undrawn = figures.fonts_for(["drums", "\u1d81rone"])
    assert undrawn == [] and len(families) == 2
    assert 0x1D81 not in FT2Font(findfont(FontProperties(family=[families[0]]))).get_charmap()
    assert 0x1D81 in FT2Font(findfont(FontProperties(family=[families[1]]))).get_charmap()
    fig = figures.per_tag(pd.DataFrame({"48/x1": [-3.0, 2.0]}, index=["drums", "\u1d81rone"]), "vgg")
    assert all(label.get_fontfamily() == families for label in fig.axes[0].get_yticklabels())


def test_a_tag_name_no_installed_font_draws_is_said_once_not_warned_per_character(tmp_path, recwarn):
    """U+10FFFD (a private-use character) is in no font but matplotlib's placeholder one: its boxes are
    drawn, matplotlib's warning per character and figure is not, and the report says once which tags."""
    tag = "\U0010fffdtag\x1b[0m"
    runs = {config: [{"air": v, tag: v} for v in (0.9, 0.8)] for config in RUNS}
    summary = report(write_runs(tmp_path / "script", runs))
    (note,) = [w for w in summary.warnings if "no installed font" in w]
    # its escape sequence shown, not sent to the terminal
    assert note.startswith("1 tag name(s) have characters no installed font has, drawn as empty boxes in the "
                           "per-tag figures (\U0010fffdtag\\x1b[0m): install a font")
    assert (tmp_path / "script" / "report" / "per_tag_vgg.png").exists()
    assert not [w for w in recwarn if "missing from font" in str(w.message)]
    assert not [w for w in report(write_runs(tmp_path / "plain", RUNS)).warnings if "no installed font" in w]
