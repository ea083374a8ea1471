"""`gpu-node register | run | status`. Known failures are one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import contextlib
import logging
import socket
import sys
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path

from gpu_node import __version__, backend, config, hardware
from gpu_node.runner import Agent, model_specs
from gpu_node.server_api import ServerApi, ServerError, ServerUnreachable

EXIT_ERROR = 2


class CliError(Exception):
    """A failure the user can act on; printed as one line."""


def _price(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a price: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"not a price: {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpu-node", description="The GPU marketplace's node agent.")
    parser.add_argument("--version", action="version", version=f"gpu-node {__version__}")
    parser.add_argument("--config", type=Path, help="config file (default $GPU_NODE_CONFIG or ~/.config/gpu-node/)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    sub = parser.add_subparsers(dest="command", required=True)

    reg = sub.add_parser("register", help="describe this machine, register the node, write the config file")
    reg.add_argument("--server", required=True, help="the marketplace, e.g. https://market.example.com")
    reg.add_argument("--api-key", required=True, help="your client API key (gmk_...), an approved provider's")
    reg.add_argument("--backend", required=True, help="your OpenAI-compatible base URL, /v1 included")
    reg.add_argument("--backend-key", default="", help="the API key your backend expects, if any")
    reg.add_argument("--name", default="", help="node name (default: this host's name)")
    reg.add_argument("--region", default="", help="e.g. eu-west")
    reg.add_argument("--price-per-hour", type=_price, help="rental price of this machine in USD per hour")
    reg.add_argument("--config", type=Path, dest="sub_config", help=argparse.SUPPRESS)

    run = sub.add_parser("run", help="heartbeat until stopped (SIGTERM/SIGINT deregisters)")
    run.add_argument("--config", type=Path, dest="sub_config", help=argparse.SUPPRESS)
    status = sub.add_parser("status", help="show the config and whether the server and backend answer")
    status.add_argument("--config", type=Path, dest="sub_config", help=argparse.SUPPRESS)
    return parser


def _config_path(args: argparse.Namespace) -> Path:
    return (getattr(args, "sub_config", None) or args.config or config.default_path()).expanduser()


def _server_failure(exc: ServerError | ServerUnreachable, server: str, what: str) -> CliError:
    if isinstance(exc, ServerUnreachable):
        return CliError(f"cannot reach the server at {server}: is --server right and the service up? ({exc})")
    if exc.status == 401:
        return CliError(f"the server refused the API key (HTTP 401 {exc.code}); check --api-key")
    if exc.status == 403:
        return CliError(
            f"the server refused to {what} (HTTP 403 {exc.code}): this account is not an approved GPU provider; "
            "apply as a provider and wait for an admin's approval"
        )
    return CliError(f"the server refused to {what}: {exc}")


def cmd_register(args: argparse.Namespace) -> int:
    path = _config_path(args)
    previous = config.read_raw(path) or {}
    try:
        names = backend.list_models(args.backend, args.backend_key)
    except backend.BackendError as exc:
        raise CliError(str(exc)) from None
    gpus = hardware.query_gpus()
    api = ServerApi(args.server)
    try:
        gpu_id = None
        if gpus:
            record = hardware.gpu_record(gpus, region=args.region, price_per_hour=args.price_per_hour)
            try:
                gpu_id = api.gpu_create(api_key=args.api_key, record=record)["id"]
            except (ServerError, ServerUnreachable) as exc:
                raise _server_failure(exc, args.server, "create the GPU record") from None
            print(f"GPU record {gpu_id}: {record['gpu_count']} x {record['gpu_info']}")
        else:
            print("no NVIDIA GPU found (nvidia-smi absent or failing): the node can serve inference, not be rented")
        name = args.name or socket.gethostname()[:128]
        overrides = previous.get("model_overrides")
        body = {
            "name": name,
            "endpoint_url": args.backend,
            "api_key": args.backend_key,
            "region": args.region,
            "models": model_specs(names, overrides if isinstance(overrides, dict) else {}),
        }
        if gpu_id is not None:
            body["gpu"] = gpu_id
        try:
            node = api.node_register(api_key=args.api_key, body=body)
        except (ServerError, ServerUnreachable) as exc:
            if gpu_id is not None:  # do not leave a GPU record that no node uses
                with contextlib.suppress(ServerError, ServerUnreachable):
                    api.gpu_delete(api_key=args.api_key, gpu_id=gpu_id)
            raise _server_failure(exc, args.server, "register the node") from None
    finally:
        api.close()
    saved = config.NodeConfig.from_json(
        {
            **previous,  # keeps the operator's hooks and model_overrides across re-registration
            "server_url": args.server.rstrip("/"),
            "node_id": node["node_id"],
            "node_token": node["node_token"],
            "backend_url": args.backend,
            "backend_key": args.backend_key,
            "heartbeat_interval_s": node.get("heartbeat_interval_s", 30),
            "name": name,
            "gpu_id": gpu_id,
        }
    )
    config.save(saved, path)
    print(f"node {saved.node_id} registered as {name!r} with {len(names)} model(s): {', '.join(names) or '(none)'}")
    print(f"config written to {path} (mode 0600); start it with: gpu-node run")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    cfg = config.load(_config_path(args))
    return Agent(cfg).run()


def cmd_status(args: argparse.Namespace) -> int:
    path = _config_path(args)
    cfg = config.load(path)
    shown = cfg.to_json()
    shown["node_token"] = config.mask(cfg.node_token)
    shown["backend_key"] = config.mask(cfg.backend_key) if cfg.backend_key else ""
    print(f"config: {path}")
    for key, value in shown.items():
        print(f"  {key}: {value}")
    api = ServerApi(cfg.server_url, timeout=5)
    try:
        server_ok = api.health()
    finally:
        api.close()
    print(f"server: {'ok' if server_ok else 'not answering'} ({cfg.server_url})")
    try:
        names = backend.list_models(cfg.backend_url, cfg.backend_key, timeout=5)
        print(f"backend: ok, {len(names)} model(s): {', '.join(names) or '(none)'}")
        backend_ok = True
    except backend.BackendError as exc:
        print(f"backend: {exc}")
        backend_ok = False
    return 0 if server_ok and backend_ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s gpu-node %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    commands = {"register": cmd_register, "run": cmd_run, "status": cmd_status}
    try:
        return commands[args.command](args)
    except (CliError, config.ConfigError) as exc:
        print(f"gpu-node: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
