"""`embedq http`: the OpenAI-compatible HTTP gateway over the queue (gateway/), under uvicorn."""
from __future__ import annotations

import argparse
import sys

from schemas.settings import describe as describe_settings


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "http", help="serve the HTTP API (OpenAI-compatible /v1/embeddings, jobs, search, health, metrics)",
        description="Serve the HTTP gateway: requests become embed jobs on the configured broker, answered by "
                    "the running workers.\n\nSettings (environment):\n" + describe_settings(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", help="address to bind (EMBEDQ_HTTP_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (EMBEDQ_HTTP_PORT, default 8000; 0 picks a free one)")
    p.add_argument("--allow-no-keys", action="store_true",
                   help="listen on a non-loopback address without EMBEDQ_API_KEYS (only behind something that "
                        "authenticates)")
    p.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(func=cmd_http)


def cmd_http(args) -> int:
    from gateway.server import UnsafeBind, serve
    from schemas.settings import get_settings

    try:
        serve(get_settings(), host=args.host, port=args.port, allow_no_keys=args.allow_no_keys,
              log_level=args.log_level, access_log=args.access_log)
    except UnsafeBind as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
