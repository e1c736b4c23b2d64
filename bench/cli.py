"""The ``bench`` command: list, train, score, run, leaderboard, data check / prepare.

Every error a user can cause prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Iterator

# Before torch loads OpenMP: idle threads sleep instead of spinning. On a shared 2-core box spinning made a
# 64x64 pix2pix step 2.5x slower with another job running (tests/benchmarks/test_bench_threads.py); unloaded
# it is as fast or faster. A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from bench import progress
from bench.errors import BenchError, ConfigError
from bench.lock import folder_lock
from bench.schema import slug
from bench.suite import RESULTS_FILE

log = logging.getLogger("bench")

LIST_KINDS = ("datasets", "tasks", "methods", "generators", "discriminators", "metrics", "losses", "regularizers",
              "runners", "suites")


def _suite(name: str):
    from bench.config import load_suite
    from bench.registry import SUITES
    p = Path(name)
    if p.is_dir():
        raise ConfigError(f"{p} is a folder; give a suite name ({', '.join(SUITES.names())}) or a .toml file")
    if p.suffix == ".toml" or p.exists():
        return load_suite(p)
    if name not in SUITES:
        raise ConfigError(f"unknown suite '{name}'; choose one of: {', '.join(SUITES.names())} or give a .toml path")
    return load_suite(SUITES.get(name))


class PluginFault(BenchError):
    """An exception from inside a run (a plug-in's, most often), told in one line."""


@contextlib.contextmanager
def plugin_faults(run_dir: Path) -> Iterator[None]:
    """Turn an exception raised inside a run into one line; its traceback goes to the run's error.txt."""
    try:
        yield
    except (BenchError, KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # noqa: BLE001
        from bench.failures import describe_failure
        raise PluginFault(describe_failure(e, run_dir)) from e


def _out(value: str | None, suite_name: str) -> Path:
    out = Path(value or Path("runs") / suite_name)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder (it is created if missing)")
    return out


def _rows(suite, values: list[str] | None) -> list[str] | None:
    """``--rows A,B`` (repeatable): each value is a row name or slug, else a comma-separated list of them
    (so a row whose name holds a comma is still reachable)."""
    if not values:
        return None
    names = {r.name for r in suite.rows} | {slug(r.name) for r in suite.rows}
    out: list[str] = []
    for v in values:
        out += [v.strip()] if v.strip() in names else [p.strip() for p in v.split(",") if p.strip()]
    for r in out:
        suite.row(r)                       # unknown rows: one line naming the rows there are
    return out


def _seeds(n: int | None) -> list[int] | None:
    if n is None:
        return None
    if n < 1:
        raise ConfigError("--seeds must be at least 1")
    return list(range(n))


def cmd_list(args: argparse.Namespace) -> int:
    from bench.listing import describe
    kinds = [args.kind] if args.kind else list(LIST_KINDS)
    for k in kinds:
        print(describe(k))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from bench.config import schema_markdown
    print(schema_markdown())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bench.build import select_device
    from bench.suite import run_suite
    from leaderboards.build import write_leaderboard
    suite = _suite(args.suite)
    rows = _rows(suite, args.rows)
    out = _out(args.out, suite.name)
    report = run_suite(suite, out, profile=args.profile, rows=rows, seeds=_seeds(args.seeds),
                       device=select_device(args.device), deterministic=args.deterministic, resume=args.resume,
                       force_resume=args.force_resume, progress=not args.no_progress, leaderboard=write_leaderboard,
                       jobs=args.jobs)
    print(f"{report.ran} run(s) done, {report.skipped} skipped, {len(report.failed)} failed "
          f"in {report.seconds:.0f} s")
    for f in report.failed:
        print(f"  failed: {f}")
    if report.leaderboard:
        print(report.leaderboard.read_text())
        print(f"leaderboard: {report.leaderboard} (+ .csv, .png); results: {out / 'results.sqlite'}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from bench.build import select_device
    from bench.runspec import expand
    from bench.train import train
    suite = _suite(args.suite)
    specs = [s for s in expand(suite, args.profile, [args.row], [args.seed]) if s.task == (args.task or s.task)]
    if args.task and not specs:
        raise ConfigError(f"suite '{suite.name}' has no task '{args.task}'; tasks: {', '.join(suite.suite.tasks)}")
    out = _out(args.out, suite.name)
    device = select_device(args.device)
    with folder_lock(out):
        for spec in specs[:1] if args.task else specs:
            with plugin_faults(spec.run_dir(out)):
                o = train(spec, spec.run_dir(out), device=device, deterministic=args.deterministic,
                          resume=args.resume or args.force_resume, force_resume=args.force_resume,
                          progress=not args.no_progress)
            print(f"{spec.row} | {spec.task} | seed {spec.seed}: {o.status} at step {o.step}"
                  + (f" ({o.reason})" if o.reason else "") + (f" -> {o.checkpoint}" if o.checkpoint else ""))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from bench import checkpoint as ckpt
    from bench.build import select_device
    from bench.registry import reload_plugins
    from bench.runspec import RunSpec
    from bench.score import score_run
    path = Path(args.checkpoint)
    if (path / RESULTS_FILE).is_file() or (path / "runs").is_dir():
        raise ConfigError(f"{path} is a suite's output folder; pass one run's folder "
                          f"({path}/runs/<row>/seed<k>/<task>) or one of its checkpoints")
    if (path / "checkpoints").is_dir():
        latest = ckpt.latest_checkpoint(path)
        if latest is None:
            raise ConfigError(f"{path} holds no complete checkpoint")
        path = latest
    info = ckpt.read_run_info(path)
    reload_plugins(info.get("plugins") or [])          # --plugin is remembered by the run
    spec = RunSpec.from_dict(info["spec"])
    with plugin_faults(path.parent.parent):
        res = score_run(spec, path, device=select_device(args.device), progress=not args.no_progress)
    for k, v in res.values.items():
        print(f"{spec.task}/{k}\t{v:.6g}\tprotocol {res.protocol_hashes[k]}")
    return 0


def _store(out: Path, suite_name: str):
    from bench.results import ResultStore
    db = out / RESULTS_FILE
    if not db.is_file():
        raise ConfigError(f"no results at {db}; run `bench run {suite_name} --out {out}` first")
    return ResultStore(db)


def cmd_baseline(args: argparse.Namespace) -> int:
    from leaderboards.regress import baseline_frame
    suite = _suite(args.suite)
    out = _out(args.out, suite.name)
    profile = args.profile or suite.suite.default_profile
    frame = baseline_frame(suite, _store(out, suite.name), profile)
    dest = Path(args.file or out / f"baseline-{suite.name}-{profile}.csv")
    dest.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(dest, index=False)
    print(f"baseline of {suite.name} ({profile}): {int((frame['status'] == 'ok').sum())} values -> {dest}")
    return 0


def cmd_regress(args: argparse.Namespace) -> int:
    from bench.build import select_device
    from bench.suite import run_suite
    from leaderboards.build import write_leaderboard
    from leaderboards.regress import baseline_frame, compare, parse_tolerances, read_baseline
    suite = _suite(args.suite)
    baseline = read_baseline(Path(args.baseline))
    profile = args.profile or (str(baseline["profile"].iloc[0]) if len(baseline) else suite.suite.default_profile)
    tolerances = parse_tolerances(args.tolerance)
    out = _out(args.out, suite.name)
    if args.run:
        run_suite(suite, out, profile=profile, device=select_device(args.device), deterministic=args.deterministic,
                  resume=args.resume, progress=not args.no_progress, leaderboard=write_leaderboard)
    result = compare(baseline, baseline_frame(suite, _store(out, suite.name), profile), suite.tolerances, tolerances)
    print(result.report())
    return 1 if result.failed else 0


def cmd_status(args: argparse.Namespace) -> int:
    from bench.registry import SUITES
    from leaderboards.status import write_status
    from bench.config import load_suite
    suites = [load_suite(SUITES.get(n)) for n in SUITES.names()]
    # the page is committed and read on other machines: it says what is published, not what this machine holds
    path = write_status(suites, Path(args.results))
    print(path.read_text())
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from leaderboards.history import history_frame, plot_history
    suite = _suite(args.suite)
    out = _out(args.out, suite.name)
    frame = history_frame(_store(out, suite.name), suite.name, args.metric, args.profile)
    dest = Path(args.plot or out / f"history-{args.metric.replace('/', '_')}.png")
    plot_history(frame, dest, f"{suite.name}: {args.metric} over code versions")
    print(frame.to_string(index=False))
    print(f"plot: {dest}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.build import select_device
    from bench.suite import run_suite
    from leaderboards.build import directions, leaderboard_frame, write_leaderboard
    from leaderboards.compare import candidate_suite, compare_markdown, ranks
    from leaderboards.stats import add_statistics
    import pandas as pd
    out = Path(args.out or Path("runs") / f"compare-{args.discriminator}")
    name = f"{args.discriminator} (candidate)"
    frames = []
    for sname in [s.strip() for s in args.suites.split(",") if s.strip()]:
        suite = candidate_suite(_suite(sname), args.discriminator, name)
        sout = out / suite.name
        profile = args.profile or suite.suite.default_profile
        run_suite(suite, sout, profile=profile, seeds=_seeds(args.seeds), device=select_device(args.device),
                  resume=args.resume, progress=not args.no_progress, leaderboard=write_leaderboard)
        store = _store(sout, suite.name)
        records = store.latest(suite=suite.name, profile=profile)
        long = leaderboard_frame(suite, records)
        higher = directions(suite, long, {h: store.protocol(h) or {} for h in set(records["protocol_hash"]) - {""}},
                            records)
        frames.append(ranks(suite.name, add_statistics(long, records, higher), higher, name))
    frame = pd.concat(frames) if frames else pd.DataFrame()
    frame.to_csv(out / "compare.csv", index=False)
    (out / "compare.md").write_text(compare_markdown(frame, args.discriminator))
    print((out / "compare.md").read_text())
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from bench.publish import publish
    dest = publish(Path(args.out), Path(args.dest))
    print(f"published {args.out} to {dest} (see {dest / 'RUN.md'})")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from bench.results import ResultStore
    from bench.suite import RESULTS_FILE
    from leaderboards.build import write_leaderboard
    suite = _suite(args.suite)
    out = Path(args.out or Path("runs") / suite.name)
    db = out / RESULTS_FILE
    if not db.exists():
        raise ConfigError(f"no results at {db}; run `bench run {suite.name} --out {out}` first")
    md = write_leaderboard(suite, ResultStore(db), out, profile=args.profile)
    print(md.read_text())
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from bench.data.manage import check, prepare
    if args.action == "check":
        report = check(args.name, Path(args.root) if args.root else None)
        print(report.format())
        return 0 if report.ok else 1
    if not args.src:
        raise ConfigError("bench data prepare needs --src DIR (the folder or archive you downloaded)")
    dest = prepare(args.name, Path(args.src), Path(args.root) if args.root else None)
    print(f"prepared {args.name} at {dest}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench", description="cGAN bench: train, score and compare conditional GANs")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (it registers datasets, discriminators, metrics, ...)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--plugin", action="append", default=[], metavar="MODULE", dest="plugin_sub")
        sp.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
        sp.add_argument("--no-progress", action="store_true", help="no progress bars")
        sp.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for torch (default: BENCH_THREADS, else torch's: one per core); "
                             "1 is faster when another job shares the cores")

    s = sub.add_parser("list", help="list registered components")
    s.add_argument("kind", nargs="?", choices=LIST_KINDS)
    s.add_argument("--plugin", action="append", default=[], metavar="MODULE", dest="plugin_sub")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("schema", help="print the suite-file reference (every section and key)")
    s.set_defaults(func=cmd_schema)

    s = sub.add_parser("run", help="train, score and tabulate a suite")
    s.add_argument("suite", help="a registered suite name or a .toml path")
    s.add_argument("--profile", help="smoke | short | full (default: the suite's)")
    s.add_argument("--rows", action="append", help="row names or slugs, comma-separated or repeated (default: all)")
    s.add_argument("--seeds", type=int, help="run seeds 0..N-1 (default: the suite's)")
    s.add_argument("--out", help="output folder (default: runs/<suite>)")
    s.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    s.add_argument("--force-resume", action="store_true",
                   help="resume even where a run's checkpoint was made with another configuration")
    s.add_argument("--deterministic", action="store_true", help="deterministic algorithms (bit-exact on CPU)")
    s.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="train and score N runs at once in worker processes, each with threads / N torch threads "
                        "(small models use threads poorly: two 1-thread jobs on 2 cores do more than one 2-thread job)")
    common(s)
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("train", help="train one row of a suite")
    s.add_argument("suite")
    s.add_argument("--row", required=True)
    s.add_argument("--task", help="one task of the suite (default: all)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--profile")
    s.add_argument("--out")
    s.add_argument("--resume", action="store_true")
    s.add_argument("--force-resume", action="store_true")
    s.add_argument("--deterministic", action="store_true")
    common(s)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("score", help="score a checkpoint (or a run folder's newest checkpoint)")
    s.add_argument("checkpoint")
    common(s)
    s.set_defaults(func=cmd_score)

    s = sub.add_parser("leaderboard", help="rebuild a suite's leaderboard from its results store")
    s.add_argument("suite")
    s.add_argument("--out")
    s.add_argument("--profile")
    s.add_argument("--plugin", action="append", default=[], metavar="MODULE", dest="plugin_sub")
    s.set_defaults(func=cmd_leaderboard)

    s = sub.add_parser("baseline", help="write a baseline of a finished run's numbers for `bench regress`")
    s.add_argument("suite")
    s.add_argument("--out", help="the run's output folder (default: runs/<suite>)")
    s.add_argument("--profile")
    s.add_argument("--file", help="where to write it (default: OUT/baseline-<suite>-<profile>.csv)")
    s.set_defaults(func=cmd_baseline)

    s = sub.add_parser("regress", help="compare a run with a baseline; exit 1 when a number moved")
    s.add_argument("suite")
    s.add_argument("--baseline", required=True)
    s.add_argument("--out", help="the run to check (default: runs/<suite>); with --run, where to run it")
    s.add_argument("--run", action="store_true", help="run the suite first (into --out)")
    s.add_argument("--resume", action="store_true")
    s.add_argument("--deterministic", action="store_true")
    s.add_argument("--profile", help="default: the baseline's")
    s.add_argument("--tolerance", action="append", metavar="METRIC=VALUE",
                   help="allowed |new - old| for a metric key or task/metric (repeatable; over [tolerances])")
    common(s)
    s.set_defaults(func=cmd_regress)

    s = sub.add_parser("status", help="write the reproduction status page from the committed result folders")
    s.add_argument("--results", default="leaderboards/results")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("history", help="plot a metric over the code versions and dates of a results store")
    s.add_argument("suite")
    s.add_argument("--metric", required=True, help="a metric key or task/metric")
    s.add_argument("--out", help="the output folder holding results.sqlite (default: runs/<suite>)")
    s.add_argument("--profile")
    s.add_argument("--plot", help="where to draw it (default: OUT/history-<metric>.png)")
    s.set_defaults(func=cmd_history)

    s = sub.add_parser("compare", help="run a discriminator as one more row of existing suites and rank it")
    s.add_argument("--discriminator", required=True)
    s.add_argument("--suites", required=True, help="comma-separated suite names or .toml paths")
    s.add_argument("--profile")
    s.add_argument("--seeds", type=int)
    s.add_argument("--out")
    s.add_argument("--resume", action="store_true")
    common(s)
    s.set_defaults(func=cmd_compare)

    s = sub.add_parser("publish", help="copy a finished run's leaderboard, claims, curves, grids and store, "
                                       "with how it was made (RUN.md), into a folder to commit")
    s.add_argument("out", help="the --out folder of a finished `bench run`")
    s.add_argument("--dest", required=True, help="e.g. leaderboards/results/<suite>/<profile>")
    s.set_defaults(func=cmd_publish)

    s = sub.add_parser("data", help="check or prepare a real dataset")
    s.add_argument("action", choices=("check", "prepare"))
    s.add_argument("name")
    s.add_argument("--src", help="prepare: what you downloaded (folder or archive)")
    s.add_argument("--root", help="dataset folder (default: $BENCH_DATA_ROOT/<name>)")
    s.set_defaults(func=cmd_data)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    progress.set_enabled(not getattr(args, "no_progress", False))
    threads = getattr(args, "threads", None)
    threads = os.environ.get("BENCH_THREADS") if threads is None else threads
    if threads not in (None, ""):
        import torch
        try:
            torch.set_num_threads(int(threads))
        except (RuntimeError, ValueError):
            print(f"bench: error: --threads / BENCH_THREADS must be a positive integer, not {threads!r}",
                  file=sys.stderr)
            return 2
    try:
        from bench.registry import load_builtins, load_plugin
        load_builtins()
        for m in [*args.plugin, *getattr(args, "plugin_sub", [])]:
            load_plugin(m)
        return args.func(args)
    except BenchError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
