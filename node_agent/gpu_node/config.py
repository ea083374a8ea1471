"""The agent's config file: where the server is, who this node is, and what its hooks run.

It holds the node token, so it is created with mode 0600 from the start (never chmod-ed after the secret is on disk).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_HOOK_TIMEOUT_S = 300.0
DEFAULT_TRAIN_TIMEOUT_S = 73 * 3600.0  # `train`: a job may run 72 hours (API.md §13); the server cancels it then
DEFAULT_MAX_BACKOFF_S = 60.0


class ConfigError(Exception):
    """The config file is missing or malformed."""


def default_path() -> Path:
    """$GPU_NODE_CONFIG, else ~/.config/gpu-node/config.json."""
    env = os.environ.get("GPU_NODE_CONFIG")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".config" / "gpu-node" / "config.json"


@dataclass
class Hook:
    """An operator's command for one action: argv (no shell) and how long it may run."""

    argv: list[str]
    timeout_s: float = DEFAULT_HOOK_TIMEOUT_S

    @classmethod
    def parse(cls, action: str, raw: Any) -> Hook:
        default_timeout = DEFAULT_TRAIN_TIMEOUT_S if action == "train" else DEFAULT_HOOK_TIMEOUT_S
        if isinstance(raw, list) and raw and all(isinstance(a, str) for a in raw):
            return cls(argv=list(raw), timeout_s=default_timeout)
        if isinstance(raw, dict) and isinstance(raw.get("argv"), list) and raw["argv"]:
            argv = raw["argv"]
            timeout = raw.get("timeout_s", default_timeout)
            if all(isinstance(a, str) for a in argv) and isinstance(timeout, int | float) and timeout > 0:
                return cls(argv=list(argv), timeout_s=float(timeout))
        raise ConfigError(f'hook "{action}" must be an argv list or {{"argv": [...], "timeout_s": N}}')

    def to_json(self) -> dict[str, Any]:
        return {"argv": self.argv, "timeout_s": self.timeout_s}


@dataclass
class NodeConfig:
    server_url: str
    node_id: int
    node_token: str
    backend_url: str
    backend_key: str = ""
    heartbeat_interval_s: float = 30.0
    name: str = ""
    gpu_id: int | None = None
    max_backoff_s: float = DEFAULT_MAX_BACKOFF_S
    hooks: dict[str, Hook] = field(default_factory=dict)
    # Per-model prices/context window sent with the model list: {"name": {"input_price_per_million": "0.20", ...}}.
    model_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    # What the node offers (API.md §13, §14); None: "inference", plus "containers" when a `start` hook is configured
    # and "training" when a `train` hook is.
    capabilities: list[str] | None = None

    def declared_capabilities(self) -> list[str]:
        if self.capabilities is not None:
            return sorted(set(self.capabilities))
        implied = {"start": "containers", "train": "training"}
        return sorted({"inference", *(name for hook, name in implied.items() if hook in self.hooks)})

    @classmethod
    def from_json(cls, data: Any) -> NodeConfig:
        if not isinstance(data, dict):
            raise ConfigError("the config file must hold a JSON object")
        missing = [k for k in ("server_url", "node_id", "node_token", "backend_url") if not data.get(k)]
        if missing:
            raise ConfigError(f"the config file lacks {', '.join(missing)}; run `gpu-node register` first")
        hooks_raw = data.get("hooks") or {}
        if not isinstance(hooks_raw, dict):
            raise ConfigError('"hooks" must map action names to commands')
        overrides = data.get("model_overrides") or {}
        capabilities = data.get("capabilities")
        if capabilities is not None and (
            not isinstance(capabilities, list) or not all(isinstance(c, str) for c in capabilities)
        ):
            raise ConfigError('"capabilities" must be a list of names, e.g. ["inference", "containers"]')
        if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
            raise ConfigError('"model_overrides" must map model names to objects')
        try:
            return cls(
                server_url=str(data["server_url"]),
                node_id=int(data["node_id"]),
                node_token=str(data["node_token"]),
                backend_url=str(data["backend_url"]),
                backend_key=str(data.get("backend_key") or ""),
                heartbeat_interval_s=float(data.get("heartbeat_interval_s") or 30),
                name=str(data.get("name") or ""),
                gpu_id=int(data["gpu_id"]) if data.get("gpu_id") is not None else None,
                max_backoff_s=float(data.get("max_backoff_s") or DEFAULT_MAX_BACKOFF_S),
                hooks={str(k): Hook.parse(str(k), v) for k, v in hooks_raw.items()},
                model_overrides=overrides,
                capabilities=capabilities,
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"the config file has a malformed value: {exc}") from exc

    def to_json(self) -> dict[str, Any]:
        return {
            "server_url": self.server_url,
            "node_id": self.node_id,
            "node_token": self.node_token,
            "backend_url": self.backend_url,
            "backend_key": self.backend_key,
            "heartbeat_interval_s": self.heartbeat_interval_s,
            "name": self.name,
            "gpu_id": self.gpu_id,
            "max_backoff_s": self.max_backoff_s,
            "hooks": {action: hook.to_json() for action, hook in self.hooks.items()},
            "model_overrides": self.model_overrides,
            **({"capabilities": self.capabilities} if self.capabilities is not None else {}),
        }


def read_raw(path: Path) -> dict[str, Any] | None:
    """The file's JSON object, or None when there is no file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return data


def load(path: Path) -> NodeConfig:
    data = read_raw(path)
    if data is None:
        raise ConfigError(f"no config at {path}; run `gpu-node register` first")
    return NodeConfig.from_json(data)


def save(config: NodeConfig, path: Path) -> None:
    """Write atomically: a 0600 temporary file in the same folder, then rename over the old one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    # O_EXCL with mode 0o600: the token never sits in a file anyone else can read, not even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(config.to_json(), f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def mask(token: str) -> str:
    """gmn_...abcd: enough to tell tokens apart, not enough to use one."""
    if len(token) <= 8:
        return "****"
    prefix = token.split("_", 1)[0] + "_" if "_" in token[:6] else ""
    return f"{prefix}...{token[-4:]}"
