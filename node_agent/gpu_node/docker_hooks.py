"""Reference hooks that run a rental's instance as a Docker container (API.md §14).

Configure them as the agent's hooks (node_agent/README.md, "Docker hooks"):

    "hooks": {"start": ["gpu-node-docker", "start"], "stop": ["gpu-node-docker", "stop"],
              "reset": ["gpu-node-docker", "reset"], "end": ["gpu-node-docker", "end"]}

Each reads the command's params as JSON on stdin, runs `docker` with an argv (never a shell line), prints what it
did, and writes its structured result to `$GPU_NODE_RESULT_FILE`:

- `start`: `docker run -d --gpus all` the image (or the snapshot it was given) as `gpu-rental-<rental_id>`, with the
  env, the ports, one named volume per volume, SSH (container port 22) and, with `jupyter`, JupyterLab on 8888;
  installs the renter's key in root's authorized_keys; reports `access` with the host ports Docker chose. A
  container that exists already (started again after `stop`) is started, not created.
- `stop`: with `snapshot`, `docker commit` first (and `docker push` when GPU_NODE_DOCKER_PUSH=1) and reports
  `snapshot_ref`; then `docker stop`.
- `reset`: `docker restart`.
- `end`: `docker rm -f` the container and removes its volumes.

Settings (environment of the agent): GPU_NODE_PUBLIC_HOST (the address renters connect to; default this host's
name), GPU_NODE_DOCKER (the docker command, default `docker`), GPU_NODE_DOCKER_DEFAULT_IMAGE (for a rental without
an image, default `ubuntu:24.04`, kept alive with `sleep infinity`), GPU_NODE_DOCKER_SNAPSHOT_REPO (default
`gpu-node-snapshots`), GPU_NODE_DOCKER_PUSH (`1`: push snapshots to that repository).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

# The server validates these too; a hook checks again, since it hands them to docker.
IMAGE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,254}$")
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
PATH_PATTERN = re.compile(r"^(/[A-Za-z0-9._-]+)+$")
JUPYTER_PORT = 8888
SSH_PORT = 22


class HookError(Exception):
    """The command cannot be carried out; the message is the hook's output."""


def _docker() -> str:
    return os.environ.get("GPU_NODE_DOCKER", "docker")


