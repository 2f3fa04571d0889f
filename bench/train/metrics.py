"""Tagging metrics: macro ROC-AUC and PR-AUC (average precision) over tags, with scikit-learn.

A tag enters the macro average only if the split has both positives and negatives for it (ROC-AUC is
undefined otherwise); excluded tags are listed by name. Per-tag values are kept, because the macro
average hides which tags a low resolution loses.
"""

from __future__ import annotations

import numpy as np

from bench.data.index import has_roc_auc


def tag_metrics(y_true: np.ndarray, y_score: np.ndarray, tag_names: tuple[str, ...] | list[str]) -> dict:
    """Metrics of clip-level scores (n_clips, n_tags) against multi-hot targets of the same shape.

    Returns {"roc_auc", "pr_auc", "n_tags", "excluded_tags", "per_tag": {tag: {roc_auc, pr_auc,
    positives}}}; excluded tags have no per-tag entry.
    """
    # imported where it is used: sklearn (with scipy.stats) takes ~2 s to import, which every process that
    # imports the training loop without scoring would pay (a grid's parent, `bench perf`, `bench plan --latency`)
    from sklearn.metrics import average_precision_score, roc_auc_score

    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.shape != y_score.shape or y_true.ndim != 2 or y_true.shape[1] != len(tag_names):
        raise ValueError(f"shapes disagree: targets {y_true.shape}, scores {y_score.shape}, {len(tag_names)} tags")
    if not np.isfinite(y_score).all():
        raise ValueError("scores contain NaN or inf")
    if not np.isin(y_true, (0, 1)).all():  # a NaN or a 2 would otherwise read as a tag to exclude
        raise ValueError("targets must be multi-hot: 0 or 1 only")
    positives = y_true.sum(axis=0)
    scorable = has_roc_auc(positives, len(y_true))
    scored = np.flatnonzero(scorable).tolist()
    excluded = [name for name, ok in zip(tag_names, scorable, strict=True) if not ok]
    per_tag = {}
    if scored:
        # one call per metric for all tags (average=None scores each column as a binary problem, exactly
        # as a call per tag does), not one per tag: sklearn checks its arguments on every call (~7 ms)
        roc = np.atleast_1d(roc_auc_score(y_true[:, scored], y_score[:, scored], average=None))
        ap = np.atleast_1d(average_precision_score(y_true[:, scored], y_score[:, scored], average=None))
        # sums of products in floating point: a perfectly ranked tag's average precision can come to
        # 1 + 2**-52, which is no AUC (and which a report would have rejected as one)
        roc, ap = np.clip(roc, 0.0, 1.0), np.clip(ap, 0.0, 1.0)
        for k, j in enumerate(scored):
            per_tag[tag_names[j]] = {"roc_auc": float(roc[k]), "pr_auc": float(ap[k]), "positives": int(positives[j])}
    if not per_tag:
        raise ValueError("no tag has both positive and negative clips in this split")
    return {
        "roc_auc": float(np.mean([m["roc_auc"] for m in per_tag.values()])),
        "pr_auc": float(np.mean([m["pr_auc"] for m in per_tag.values()])),
        "n_tags": len(per_tag),
        "excluded_tags": excluded,
        "per_tag": per_tag,
    }
