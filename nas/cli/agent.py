"""`nas agent`: serve this device's latency measurements over HTTP, for searches run from another machine."""

from __future__ import annotations

import argparse
from pathlib import Path

from nas.cli._common import err, is_loopback
from nas.errors import ConfigError

MIN_TOKEN_CHARS = 16

EPILOG = """examples:
  nas agent                                             # loopback only, no token: tests, an SSH tunnel
  nas agent --host 0.0.0.0 --token-file ~/.nas-token    # reachable from the network, token required
  nas agent --host 0.0.0.0 --token-file ~/.nas-token --ssl-certfile cert.pem --ssl-keyfile key.pem

Measurements queue: one model is timed at a time, so concurrent searches do not disturb each other's numbers."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "agent", help="serve this device's latency measurements over HTTP", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Time uploaded ONNX models on this machine (the deployment target) for a search running "
                    "elsewhere. Off loopback it needs a token, and serves HTTPS with a certificate and key.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765)")
    p.add_argument("--token-file", type=Path, metavar="PATH",
                   help=f"file holding the token clients must send (required off loopback; at least "
                        f"{MIN_TOKEN_CHARS} characters, mode 600)")
    p.add_argument("--max-upload-mb", type=float, default=200, help="largest ONNX upload accepted (default 200)")
    p.add_argument("--ssl-certfile", type=Path, metavar="PATH", help="TLS certificate: serve https://")
    p.add_argument("--ssl-keyfile", type=Path, metavar="PATH", help="TLS private key of --ssl-certfile")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    host = args.host.strip("[]")  # an IPv6 address may come in URL brackets
    if args.token_file is None and not is_loopback(host):
        raise ConfigError(f"refusing to listen on {host} without a token: anyone who can reach it could use this "
                          "device; pass --token-file PATH (a file holding a secret), or keep --host 127.0.0.1")
    token = _read_token(args.token_file) if args.token_file else None
    if args.max_upload_mb <= 0:
        raise ConfigError(f"--max-upload-mb must be above 0, got {args.max_upload_mb:g}")
    for option, path in (("--ssl-certfile", args.ssl_certfile), ("--ssl-keyfile", args.ssl_keyfile)):
        if path is not None and not path.is_file():
            raise ConfigError(f"{option} {path} is not a file")
    if args.ssl_keyfile and not args.ssl_certfile:
        raise ConfigError("--ssl-keyfile needs --ssl-certfile, the certificate the key belongs to")

    import uvicorn  # imported here so that `nas --help` and a refused start stay quick

    from nas.agent import create_app
    from nas.hardware.device_info import local_device_info

    app = create_app(token=token, max_upload_mb=args.max_upload_mb)
    info = local_device_info()
    scheme = "https" if args.ssl_certfile else "http"
    where = f"[{host}]" if ":" in host else host
    err(f"nas agent serving {info['device']} ({', '.join(info['runtimes']) or 'no runtimes'}) at "
        f"{scheme}://{where}:{args.port}{'' if token else ' without a token'} (Ctrl-C to stop)")
    uvicorn.run(app, host=host, port=args.port, log_level="warning",
                ssl_certfile=str(args.ssl_certfile) if args.ssl_certfile else None,
                ssl_keyfile=str(args.ssl_keyfile) if args.ssl_keyfile else None)
    return 0


def _read_token(path: Path) -> str:
    """The secret in `path`: at least MIN_TOKEN_CHARS characters; a warning when others may read the file."""
    try:
        token = path.read_text().strip()
        mode = path.stat().st_mode & 0o777
    except OSError as exc:
        raise ConfigError(f"cannot read --token-file {path}: {exc.strerror or exc}") from None
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"--token-file {path} holds {len(token)} character(s); a token needs at least "
                          f"{MIN_TOKEN_CHARS}, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))' > PATH")
    if mode & 0o077:
        err(f"warning: --token-file {path} has mode {mode:o}: its group or other users may read the token; "
            f"chmod 600 {path}")
    return token
