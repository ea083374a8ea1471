"""A fake `docker` for the Docker hooks' tests: it records each call (argv and stdin) as a JSON line in
$FAKE_DOCKER_LOG, keeps containers and volumes as files under $FAKE_DOCKER_STATE, and answers `port` with host
port 40000 + the container port, as a real Docker's "0.0.0.0:N" and "[::]:N" lines."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path

    args = sys.argv[1:]
    stdin = sys.stdin.read() if "-i" in args[:2] else ""
    with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
        log.write(json.dumps({"argv": args, "stdin": stdin}) + "\\n")
    state = Path(os.environ["FAKE_DOCKER_STATE"])
    (state / "containers").mkdir(parents=True, exist_ok=True)
    (state / "volumes").mkdir(parents=True, exist_ok=True)
    if os.environ.get("FAKE_DOCKER_FAIL") == args[0]:
        print(f"Error response from daemon: {args[0]} refused", file=sys.stderr)
        sys.exit(1)
    if args[:2] == ["container", "inspect"]:
        sys.exit(0 if (state / "containers" / args[2]).exists() else 1)
    if args[0] == "run":
        (state / "containers" / args[args.index("--name") + 1]).touch()
        print("f00dfeed" * 8)
    elif args[0] == "port":
        port = 40000 + int(args[2].split("/")[0])
        print(f"0.0.0.0:{port}")
        print(f"[::]:{port}")
    elif args[0] == "commit":
        print("sha256:" + "ab" * 32)
    elif args[:2] == ["rm", "-f"]:
        (state / "containers" / args[2]).unlink(missing_ok=True)
    elif args[:2] == ["volume", "create"]:
        (state / "volumes" / args[-1]).touch()
        print(args[-1])
    elif args[:2] == ["volume", "ls"]:
        for volume in sorted((state / "volumes").iterdir()):
            print(volume.name)
    elif args[:2] == ["volume", "rm"]:
        (state / "volumes" / args[-1]).unlink(missing_ok=True)
    """
)


def install(folder: Path) -> Path:
    """Write the fake `docker` into `folder` (put it first on PATH)."""
    script = folder / "docker"
    script.write_text(f"#!{sys.executable}\n{SCRIPT}")
    script.chmod(0o755)
    return script


def calls(log: Path) -> list[list[str]]:
    """The argv of each call so far."""
    return [json.loads(line)["argv"] for line in log.read_text().splitlines()] if log.exists() else []


def stdin_of(log: Path, *prefix: str) -> list[str]:
    """What was piped to calls whose argv starts with `prefix`."""
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    return [r["stdin"] for r in rows if r["argv"][: len(prefix)] == list(prefix)]
