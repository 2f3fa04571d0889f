"""Frame counts and storage from the paper (section V), without audio."""

import pytest

from bench.core import framing

# The paper: a 29.1 s clip gives 1366 (12 kHz) and 1820 (16 kHz) frames at x1, 137 and 182 at x10;
# The frame counts are ceil(F1 / m) for every multiplier of the paper's Table II.
PAPER_FRAMES = {
    12000: {1: 1366, 2: 683, 3: 456, 4: 342, 5: 274, 10: 137},
    16000: {1: 1820, 2: 910, 3: 607, 4: 455, 5: 364, 10: 182},
}


@pytest.mark.parametrize("sample_rate", [12000, 16000])
@pytest.mark.parametrize("hop_multiplier", [1, 2, 3, 4, 5, 10])
def test_paper_frame_counts(sample_rate, hop_multiplier):
    assert framing.n_frames(29.1, sample_rate, hop_multiplier) == PAPER_FRAMES[sample_rate][hop_multiplier]


def test_frame_rule_is_ceil_of_x1_count_over_multiplier():
    # The paper's rule stated independently: ceil(F1 / m), F1 the x1 count.
    for sr in (8000, 12000, 16000, 22050, 44100):
        for seconds in (1.0, 3.0, 10.5, 29.1, 30.0):
            f1 = framing.n_frames(seconds, sr, 1)
            for m in range(1, 21):
                assert framing.n_frames(seconds, sr, m) == -(-f1 // m)


def test_clip_samples_round_the_product():
    assert framing.clip_samples(29.1, 12000) == 349_200
    assert framing.clip_samples(29.1, 16000) == 465_600
    # products a float makes a hair short of the integer (15434.999...; 3479.999...): rounded, not cut
    assert framing.clip_samples(0.7, 22050) == 15_435
    assert framing.clip_samples(0.29, 12000) == 3_480


def test_storage_bytes_96x1366():
    # 96 x 1366 values: 131136 floats, 524544 bytes in float32, 262272 in float16.
    assert framing.storage_bytes(96, 1366, 4) == 524_544
    assert framing.storage_bytes(96, 1366, 2) == 262_272


def test_the_architectures_copy_of_the_framing_agrees_with_the_front_ends():
    """architectures/ stands alone (no bench import), so it states the paper's frame counts itself:
    they must be what the front end computes for 29.1 s clips, and its hop unit the front end's."""
    from architectures import planning
    from bench.core import framing

    assert planning.BASE_HOP == framing.BASE_HOP
    for (sample_rate, hop), frames in planning.TABLE_III_FRAMES.items():
        assert framing.n_frames(framing.PAPER_CLIP_SECONDS, sample_rate, hop) == frames, (sample_rate, hop)
