"""A synthetic dataset in MagnaTagATune's exact layout, whose tags need known resolutions.

`generate(out_dir)` writes real MP3 files (mono, 16 kHz, ~46 kbit/s VBR; MTAT's are 32 kbit/s) into folders `0`-`9`,
`a`-`f` and an `annotations_final.csv` in MTAT's format, so the demo exercises the real MTAT reader,
decoder and cache. Every tag is an audible property of generated music (`TAGS`): instruments, tempo,
register, loudness, and five tags built so that a mel front end at a given resolution can or cannot
see them (docs/synthetic.md):

- frequency: `semitone` (a dyad one semitone apart; decoy 2-3 semitones apart) and `vibrato` (a
  whistle with +-15-30 cent vibrato; decoy a warble between two steady pitches 6 % apart) need
  narrow mel bands. Both decoys keep what a wide triangle measures, the power-weighted mean frequency,
  the same as the tag's, so 8 bands see them alike and 16 bands only at the triangles' corners.
- time: `ticks` (even clicks, 4 per beat; decoy click pairs 55-70 ms apart at half the rate, the same
  clicks per second) and `tremolo` (6.8-10.2 Hz amplitude modulation; decoy a 0.23-2.9 Hz swell) need
  short hops; at hop 2560 the frames cover a fifth of the signal and alias these rates.
- sample rate: `air` (a noise band at 6.3-7.2 kHz; independent decoy band at 4.3-5.2 kHz) only exists
  at 16 kHz.

Rhythmic layers run at multiples of the beat, so they reinforce the tempo tags instead of masking
them (a click layer at unrelated rates hides the tempo).

Why the carriers of the four frequency/time tags play in *every* clip: if a layer is in all positives
but only a share q of the negatives, a front end too coarse to see the tag's fine structure still
ranks by the layer's presence, with ROC-AUC 1 - q/2 (0.75 for q = 0.5). Only q = 1 lets such a tag
fall to chance where its resolution is missing. The `air` decoy is instead independent of the tag, so
at 12 kHz (where the tag's band is gone) nothing visible correlates with it.

Determinism: the tag plan comes from `np.random.default_rng([seed, 0])` and clip i's audio from
`default_rng([seed, 1, i])`, so the output does not depend on the number of worker processes. LAME
(through libsndfile) writes no date or random field, so the same numpy and libsndfile versions on
the same kind of CPU give byte-identical files (SIMD float paths may differ between CPUs).

Generation time and output size, as measured: docs/performance.md#measurements-behind-the-codes-choices.

Modules, in the order data flows: `plan` (tags, folders and names of every clip), `score` (tempo, key,
chords, register), `layers` (instruments and the resolution tags' carriers), `clip` (one mixed clip),
`files` (MP3s, annotations, completeness, the process pool).
"""

from bench.data.synthetic.clip import PEAK_LIMIT, synthesize
from bench.data.synthetic.files import (
                                        ANNOTATIONS,
                                        GENERATOR_VERSION,
                                        LOCK,
                                        META,
                                        MP3_RATES,
                                        SynthSummary,
                                        annotations_text,
                                        encode_mp3,
                                        generate,
                                        generation_problem,
                                        is_complete,
)
from bench.data.synthetic.plan import FOLDERS, PITCHED, SPLIT_OF_FOLDER, TAG_NAMES, TAGS, ClipPlan, Tag, plan_clips

__all__ = ["ANNOTATIONS", "FOLDERS", "GENERATOR_VERSION", "LOCK", "META", "MP3_RATES", "PEAK_LIMIT", "PITCHED",
           "SPLIT_OF_FOLDER", "TAGS", "TAG_NAMES", "ClipPlan", "SynthSummary", "Tag", "annotations_text",
           "encode_mp3", "generate", "generation_problem", "is_complete", "plan_clips", "synthesize"]
