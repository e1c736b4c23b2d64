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

from bench import progress
from bench.errors import BenchError, ConfigError
from bench.lock import folder_lock
from bench.schema import slug
from bench.results import RESULTS_FILE

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


def default_out(name: str) -> Path:
    """``runs/<slug of name>``: a suite's (or a compared discriminator's) name never decides where output goes
    beyond that (an absolute path or ``../..`` as the name stays under ``runs/``); ``--out`` does."""
    if not slug(name):
        raise ConfigError(f"the name {name!r} has no letter or digit to name an output folder; give --out")
    return Path("runs") / slug(name)


def _out(value: str | None, suite_name: str) -> Path:
    out = Path(value) if value else default_out(suite_name)
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
        got = [v.strip()] if v.strip() in names else [p.strip() for p in v.split(",") if p.strip()]
        if not got:                        # "" or ",": no row at all would run every row
            raise ConfigError(f"--rows {v!r} names no row; give row names or slugs, e.g. --rows "
                              f"'{slug(suite.rows[0].name)}'")
        out += got
    for r in out:
        suite.row(r)                       # unknown rows: one line naming the rows there are
    return out


def _keep(v: str) -> int:
    if v == "all":
        return 10 ** 9
    if not v.isdigit() or int(v) < 1:
        raise argparse.ArgumentTypeError(f"{v!r}: give a count of 1 or more, or 'all'")
    return int(v)


CPU_CONFIRM_MIN = 60.0      # a profile estimated above this on 2 CPU cores asks for --yes before it starts


def _check_cpu_estimate(suite, profile: str | None, rows: list[str] | None, args: argparse.Namespace) -> None:
    """Before a long run on a CPU: a profile measured at over an hour (scaled to the rows, tasks and seeds
    chosen), or a GPU-sized one with no CPU estimate (short, full), needs --yes."""
    name = profile or suite.suite.default_profile
    prof = suite.profile(name)
    base = name.partition("@x")[0]
    share = ((len(rows) if rows else len(suite.rows)) / len(suite.rows)
             * (len(_tasks(suite, args.tasks) or suite.suite.tasks) / len(suite.suite.tasks))
             * (len(_run_seeds(args) or suite.suite.seeds) / max(1, len(suite.suite.seeds))))
    if prof.minutes_cpu is not None:
        est = prof.minutes_cpu * share
        if est > CPU_CONFIRM_MIN:
            gpu = f", about {prof.minutes_gpu * share:.0f} min on one GPU" if prof.minutes_gpu else ""
            raise ConfigError(f"profile '{name}' of {suite.name} takes about {est / 60:.1f} h on 2 CPU cores for the "
                              f"runs chosen{gpu}; pass --yes to start it (or --rows / --tasks / --seeds for fewer)")
    elif base in ("short", "full"):
        gpu = f" (about {prof.minutes_gpu * share:.0f} min on one GPU)" if prof.minutes_gpu else ""
        raise ConfigError(f"profile '{name}' of {suite.name} is sized for a GPU{gpu} and this run would use the CPU; "
                          "pass --yes to start it anyway, or choose a cpu / smoke profile (bench list suites)")


def _tasks(suite, values: list[str] | None) -> list[str] | None:
    """``--tasks A,B`` (repeatable): tasks of the suite to run (default: all of them)."""
    if not values:
        return None
    out = [p.strip() for v in values for p in v.split(",") if p.strip()]
    if not out:
        raise ConfigError(f"--tasks names no task; the suite's tasks: {', '.join(suite.suite.tasks)}")
    for t in out:
        if t not in suite.suite.tasks:
            raise ConfigError(f"--tasks {t!r} is not a task of suite '{suite.name}'; its tasks: "
                              f"{', '.join(suite.suite.tasks)}")
    return list(dict.fromkeys(out))


STORE_HELP = ("the results store: postgresql://user@host/db[?schema=NAME] (default: OUT/results.sqlite); "
              "many hosts may write it")
EXECUTOR_CHOICES = ("local", "slurm", "submitit-local", "ray")     # bench.executors.EXECUTORS (not imported for --help)


