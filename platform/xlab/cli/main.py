"""The ``xlab`` command.

    xlab jobs                                   list the jobs
    xlab run JOB [--preset P] [--a.b VALUE ...] run a job here (same as python -m jobs.JOB)
    xlab submit JOB --address http://HOST:8265 [--wait] [--preset P] [overrides]
    xlab status|logs|stop ID [--address URL]    follow a submitted job
    xlab runs JOB [--csv FILE]                  compare a job's MLflow runs
    xlab ui [--port 5000]                       MLflow UI on 127.0.0.1
    xlab serve POLICY_REF [--host H] [--port P] serve a policy over WebSocket (openpi protocol) until Ctrl-C

User errors print one line (``xlab: error: ...``) and exit 2; ``--traceback`` or ``XLAB_TRACEBACK=1``
shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from xlab.errors import XlabError


def _parser() -> argparse.ArgumentParser:
    from xlab.cli.submit import default_address

    p = argparse.ArgumentParser(prog="xlab", description="xlab: research jobs on Ray, tracked in MLflow.")
    p.add_argument("--traceback", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("jobs", help="list the jobs")

    run = sub.add_parser("run", help="run a job here", add_help=False)
    run.add_argument("job")

    s = sub.add_parser("submit", help="submit a job to a Ray cluster", add_help=False)
    s.add_argument("job")
    s.add_argument("--address", default=default_address(), help="job server URL (default: %(default)s)")
    s.add_argument("--wait", action="store_true", help="block until the job ends; exit non-zero unless it SUCCEEDED")
    s.add_argument("--wait-timeout", type=float, default=24 * 3600.0, metavar="S",
                   help="with --wait: give up waiting after S seconds (the job keeps running; default: %(default)g)")

    for name, helptext in (("status", "status of a submitted job"), ("logs", "logs of a submitted job"),
                           ("stop", "stop a submitted job")):
        c = sub.add_parser(name, help=helptext)
        c.add_argument("submission_id")
        c.add_argument("--address", default=default_address(), help="job server URL (default: %(default)s)")
        if name == "logs":
            c.add_argument("--follow", "-f", action="store_true", help="stream until the job ends")

    r = sub.add_parser("runs", help="compare a job's MLflow runs")
    r.add_argument("job", help="job (MLflow experiment) name")
    r.add_argument("--csv", help="also write the table to this CSV file")
    r.add_argument("--metrics", nargs="*", help="metric columns to show (default: the first few)")
    r.add_argument("--children", action="store_true", help="include nested trial runs")
    r.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or ./mlflow.db")

    v = sub.add_parser("serve", help="serve a policy to robot clients over WebSocket (openpi protocol)")
    v.add_argument("policy", help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/policy or a policy directory")
    v.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s; others need a key)")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--replicas", type=int, default=1, help="batching policy replicas")
    v.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per replica")
    v.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per replica")
    v.add_argument("--api-key-file", help="file holding the API key clients must send (Authorization: Api-Key KEY)")
    v.add_argument("--max-batch-size", type=int, default=64)
    v.add_argument("--batch-wait-ms", type=float, default=20.0,
                   help="longest wait for a batch to fill (it waits for every active connection, up to this)")
    v.add_argument("--ingress", choices=("auto", "direct", "proxy"), default="auto",
                   help="direct: each replica serves its own socket (--port, --port+1, ...; no proxy hop); proxy: "
                        "Serve's HTTP proxy spreads connections over replicas; auto (default): direct for one "
                        "replica on a Ray instance of its own, else proxy")

    u = sub.add_parser("ui", help="start the MLflow UI on 127.0.0.1")
    u.add_argument("--port", type=int, default=5000)
    u.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or ./mlflow.db")
    return p


def _print_table(df) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False)
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in df.itertuples(index=False)]
    widths = [max([len(str(c))] + [len(r[i]) for r in cells]) for i, c in enumerate(df.columns)]
    for col in df.columns:
        table.add_column(str(col), no_wrap=True)
    for row in cells:
        table.add_row(*row)
    # As wide as the table needs: a comparison table that wraps every cell is unreadable.
    Console(width=max(Console().width, sum(widths) + 3 * len(widths) + 1)).print(table)


def dispatch(argv: list[str]) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if args.command in ("run", "submit"):
        extra = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "jobs":
        from xlab.cli.registry import list_jobs

        jobs = list_jobs()
        width = max(map(len, jobs), default=0)
        for name, doc in jobs.items():
            print(f"{name:<{width}}  {doc}")
        return 0
    if args.command == "run":
        import time

        from xlab.cli.registry import run_job
        from xlab.console import console_capture

        if os.environ.get("XLAB_CONSOLE") == "off" or any(a in ("-h", "--help") for a in extra):
            run_job(args.job, extra)
            return 0
        log_file = Path("logs") / f"{args.job}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        print(f"[xlab] {args.job}: full log in {log_file} (XLAB_CONSOLE=all shows it all here)", flush=True)
        with console_capture(log_file):
            try:
                run_job(args.job, extra)
            finally:
                from xlab.runtime import shutdown_ray

                shutdown_ray()  # Ray's shutdown messages go to the log file too
        return 0
    if args.command == "submit":
        from xlab.cli.submit import submit

        submit(args.job, extra, args.address, wait=args.wait, wait_timeout=args.wait_timeout)
        return 0
    if args.command in ("status", "logs", "stop"):
        from xlab.cli import submit as jobs_api

        if args.command == "status":
            print(jobs_api.status(args.submission_id, args.address))
        elif args.command == "logs":
            jobs_api.logs(args.submission_id, args.address, follow=args.follow)
        else:
            print("stopped" if jobs_api.stop(args.submission_id, args.address) else "already finished")
        return 0
    if args.command == "runs":
        from xlab.cli.registry import list_jobs, load_job
        from xlab.track.compare import runs_table

        keys = getattr(load_job(args.job), "KEY_METRICS", ()) if args.job in list_jobs() else ()
        df = runs_table(args.job, args.tracking_uri, metrics=args.metrics, include_children=args.children,
                        key_metrics=keys)
        if df.empty:
            print(f"no runs of {args.job} yet")
            return 0
        _print_table(df)
        if args.csv:
            df.to_csv(args.csv, index=False)
            print(f"wrote {args.csv}")
        return 0
    if args.command == "serve":
        import time

        from xlab.console import console_capture
        from xlab.serve.command import serve_policy

        log_file = Path("logs") / f"serve-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        print(f"[xlab] serve: full log in {log_file} (XLAB_CONSOLE=all shows it all here)", flush=True)
        with console_capture(log_file):
            serve_policy(args.policy, host=args.host, port=args.port, replicas=args.replicas, num_gpus=args.num_gpus,
                         num_cpus=args.num_cpus, api_key_file=args.api_key_file, max_batch_size=args.max_batch_size,
                         batch_wait_ms=args.batch_wait_ms, ingress=args.ingress)
        return 0
    if args.command == "ui":
        from xlab.track.store import redact_uri, resolve_tracking_uri

        uri = resolve_tracking_uri(args.tracking_uri)
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
               "--port", str(args.port), "--workers", "1"]
        print(f"[xlab] MLflow UI for {redact_uri(uri)} at http://127.0.0.1:{args.port} (Ctrl-C to stop)")
        return subprocess.call(cmd, env=env)
    parser.error(f"unknown command {args.command}")
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    show_tb = "--traceback" in argv or os.environ.get("XLAB_TRACEBACK") == "1"
    if show_tb and "--traceback" in argv:
        argv.remove("--traceback")
    try:
        return dispatch(argv)
    except XlabError as e:
        if show_tb:
            raise
        print(f"xlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM in a job (xlab.errors.Terminated): runs ended KILLED
        print(f"xlab: {str(e) or 'interrupted'}", file=sys.stderr)
        return 128 + getattr(e, "signum", 2)


def job_entry(job: str) -> None:
    """``python -m jobs.NAME ARGS`` == ``xlab run NAME ARGS``."""
    if os.environ.get("XLAB_SUBMITTED") == "1":  # say which code runs (xlab submit ships it; see xlab.cli.submit)
        import xlab

        print(f"[xlab] submitted job {job}: xlab from {Path(xlab.__file__).parent}", flush=True)
    sys.exit(main(["run", job, *sys.argv[1:]]))
