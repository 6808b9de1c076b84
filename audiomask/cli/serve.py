"""``audiomask serve``: the subcommand's parser and body."""

from __future__ import annotations

import argparse

from audiomask.cli.common import DEFAULT_MODEL

SERVE_EPILOG = """\
endpoints:
  GET  /health      model, sample rate, sources, limits
  POST /separate    audio file in (multipart field "file", or the raw bytes as the body with
                    any content type; any format libsndfile reads; ?downmix=true averages
                    channels) -> application/zip of <stem>_s1.wav … (32-bit float, the input's
                    sample rate)
  WS   /stream      causal models: send {"sample_rate": R, "format": "float32"|"int16"}, then
                    binary blocks of mono samples; each answer is the n_src × m samples final
                    so far, source-major; send {"type": "end"} to get the rest

errors: 400 bad audio or request, 408 a body slower than --read-timeout (slower headers: the
connection is closed), 413 over --max-mb or --max-seconds, 422 other rate with --no-resample,
503 when --max-concurrency separations run already or --max-connections are open (retry
later); a stream idle for --idle-timeout or open for twice --max-seconds is closed with 1008.
A separation slot is taken once the whole body has arrived: slow uploads hold only a
connection.

examples:
  audiomask serve convtasnet-mini2mix --port 8000
  curl -F file=@egs/quickstart/mix.wav http://127.0.0.1:8000/separate -o sources.zip
  curl --data-binary @egs/quickstart/mix.wav http://127.0.0.1:8000/separate -o sources.zip
  audiomask serve convtasnet-mini2mix-causal --max-seconds 3600    # streams up to an hour
"""


def add_serve_parser(sub: argparse._SubParsersAction) -> None:
    """``audiomask serve MODEL --host --port …``."""
    p = sub.add_parser("serve", help="HTTP server: POST /separate (file in, zip out), WebSocket /stream",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Serve MODEL over HTTP with uvicorn (needs audiomask[serve]). Uploads are "
                                   "decoded and results\nencoded in memory; nothing is written to disk.",
                       epilog=SERVE_EPILOG)
    p.add_argument("model", metavar="MODEL", nargs="?", default=DEFAULT_MODEL,
                   help=f"checkpoint file, bundled model name or NAME[:PRESET] (default: {DEFAULT_MODEL})")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; 0.0.0.0: all)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--max-mb", type=float, default=50.0, help="largest upload in MB (default: 50)")
    p.add_argument("--max-seconds", type=float, default=600.0,
                   help="longest audio per request or stream, in seconds (default: 600)")
    p.add_argument("--max-concurrency", type=int, default=2,
                   help="separations running at once; more get 503 (default: 2)")
    p.add_argument("--max-streams", type=int, default=None,
                   help="open WebSocket streams at once (default: --max-concurrency)")
    p.add_argument("--max-connections", type=int, default=32,
                   help="open connections at once (uvicorn's limit_concurrency); more get 503 (default: 32)")
    p.add_argument("--read-timeout", type=float, default=60.0,
                   help="seconds a request's headers, and then its body, may take to arrive: a slower "
                        "body gets 408, slower headers a closed connection (default: 60)")
    p.add_argument("--idle-timeout", type=float, default=30.0,
                   help="seconds a WebSocket stream may send nothing before it is closed (default: 30)")
    p.add_argument("--no-resample", action="store_true",
                   help="refuse audio at another rate than the model's (422) instead of resampling it")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="torch device for POST /separate (default: cpu)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import torch

    from audiomask.cli.common import CLIError, load_model_arg
    from audiomask.serve import SERVE_EXTRA_HINT

    try:
        import uvicorn

        from audiomask.serve.app import create_app
        from audiomask.serve.server import uvicorn_config
    except ImportError as e:
        raise CLIError(f"{SERVE_EXTRA_HINT} ({e})") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model_arg(args.model, args.device)
    try:
        app = create_app(model, max_bytes=int(args.max_mb * 1e6), max_seconds=args.max_seconds,
                         max_concurrency=args.max_concurrency, max_streams=args.max_streams,
                         resample=not args.no_resample, read_timeout=args.read_timeout,
                         idle_timeout=args.idle_timeout)
        config = uvicorn_config(app, args.host, args.port, args.max_connections)
    except ValueError as e:
        raise CLIError(str(e)) from None
    uvicorn.Server(config).run()
    return 0