def _executor(args: argparse.Namespace):
    from bench.executors import ExecutorOptions
    extra = {}
    for kv in args.slurm:
        k, sep, v = kv.partition("=")
        if not sep or not k.strip():
            raise ConfigError(f"--slurm {kv!r}: give KEY=VALUE, e.g. --slurm account=lab")
        extra[k.strip().removeprefix("slurm_")] = v
    return ExecutorOptions(name=args.executor, gpus_per_run=args.gpus_per_run, cpus_per_run=args.cpus_per_run,
                           partition=args.partition, slurm=extra, address=args.ray_address)


MAX_SEEDS = 10_000


def _seeds(n: int | None) -> list[int] | None:
    if n is None:
        return None
    if n < 1:
        raise ConfigError("--seeds must be at least 1")
    if n > MAX_SEEDS:
        raise ConfigError(f"--seeds {n} is more than {MAX_SEEDS} runs per row; give the number of seeds to run")
    return list(range(n))


def _run_seeds(args: argparse.Namespace) -> list[int] | None:
    """``bench run``'s seeds: ``--seed K`` (repeated: just those) or ``--seeds N`` (0..N-1), else the suite's."""
    if not getattr(args, "seed", None):
        return _seeds(args.seeds)
    if args.seeds is not None:
        raise ConfigError("give --seeds N (seeds 0..N-1) or --seed K (just seed K, repeated for several), not both")
    if bad := [k for k in args.seed if not 0 <= k < MAX_SEEDS]:
        raise ConfigError(f"--seed {bad[0]} is outside 0..{MAX_SEEDS - 1}")
    return sorted(set(args.seed))


def _budget_profile(suite, profile: str | None, budget: str | None) -> str | None:
    """``--budget 0.3,1,3``: the ladder profile over ``profile`` (``<profile>@x0.3-1-3``): one run of the
    largest multiple of its steps per row and seed, scored at each rung's step too."""
    if not budget:
        return profile
    from bench.config import ladder_name
    try:
        rungs = sorted({float(r) for r in budget.split(",") if r.strip()})
    except ValueError:
        rungs = []
    if not rungs or any(not r > 0 for r in rungs):
        raise ConfigError(f"--budget '{budget}' must be positive multiples of the profile's steps, e.g. 0.3,1,3")
    name = ladder_name(profile or suite.suite.default_profile, rungs)
    suite.profile(name)                     # made and checked now, before anything runs
    return name


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
    profile = _budget_profile(suite, args.profile, args.budget)
    if args.keep_checkpoints is not None:          # the profile's, for this command (not part of a run's hashes)
        import dataclasses
        name = profile or suite.suite.default_profile
        suite.profiles[name] = dataclasses.replace(suite.profile(name), keep_checkpoints=args.keep_checkpoints)
    device = select_device(args.device)
    if device.type == "cpu" and not args.yes:
        _check_cpu_estimate(suite, profile, rows, args)
    if args.track:
        from bench.tracking import enable
        enable(args.track, out, suite.name)
    jobs = args.jobs
    if jobs is None:                              # one worker per visible GPU, else one
        from bench.jobs import visible_gpus
        jobs = max(1, len(visible_gpus(device)))
    report = run_suite(suite, out, profile=profile, rows=rows, seeds=_run_seeds(args),
                       tasks=_tasks(suite, args.tasks), device=device, deterministic=args.deterministic,
                       resume=args.resume, force_resume=args.force_resume, progress=not args.no_progress,
                       leaderboard=write_leaderboard, jobs=jobs, isolate=not args.in_process,
                       time_limit_min=args.time_limit, stall_limit_min=args.stall_limit, executor=_executor(args),
                       store_url=args.store)
    print(f"{report.ran} run(s) done, {report.skipped} skipped, {len(report.failed)} failed "
          f"in {report.seconds:.0f} s")
    for f in report.failed:
        print(f"  failed: {f}")
    if report.leaderboard:
        print(report.leaderboard.read_text())
        store = args.store.split("@")[-1] if args.store else out / RESULTS_FILE
        print(f"leaderboard: {report.leaderboard} (+ .csv, .png); results: {store}")
        print(f"open the report: {report.leaderboard.with_name('report.html')}")
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
    from bench import distributed
    w = distributed.world()                           # under torchrun: rank 0 holds the folder and prints
    with folder_lock(out) if w.main else contextlib.nullcontext():
        for spec in specs[:1] if args.task else specs:
            with plugin_faults(spec.run_dir(out)):
                o = train(spec, spec.run_dir(out), device=device, deterministic=args.deterministic,
                          resume=args.resume or args.force_resume, force_resume=args.force_resume,
                          progress=not args.no_progress)
            if w.main:
                print(f"{spec.row} | {spec.task} | seed {spec.seed}: {o.status} at step {o.step}"
                      + (f" ({o.reason})" if o.reason else "") + (f" -> {o.checkpoint}" if o.checkpoint else ""))
    if w.parallel and distributed.dist.is_initialized():
        distributed.dist.destroy_process_group()
    return 0