def docker(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `docker <args>`; HookError with its output when it fails (and `check`)."""
    argv = [_docker(), *args]
    try:
        done = subprocess.run(  # noqa: S603 - an argv of checked values, no shell
            argv, input=stdin, capture_output=True, text=True, timeout=600
        )
    except FileNotFoundError as exc:
        raise HookError(f"{argv[0]!r} not found: is Docker installed?") from exc
    if check and done.returncode != 0:
        raise HookError(f"docker {args[0]} failed ({done.returncode}): {(done.stderr or done.stdout).strip()}")
    return done


def container_name(params: dict[str, Any]) -> str:
    rental_id = params.get("rental_id")
    if not isinstance(rental_id, int) or isinstance(rental_id, bool) or rental_id < 1:
        raise HookError("params.rental_id must be a positive integer")
    return f"gpu-rental-{rental_id}"


def _exists(name: str) -> bool:
    return docker("container", "inspect", name, check=False).returncode == 0


def _public_host() -> str:
    return os.environ.get("GPU_NODE_PUBLIC_HOST") or socket.getfqdn()


def _host_port(name: str, container_port: int) -> str:
    """ "host:port" where the renter reaches `container_port`, from `docker port` (first IPv4 binding)."""
    lines = docker("port", name, f"{container_port}/tcp").stdout.split()
    binding = next((line for line in lines if line.startswith("0.0.0.0:")), lines[0] if lines else "")
    port = binding.rsplit(":", 1)[-1]
    if not port.isdigit():
        raise HookError(f"docker port reported no binding for {container_port}: {binding!r}")
    return f"{_public_host()}:{port}"


def run_args(params: dict[str, Any], *, name: str, jupyter_token: str | None) -> list[str]:
    """The `docker run` argv (after `docker`) for a rental's params."""
    image = params.get("image") or ""
    if image and not IMAGE_PATTERN.match(image):
        raise HookError(f"not an image reference: {image!r}")
    args = ["run", "-d", "--name", name, "--gpus", "all", "--restart", "unless-stopped"]
    args += ["--label", f"gpu-node.rental={params['rental_id']}"]
    env = params.get("env") or {}
    if not isinstance(env, dict):
        raise HookError("params.env must be an object")
    for key, value in env.items():
        if not ENV_NAME_PATTERN.match(str(key)) or not isinstance(value, str):
            raise HookError(f"bad environment variable {key!r}")
        args += ["-e", f"{key}={value}"]
    if params.get("ssh_public_key"):
        args += ["-e", f"PUBLIC_KEY={params['ssh_public_key']}"]  # RunPod's convention, for images that use it
    if jupyter_token:
        args += ["-e", f"JUPYTER_TOKEN={jupyter_token}"]
    ports = [SSH_PORT, *(p for p in params.get("ports") or [] if p != SSH_PORT)]
    if jupyter_token and JUPYTER_PORT not in ports:
        ports.append(JUPYTER_PORT)
    for port in ports:
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            raise HookError(f"bad port {port!r}")
        args += ["-p", str(port)]  # Docker picks a free host port; `docker port` tells which
    for index, volume in enumerate(params.get("volumes") or []):
        path = volume.get("path", "") if isinstance(volume, dict) else ""
        if not PATH_PATTERN.match(path) or ".." in path.split("/"):
            raise HookError(f"bad volume path {path!r}")
        args += ["-v", f"{name}-vol{index}:{path}"]
    if image:
        args.append(image)
    else:
        args += [os.environ.get("GPU_NODE_DOCKER_DEFAULT_IMAGE", "ubuntu:24.04"), "sleep", "infinity"]
    return args


def _install_key(name: str, key: str) -> None:
    docker(
        "exec", "-i", name, "sh", "-c",
        "mkdir -p /root/.ssh && chmod 700 /root/.ssh && cat >> /root/.ssh/authorized_keys"
        " && chmod 600 /root/.ssh/authorized_keys",
        stdin=key.strip() + "\n",
    )  # fmt: skip


def start(params: dict[str, Any]) -> dict[str, Any]:
    name = container_name(params)
    jupyter_token = secrets.token_urlsafe(24) if params.get("jupyter") else None
    if _exists(name):
        docker("start", name)
        print(f"started {name} again")
    else:
        for index, volume in enumerate(params.get("volumes") or []):
            size = volume.get("size_gb") if isinstance(volume, dict) else None
            docker(
                "volume", "create", "--label", f"gpu-node.rental={params['rental_id']}",
                "--label", f"gpu-node.size_gb={size}", f"{name}-vol{index}",
            )  # fmt: skip
        docker(*run_args(params, name=name, jupyter_token=jupyter_token))
        print(f"created {name} from {params.get('image') or 'the default image'}")
    if params.get("ssh_public_key"):
        _install_key(name, str(params["ssh_public_key"]))
    # Best effort: images without an SSH server or Jupyter simply do not offer them.
    docker("exec", "-d", name, "sh", "-c", "command -v sshd >/dev/null && mkdir -p /run/sshd && $(command -v sshd)",
           check=False)  # fmt: skip
    access: dict[str, Any] = {"ssh_host": _public_host(), "ssh_user": "root"}
    access["ssh_port"] = int(_host_port(name, SSH_PORT).rsplit(":", 1)[1])
    published = [p for p in params.get("ports") or [] if p != SSH_PORT]
    if jupyter_token:
        docker(
            "exec", "-d", name, "jupyter", "lab", "--ip=0.0.0.0", f"--port={JUPYTER_PORT}", "--no-browser",
            "--allow-root", f"--ServerApp.token={jupyter_token}",
            check=False,
        )  # fmt: skip
        access["jupyter_url"] = f"http://{_host_port(name, JUPYTER_PORT)}/lab?token={jupyter_token}"
        published = [*published, JUPYTER_PORT] if JUPYTER_PORT not in published else published
    if published:
        access["ports"] = {str(port): _host_port(name, port) for port in published}
    return {"access": access}


def stop(params: dict[str, Any]) -> dict[str, Any]:
    name = container_name(params)
    result: dict[str, Any] = {}
    if params.get("snapshot"):
        repository = os.environ.get("GPU_NODE_DOCKER_SNAPSHOT_REPO", "gpu-node-snapshots")
        ref = f"{repository}:rental-{params['rental_id']}-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}"
        docker("commit", name, ref)
        if os.environ.get("GPU_NODE_DOCKER_PUSH") == "1":
            docker("push", ref)
        print(f"saved {name} as {ref}")
        result["snapshot_ref"] = ref
    docker("stop", name)
    print(f"stopped {name}")
    return result


def reset(params: dict[str, Any]) -> dict[str, Any]:
    name = container_name(params)
    docker("restart", name)
    print(f"restarted {name}")
    return {}


def end(params: dict[str, Any]) -> dict[str, Any]:
    name = container_name(params)
    docker("rm", "-f", name, check=False)  # already gone is fine: end is re-sent until acknowledged
    volumes = docker("volume", "ls", "-q", "--filter", f"label=gpu-node.rental={params['rental_id']}", check=False)
    for volume in volumes.stdout.split():
        docker("volume", "rm", "-f", volume, check=False)
    print(f"removed {name}")
    return {}


ACTIONS = {"start": start, "stop": stop, "reset": reset, "end": end}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0] not in ACTIONS:
        print(f"usage: gpu-node-docker {{{'|'.join(ACTIONS)}}} < params.json", file=sys.stderr)
        return 2
    try:
        params = json.loads(sys.stdin.read() or "{}")
        if not isinstance(params, dict):
            raise HookError("params must be a JSON object")
        result = ACTIONS[args[0]](params)
    except (HookError, ValueError) as exc:
        print(f"error: {exc}")
        return 1
    result_file = os.environ.get("GPU_NODE_RESULT_FILE")
    if result_file and result:
        with open(result_file, "w") as f:
            json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
