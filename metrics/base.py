"""The scorer contract, as ``metrics/`` uses it (defined in ``bench.contracts``).

Each metric module holds pure functions on tensors (tested against independent references)
and registers a *scorer* in ``bench.registry.METRICS`` under a short name used by suite files::

    @METRICS.register("depth")
    class DepthScorer(Scorer): ...

The scoring pass (``bench/score.py``) builds each scorer once per run as ``cls(ctx)``, then for
every evaluation batch calls ``update(pred, batch)`` and finally ``compute()``. ``pred`` is the
output the scorer reads (``reads``, default ``"y"``; ``name@output`` in a suite reads another) in
model space ([-1, 1], ``ctx.task.y_channels`` channels); ``ctx.task`` is the task seen from the
field that output estimates, so ``ctx.task.y(batch)`` is the matching target. ``feed`` says what
``pred`` is: ``"paired"`` (the output for this very batch), ``"samples"`` (samples of the model's
distribution; from the prior, with the batch's class labels, on tasks without paired inputs) or
``"joint"`` (several models at once: :class:`~bench.contracts.JointScorer`) or ``"log"`` (the run's own
training log up to the scored checkpoint: :class:`~bench.contracts.LogScorer`). Scorers decode
predictions through the task (``ctx.task.decode_labels`` / ``decode_depth``) and never branch on
a method's name.

``compute()`` returns ``{metric_key: float}``; leaderboard columns are ``<task>/<metric_key>``.
``protocol()`` returns a JSON-able dict of everything that defines the number (extractor and
its weights' sha256, resize mode, sample counts, crop, averaging, ...). It is hashed and stamped
on every result record, with which keys are better high (``higher_is_better``).
"""

from __future__ import annotations

from bench.contracts import JointScorer, LogScorer, ScoreContext, Scorer

__all__ = ["JointScorer", "LogScorer", "ScoreContext", "Scorer"]
