"""Running the gateway: `embedq http` (uvicorn), and the rule on where it may listen.

Without API keys (EMBEDQ_API_KEYS) anyone who can reach the port can use the service, so the
gateway binds to loopback by default and refuses any other address unless keys are set or the
caller says explicitly that it does not want them (--allow-no-keys: behind a proxy that
authenticates, or a port published on the host's loopback only).
"""
from __future__ import annotations

import ipaddress
import logging

from schemas.settings import Settings

from .app import api_keys, create_app


class UnsafeBind(ValueError):
    pass


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings, host: str, allow_no_keys: bool = False) -> None:
    """Raise UnsafeBind for a non-loopback address without keys (unless allowed explicitly)."""
    if is_loopback(host) or api_keys(settings) or allow_no_keys:
        return
    raise UnsafeBind(f"refusing to listen on {host} without API keys: set EMBEDQ_API_KEYS, bind to 127.0.0.1, "
                     "or pass --allow-no-keys if something in front of the gateway authenticates")


def serve(settings: Settings, host: str | None = None, port: int | None = None, allow_no_keys: bool = False,
          log_level: str = "info", access_log: bool = False) -> None:
    import uvicorn

    host = host or settings.http_host
    port = settings.http_port if port is None else port
    check_bind(settings, host, allow_no_keys)
    logging.basicConfig(level=log_level.upper(), format="[%(asctime)s: %(levelname)s/%(name)s] %(message)s")
    config = uvicorn.Config(create_app(settings), host=host, port=port, log_level=log_level.lower(),
                            access_log=access_log, lifespan="on", timeout_graceful_shutdown=10)
    uvicorn.Server(config).run()


class ServerThread:
    """The gateway under uvicorn in a thread of this process (tests, benchmarks):

        with ServerThread(settings) as server:   # 127.0.0.1, a free port
            httpx.get(server.url + "/health")
    """

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 0, allow_no_keys: bool = False):
        check_bind(settings, host, allow_no_keys)
        self.settings = settings
        self.host = host
        self.port = port
        self.app = None
        self.server = None
        self.thread = None
        self.url = ""

    def start(self, timeout: float = 30.0) -> "ServerThread":
        import threading
        import time

        import uvicorn

        self.app = create_app(self.settings)
        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_level="warning", access_log=False,
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="embedq-gateway", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://{self.host}:{port}"
        return self

    @property
    def gateway(self):
        return self.app.state.gateway

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            self.thread.join(timeout=15)

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
