"""The judges behind a results store: the sha256 of every learned scorer its protocols name.

A judge is a network a metric scores with (a feature extractor, a classifier, a segmenter); its
protocol names the weights by sha256 under a key ending in ``sha256`` (e.g. ``scorer.weights_sha256``).
Read generically from the stored protocol dicts (the harness knows no metric): :func:`judges` lists
them per task and metric for ``RUN.md``, :func:`check_one_judge_per_column` refuses a store whose
latest records of one column were measured with different judges.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bench.errors import ConfigError
from bench.results import ResultStore

COLUMN = ("suite", "profile", "task", "metric")


def sha256_keys(protocol: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """``(dotted key, value)`` of every key ending in ``sha256`` in a (nested) protocol dict."""
    items = protocol.items() if isinstance(protocol, dict) else \
        enumerate(protocol) if isinstance(protocol, list) else ()
    for k, v in items:
        key = f"{prefix}{k}"
        if isinstance(v, (dict, list)):
            yield from sha256_keys(v, key + ".")
        elif str(k).endswith("sha256") and isinstance(v, str) and v:
            yield key, v


def _latest_with_protocols(store: ResultStore) -> tuple[Any, dict[str, dict]]:
    latest = store.latest()
    latest = latest[latest["protocol_hash"] != ""]
    protocols = {h: store.protocol(h) or {} for h in sorted(set(latest["protocol_hash"]))}
    return latest, protocols


def judges(store: ResultStore) -> list[tuple[str, str, str, str]]:
    """``(task, metric, judge key, sha256)`` of the latest records, deduplicated and sorted; ``metric`` is
    the protocol's metric (the suite's metric entry, e.g. ``fid``) or else the record's."""
    latest, protocols = _latest_with_protocols(store)
    out = set()
    for task, metric, h in latest[["task", "metric", "protocol_hash"]].drop_duplicates().itertuples(index=False):
        p = protocols[h]
        out |= {(task, str(p.get("metric", metric)), key, sha) for key, sha in sha256_keys(p)}
    return sorted(out)


def check_one_judge_per_column(store: ResultStore) -> None:
    """Raise :class:`ConfigError` when the latest records of one (suite, profile, task, metric) column name
    different sha256 values under one judge key (two judges measured the numbers of one column)."""
    latest, protocols = _latest_with_protocols(store)
    for col, group in latest.groupby(list(COLUMN), sort=True):
        seen: dict[str, set[str]] = {}
        for h in sorted(set(group["protocol_hash"])):
            for key, sha in sha256_keys(protocols[h]):
                seen.setdefault(key, set()).add(sha)
        for key, shas in sorted(seen.items()):
            if len(shas) > 1:
                suite, profile, task, metric = col
                short = ", ".join(s[:12] for s in sorted(shas))
                raise ConfigError(
                    f"{store.path}: column {task}/{metric} (suite {suite}, profile {profile}) was measured with "
                    f"{len(shas)} different judges ({key}: {short}); score all its runs with one judge (run the "
                    "suite into a new --out with one BENCH_CACHE_DIR and code version) and publish that")
