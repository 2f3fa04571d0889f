"""Read TensorFlow checkpoints into .npz files, in a process of its own.

    python -m bench.tools.tf_checkpoint OUT_DIR PREFIX [PREFIX ...]

writes OUT_DIR/<i>.npz with every model variable of the i-th checkpoint (optimiser slots and
counters left out), named as in the checkpoint. `bench.tools.pretrained` runs this in a child process so
that TensorFlow and torch never share a process. The reader is TensorFlow's own
(`tf.compat.v1.train.NewCheckpointReader`, which takes a checkpoint prefix directly: the released
checkpoints have an empty basename and a `checkpoint` file pointing elsewhere). On failure it prints
one line, `PREFIX<TAB>reason`, and exits with status 1.
"""

from __future__ import annotations

import os
import sys

OPTIMIZER_MARKERS = ("/Adam", "beta1_power", "beta2_power", "global_step")


def is_model_variable(name: str) -> bool:
    return not any(marker in name for marker in OPTIMIZER_MARKERS)


def main(argv: list[str]) -> int:
    out_dir, prefixes = argv[0], argv[1:]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    for i, prefix in enumerate(prefixes):
        try:
            reader = tf.compat.v1.train.NewCheckpointReader(prefix)
            names = [n for n in reader.get_variable_to_shape_map() if is_model_variable(n)]
            arrays = {name: reader.get_tensor(name) for name in names}
        except Exception as exc:  # TF reports unreadable files as several exception types
            reason = " ".join(str(exc).split()) or type(exc).__name__
            print(f"{prefix}\t{type(exc).__name__}: {reason}")
            return 1
        np.savez(os.path.join(out_dir, f"{i}.npz"), **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