def _score_sets(args: argparse.Namespace) -> int:
    """``bench score --gen PATH --real PATH``: two image sets scored as they are, stamped and stored like a run."""
    from bench.build import select_device
    from bench.data.paths import cache_dir
    from bench.imagesets import load_images
    from bench.provenance import protocol_hash, running_code_version
    from bench.registry import METRICS
    from bench.results import ResultRecord, ResultStore
    name = args.metric
    cls = METRICS.get(name)
    score_sets = getattr(cls, "score_sets", None)
    if score_sets is None:
        raise ConfigError(f"metric '{name}' scores runs, not image sets; use fid (metrics fid, kid, is, prc, dc)")
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if not args.real and set(metrics) - {"is"}:
        raise ConfigError("--real is needed for every metric but is (Inception Score); give --real PATH")
    gen, gen_desc = load_images(args.gen, size=args.size)
    real, real_desc = load_images(args.real, size=args.size) if args.real else (None, None)
    options: dict = {"metrics": metrics, "extractor": args.extractor}
    options |= {k: v for k, v in (("weights_path", args.weights), ("resize", args.resize)) if v}
    values, protocol = score_sets(gen, real if real is not None else gen[:0], options, select_device(args.device),
                                  cache_dir())
    protocol = {**protocol, "gen": gen_desc, "real": real_desc, "feed": "sets"}
    h = protocol_hash(protocol)
    for k, v in values.items():
        print(f"{k}\t{v:.6g}\tprotocol {h}")
    if args.out:
        store = ResultStore(Path(args.out) / RESULTS_FILE)
        store.add_protocol(h, protocol)
        store.append([ResultRecord(suite="score", row=gen_desc["source"], task=(real_desc or {}).get("source", ""),
                                   seed=0, profile="sets", metric=k, value=v, checkpoint="", protocol_hash=h,
                                   code_version=running_code_version()) for k, v in values.items()])
        print(f"results: {Path(args.out) / RESULTS_FILE}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from bench import checkpoint as ckpt
    from bench.build import select_device
    from bench.registry import check_recorded_plugins
    from bench.runspec import RunSpec
    from bench.score import score_run
    if args.gen:
        return _score_sets(args)
    if not args.checkpoint:
        raise ConfigError("bench score needs a checkpoint or run folder, or --gen PATH [--real PATH]")
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
    check_recorded_plugins(info.get("plugins") or [])   # never imported on the run's word: --plugin names them
    spec = RunSpec.from_dict(info["spec"])
    from bench import distributed
    w, device = distributed.start(select_device(args.device))    # under torchrun: the test batches split N ways
    with plugin_faults(path.parent.parent):
        res = score_run(spec, path, device=device, progress=not args.no_progress and w.main)
    for k, v in res.values.items():
        print(f"{spec.task}/{k}\t{v:.6g}\tprotocol {res.protocol_hashes[k]}")
    if w.parallel and distributed.dist.is_initialized():
        distributed.dist.destroy_process_group()
    return 0


def _store(out: Path, suite_name: str):
    from bench.results import ResultStore
    db = out / RESULTS_FILE
    if not db.is_file():
        raise ConfigError(f"no results at {db}; run `bench run {suite_name} --out {out}` first")
    return ResultStore(db)


def cmd_baseline(args: argparse.Namespace) -> int:
    from leaderboards.regress import baseline_frame, environment
    suite = _suite(args.suite)
    out = _out(args.out, suite.name)
    profile = args.profile or suite.suite.default_profile
    if args.run:
        _run_for_regress(args, suite, out, profile, _seeds(args.seeds))
    frame = baseline_frame(suite, _store(out, suite.name), profile, environment(out))
    dest = Path(args.file or out / f"baseline-{slug(suite.name)}-{slug(profile)}.csv")
    dest.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(dest, index=False)
    held = frame[frame["status"].isin(["ok", "degenerate"])]
    print(f"baseline of {suite.name} ({profile}): {len(held)} values of {held.groupby(['row', 'column']).ngroups} "
          f"cells, seeds {', '.join(map(str, sorted(set(held['seed']))))} -> {dest}")
    return 0


def _run_for_regress(args: argparse.Namespace, suite, out: Path, profile: str, seeds: list[int] | None) -> None:
    from bench.build import select_device
    from bench.suite import run_suite
    from leaderboards.build import write_leaderboard
    run_suite(suite, out, profile=profile, seeds=seeds, device=select_device(args.device),
              deterministic=args.deterministic, resume=args.resume, progress=not args.no_progress,
              leaderboard=write_leaderboard)


def cmd_regress(args: argparse.Namespace) -> int:
    from leaderboards.build import directions, leaderboard_frame, store_protocols
    from leaderboards.regress import baseline_frame, compare, environment, parse_tolerances, read_baseline
    suite = _suite(args.suite)
    baseline = read_baseline(Path(args.baseline), suite.name)
    profile = args.profile or str(baseline["profile"].iloc[0])
    tolerances = parse_tolerances(args.tolerance)
    if args.mode == "statistical" and (tolerances or args.suite_tolerances):
        raise ConfigError("--tolerance and --suite-tolerances apply to --mode exact only; the statistical mode "
                          "tests against the baseline's own seed noise")
    if not 0 < args.alpha < 1:
        raise ConfigError(f"--alpha must be between 0 and 1, not {args.alpha}")
    out = _out(args.out, suite.name)
    if args.run:                                       # the baseline's seeds, unless --seeds says otherwise
        seeds = _seeds(args.seeds) or sorted({int(s) for s in baseline["seed"].dropna()})
        _run_for_regress(args, suite, out, profile, seeds)
    store = _store(out, suite.name)
    current = baseline_frame(suite, store, profile, environment(out))
    records = store.latest(suite=suite.name, profile=profile)
    protocols = store_protocols(store, records)
    higher = directions(suite, leaderboard_frame(suite, records, protocols), protocols, records)
    result = compare(baseline, current, args.mode, higher, suite.tolerances if args.suite_tolerances else {},
                     tolerances, args.alpha)
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
    from leaderboards.history import history_frame, plot_history, run_folders
    suite = _suite(args.suite)
    if args.runs and args.out:
        raise ConfigError("give --runs (a series of run folders) or --out (one folder), not both")
    if args.runs:
        folders = run_folders(args.runs)
        where = Path(os.path.commonpath([f.resolve() for f in folders]))
        where = where.parent if len(folders) == 1 else where
    else:
        where = _out(args.out, suite.name)
        _store(where, suite.name)                      # one line when it holds no results
        folders = [where]
    frame = history_frame(folders, suite, args.metric, args.profile)
    metric = "".join(c if c.isalnum() or c in "-." else "_" for c in args.metric)
    dest = Path(args.plot or where / f"history-{slug(suite.name)}-{metric}.png")
    plot_history(frame, dest, f"{suite.name}: {args.metric} over code versions ({len(folders)} run folder(s))")
    table = frame.drop(columns="code_version")
    table["first_record"] = table["first_record"].dt.strftime("%Y-%m-%d %H:%M")
    print(table.to_string(index=False))
    print(f"plot: {dest}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.build import select_device
    from bench.suite import run_suite
    from leaderboards.build import directions, leaderboard_frame, ranges, store_protocols, write_leaderboard
    from leaderboards.compare import Plan, candidate_suite, compare_markdown, established_rows, preflight, verdicts
    import pandas as pd
    out = Path(args.out) if args.out else default_out(f"compare-{args.discriminator}")
    name = f"{args.discriminator} (candidate)"
    wanted = [p.strip() for v in args.rows or [] for p in v.split(",") if p.strip()]
    device = select_device(args.device)
    plans = []
    for sname in [s.strip() for s in args.suites.split(",") if s.strip()]:
        suite = candidate_suite(_suite(sname), args.discriminator, name)
        against = established_rows(suite, name, wanted)
        if not against:
            raise ConfigError(f"suite '{suite.name}' has none of the rows {', '.join(wanted)}; its rows: "
                              f"{', '.join(r.name for r in suite.rows if r.name != name)}")
        plans.append(Plan(suite, out / suite.name, args.profile or suite.suite.default_profile,
                          [*against, name] if wanted else None, _seeds(args.seeds), against))
    if not plans:
        raise ConfigError("--suites names no suite; give e.g. --suites quickstart,fusion-table3")
    unknown = [w for w in wanted if not any(w in p.against or w in map(slug, p.against) for p in plans)]
    if unknown:
        raise ConfigError(f"no suite of --suites has the row(s) {', '.join(unknown)}")
    preflight(plans, device, args.resume)                # every suite's data and weights before any training
    frames = []
    for p in plans:
        run_suite(p.suite, p.out, profile=p.profile, rows=p.rows, seeds=p.seeds, device=device, resume=args.resume,
                  progress=not args.no_progress, leaderboard=write_leaderboard)
        store = _store(p.out, p.suite.name)
        records = store.latest(suite=p.suite.name, profile=p.profile)
        protocols = store_protocols(store, records)
        long = leaderboard_frame(p.suite, records, protocols)
        higher = directions(p.suite, long, protocols, records)
        frames.append(verdicts(p.suite.name, long, records, higher, ranges(p.suite, long), name, p.against))
    frame = pd.concat(frames, ignore_index=True)
    frame.to_csv(out / "compare.csv", index=False)
    (out / "compare.md").write_text(compare_markdown(frame, args.discriminator))
    print((out / "compare.md").read_text())
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from bench.publish import publish
    dest = publish(Path(args.out), Path(args.dest))
    print(f"published {args.out} to {dest} (see {dest / 'RUN.md'})")
    return 0


def cmd_republish(args: argparse.Namespace) -> int:
    from bench.judges import check_one_judge_per_column
    from bench.provenance import code_version, git_commit
    from bench.publish import republish_notes
    from bench.results import ResultStore
    from leaderboards.build import write_leaderboard
    dest = Path(args.dest)
    db = dest / RESULTS_FILE
    if not db.is_file():
        raise ConfigError(f"{dest} holds no {RESULTS_FILE}; pass a folder `bench publish` wrote "
                          "(e.g. leaderboards/results/<suite>/<profile>)")
    store = ResultStore(db)
    latest = store.latest()
    names = sorted(set(latest["suite"])) if len(latest) else []
    profiles = sorted(set(latest["profile"])) if len(latest) else []
    if not args.suite and len(names) != 1:
        raise ConfigError(f"{db} holds {len(names)} suites ({', '.join(names) or 'none'}); name one with --suite")
    if not args.profile and len(profiles) != 1:
        raise ConfigError(f"{db} holds {len(profiles)} profiles ({', '.join(profiles) or 'none'}); name one with "
                          "--profile")
    suite = _suite(args.suite or names[0])
    profile = args.profile or profiles[0]
    check_one_judge_per_column(store)
    commit, version = git_commit(), code_version()      # before the rebuild writes into a (tracked) folder
    with folder_lock(dest):
        why = args.why
        for i, src in enumerate(args.add):                  # runs made later or elsewhere (bench.addruns)
            from bench.addruns import add_runs
            why += f"; {add_runs(dest, Path(src), suite.name, profile, label=f'OUT{i + 1}')}"
        write_leaderboard(suite, store, dest, profile)
        shown = "DEST" if dest.is_absolute() else dest.as_posix()        # no machine paths in a committed file
        command = f"bench republish {shown}" + "".join(f" --{k} {v}" for k, v in (("suite", args.suite),
                                                                                  ("profile", args.profile)) if v)
        command += "".join(f" --add OUT{i + 1}" for i in range(len(args.add)))
        republish_notes(dest, command, commit, version, why)
    print((dest / "leaderboard.md").read_text())
    print(f"republished {dest} from its {RESULTS_FILE} (see {dest / 'RUN.md'})")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from bench.results import RESULTS_FILE, ResultStore
    from bench.stores import open_store
    from leaderboards.build import write_leaderboard
    suite = _suite(args.suite)
    out = Path(args.out) if args.out else default_out(suite.name)
    db = out / RESULTS_FILE
    if not args.store and not db.exists():
        raise ConfigError(f"no results at {db}; run `bench run {suite.name} --out {out}` first")
    store = open_store(args.store) if args.store else ResultStore(db)
    with folder_lock(out, busy="a run is writing there: rebuild its leaderboard when that run has ended"):
        md = write_leaderboard(suite, store, out, profile=args.profile)
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
    s.add_argument("--profile", help="one of the suite's profiles, e.g. smoke or cpu (bench list suites shows each "
                                     "suite's, * marking its default; default: that one)")
    s.add_argument("--rows", action="append", help="row names or slugs, comma-separated or repeated (default: all)")
    s.add_argument("--tasks", action="append",
                   help="only these of the suite's tasks, comma-separated or repeated (default: all)")
    s.add_argument("--seeds", type=int, help="run seeds 0..N-1 (default: the suite's)")
    s.add_argument("--seed", type=int, action="append", metavar="K",
                   help="run only seed K, repeated for several (e.g. the seed a session did not finish, then "
                        "`bench republish FOLDER --add OUT` adds it to the published folder); not with --seeds")
    s.add_argument("--out", help="output folder (default: runs/<suite>)")
    s.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    s.add_argument("--force-resume", action="store_true",
                   help="resume even where a run's checkpoint was made with another configuration")
    s.add_argument("--deterministic", action="store_true", help="deterministic algorithms (bit-exact on CPU)")
    s.add_argument("--budget", metavar="R1,R2,...",
                   help="a budget ladder: multiples of the profile's steps (e.g. 0.3,1,3); each row and seed trains "
                        "once to the largest and is scored at every rung (profile <profile>@x0.3-1-3), and the "
                        "leaderboard judges each claim at each rung")
    s.add_argument("--jobs", type=int, metavar="N",
                   help="train and score N runs at once in worker processes, each with threads / N torch threads "
                        "(small models use threads poorly: two 1-thread jobs on 2 cores do more than one 2-thread "
                        "job); on several GPUs the workers are spread over them, one GPU each (default: one worker "
                        "per visible GPU with --device auto / cuda, else 1)")
    s.add_argument("--time-limit", type=float, metavar="MIN",
                   help="end a run (training and scoring) after MIN minutes and record it failed (default: the "
                        "profile's time_limit_min, else 120 + steps / 2)")
    s.add_argument("--stall-limit", type=float, metavar="MIN",
                   help="end a run with no training step, scoring batch or judge step for MIN minutes (default: "
                        "the profile's stall_limit_min, 30)")
    s.add_argument("--in-process", action="store_true",
                   help="run every run in this process, one after the other (for a debugger); by default each has "
                        "a process of its own, so a plug-in's exit, crash, hang or global state costs its row only")
    s.add_argument("--executor", default="local", choices=EXECUTOR_CHOICES,
                   help="where runs execute: local worker processes (default), Slurm jobs through submitit "
                        "(--jobs N: at most N queued at once), submitit's local executor (a Slurm set-up tried "
                        "on this machine), or Ray tasks (--ray-address, else RAY_ADDRESS, else a local Ray)")
    s.add_argument("--gpus-per-run", type=int, default=0, metavar="K",
                   help="GPUs per Slurm job or Ray task (default 0)")
    s.add_argument("--cpus-per-run", type=int, metavar="C",
                   help="CPUs (and torch threads) per Slurm job or Ray task (default: 4 on a cluster, threads / "
                        "--jobs on this machine)")
    s.add_argument("--ray-address", metavar="ADDR", help="the Ray cluster to run on (e.g. ray://head:10001)")
    s.add_argument("--store", metavar="URL", help=STORE_HELP)
    s.add_argument("--keep-checkpoints", type=_keep, metavar="N|all",
                   help="newest checkpoints kept per run (default: the profile's, 1; the budget rungs' always)")
    s.add_argument("--yes", action="store_true",
                   help="start a profile that takes over an hour on the CPU, or a GPU-sized one on the CPU")
    s.add_argument("--track", choices=("mlflow",),
                   help="also log training scalars and scores to MLflow ($MLFLOW_TRACKING_URI, else sqlite in "
                        "--out; the 'track' extra); off by default, TensorBoard files are always written")
    s.add_argument("--partition", help="Slurm partition of the jobs")
    s.add_argument("--slurm", action="append", metavar="KEY=VALUE", default=[],
                   help="another submitit Slurm parameter, repeated (e.g. --slurm account=lab --slurm qos=high)")
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

    s = sub.add_parser("score", help="score a checkpoint (or a run folder's newest checkpoint), or two image sets")
    s.add_argument("checkpoint", nargs="?", help="a checkpoint or run folder (not with --gen)")
    s.add_argument("--gen", metavar="PATH", help="generated images: a folder, an .npz / .npy / .pt array, or "
                                                 "dataset:NAME:SPLIT[:FIELD]")
    s.add_argument("--real", metavar="PATH", help="real images, in the same forms")
    s.add_argument("--metrics", default="fid,kid", help="with --gen: some of fid, kid, is, prc (precision / "
                                                        "recall), dc (density / coverage); default fid,kid")
    s.add_argument("--metric", default="fid", help=argparse.SUPPRESS)      # the registered scorer with score_sets
    s.add_argument("--extractor", default="inception-v3-compat",
                   help="with --gen: the feature extractor (inception-v3-compat, mnist-classifier)")
    s.add_argument("--weights", metavar="FILE", help="with --gen: the extractor's weights file")
    s.add_argument("--resize", help="with --gen: how images reach the extractor's size (e.g. bilinear)")
    s.add_argument("--size", type=int, default=64, help="with dataset:...: the side the dataset is read at")
    s.add_argument("--out", metavar="DIR", help="with --gen: append the numbers to DIR/results.sqlite")
    common(s)
    s.set_defaults(func=cmd_score)

    s = sub.add_parser("leaderboard", help="rebuild a suite's leaderboard from its results store")
    s.add_argument("suite")
    s.add_argument("--out")
    s.add_argument("--profile")
    s.add_argument("--store", metavar="URL", help=STORE_HELP)
    s.add_argument("--plugin", action="append", default=[], metavar="MODULE", dest="plugin_sub")
    s.set_defaults(func=cmd_leaderboard)

    s = sub.add_parser("baseline", help="write a baseline of a run's per-seed numbers for `bench regress`")
    s.add_argument("suite")
    s.add_argument("--out", help="the run's output folder (default: runs/<suite>); with --run, where to run it")
    s.add_argument("--run", action="store_true", help="run the suite first (into --out), then write its baseline")
    s.add_argument("--resume", action="store_true")
    s.add_argument("--deterministic", action="store_true", help="with --run: bit-exact on CPU (for --mode exact)")
    s.add_argument("--seeds", type=int, help="with --run: seeds 0..N-1 (default: the suite's)")
    s.add_argument("--profile")
    s.add_argument("--file", help="where to write it (default: OUT/baseline-<suite>-<profile>.csv)")
    common(s)
    s.set_defaults(func=cmd_baseline)

    s = sub.add_parser("regress", help="check a run against a baseline; exit 1 when a number moved or was lost")
    s.add_argument("suite")
    s.add_argument("--baseline", required=True)
    s.add_argument("--mode", choices=("exact", "statistical"), default="exact",
                   help="exact (default): any change of any value (deterministic runs, same environment); "
                        "statistical: Welch's test per cell against the baseline's seed noise (several seeds)")
    s.add_argument("--alpha", type=float, default=0.05, help="statistical: two-sided level (default 0.05)")
    s.add_argument("--out", help="the run to check (default: runs/<suite>); with --run, where to run it")
    s.add_argument("--run", action="store_true", help="run the suite first (into --out), on the baseline's seeds")
    s.add_argument("--seeds", type=int, help="with --run: seeds 0..N-1 instead of the baseline's")
    s.add_argument("--resume", action="store_true")
    s.add_argument("--deterministic", action="store_true")
    s.add_argument("--profile", help="default: the baseline's")
    s.add_argument("--tolerance", action="append", metavar="METRIC=VALUE",
                   help="exact: allowed |new - old| per value for a metric key or task/metric (repeatable); "
                        "hides any change smaller than it")
    s.add_argument("--suite-tolerances", action="store_true",
                   help="exact: allow the suite's [tolerances] too (for a baseline made on another machine)")
    common(s)
    s.set_defaults(func=cmd_regress)

    s = sub.add_parser("status", help="write the reproduction status page (README.md, index.html: the papers' "
                       "tables and figures, each result's budget, verdicts) from the committed result folders")
    s.add_argument("--results", default="leaderboards/results",
                   help="the result folders `bench publish` wrote; the page is written beside them")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("history", help="plot a metric over code versions, one point per version, from a series of "
                                       "run folders (e.g. the nightly regression runs)")
    s.add_argument("suite")
    s.add_argument("--metric", required=True, help="a metric key or task/metric")
    s.add_argument("--runs", action="append", metavar="PATH_OR_GLOB",
                   help="run folders: a folder of them (runs), a quoted glob ('runs/nightly-*') or one run "
                        "(repeatable)")
    s.add_argument("--out", help="instead of --runs: one output folder holding results.sqlite (default: runs/<suite>)")
    s.add_argument("--profile", help="needed when the runs hold several profiles")
    s.add_argument("--plot", help="where to draw it (default: history-<suite>-<metric>.png in the runs' common folder)")
    s.set_defaults(func=cmd_history)

    s = sub.add_parser("compare", help="run a discriminator as one more row of existing suites and test it against "
                                       "each established row (better / worse / not separated)")
    s.add_argument("--discriminator", required=True)
    s.add_argument("--suites", required=True, help="comma-separated suite names or .toml paths")
    s.add_argument("--rows", action="append",
                   help="test against (and train) only these rows, comma-separated or repeated (default: every "
                        "model row of each suite)")
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

    s = sub.add_parser("republish", help="rebuild a published folder's leaderboard, claims and report from its own "
                                         "results store with the current statistics (nothing is trained)")
    s.add_argument("dest", help="a folder `bench publish` wrote, e.g. leaderboards/results/<suite>/<profile>")
    s.add_argument("--suite", help="the suite (default: the one its store holds)")
    s.add_argument("--profile", help="the profile (default: the one its store holds)")
    s.add_argument("--why", default="the statistics of this code version",
                   help="one line for RUN.md: why it was republished")
    s.add_argument("--add", action="append", default=[], metavar="OUT",
                   help="first add the runs (row, task, seed) of this `bench run` --out folder that the folder "
                        "lacks, e.g. a seed run later or elsewhere (same suite, profile and judges; a run it holds "
                        "is never replaced); repeated for several")
    s.add_argument("--plugin", action="append", default=[], metavar="MODULE", dest="plugin_sub")
    s.set_defaults(func=cmd_republish)

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
            if int(threads) > (os.cpu_count() or 1):
                print(f"bench: error: --threads / BENCH_THREADS = {threads} is more than this machine's "
                      f"{os.cpu_count() or 1} CPU cores; give at most that", file=sys.stderr)
                return 2
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
