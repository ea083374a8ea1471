"""`gpu-node-train`: the reference trainer, a `train` hook that really fine-tunes (LoRA; API.md §13).

The agent runs it with the `train` command's params as a JSON object on stdin (`{job_id, base_model, dataset_url,
hyperparameters: {n_epochs, batch_size, learning_rate}, output_model}`; `GPU_NODE_PARAM_*` when stdin is empty).
It downloads the dataset (JSONL: chat `messages`, or `prompt` + `completion`, or `text`), sending the node token
from the agent's config only to the service itself, trains a LoRA adapter on the base model with `transformers` +
`peft` + `torch`, prints one JSON progress line per optimizer step (`{"progress", "step", "epoch", "loss",
"learning_rate"}`), saves the adapter (and tokenizer) to `<output dir>/<output model, made a folder name>`, and
writes `{"fine_tuned_model": <output_model>}` to `$GPU_NODE_RESULT_FILE`. With `--load-adapter` it then asks the
node's vLLM to serve the adapter under that name (`POST <backend>/load_lora_adapter`).

Install it with the agent's extra: `pip install "gpu-node[train]"`. torch, transformers and peft are imported only
when training starts, so the agent itself never needs them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from gpu_node import config as node_config
from gpu_node.hooks import env_name

MAX_DATASET_BYTES = 1 << 30
DOWNLOAD_TIMEOUT_S = 60.0


class TrainError(Exception):
    """The job cannot be trained as asked: the message says why (it becomes the job's error)."""


@dataclass
class Job:
    job_id: str
    base_model: str
    dataset_url: str
    output_model: str
    epochs: int
    batch_size: int
    learning_rate: float


def default_output_dir() -> Path:
    """$GPU_NODE_ADAPTERS_DIR, else ~/.local/share/gpu-node/adapters."""
    env = os.environ.get("GPU_NODE_ADAPTERS_DIR")
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "gpu-node" / "adapters"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gpu-node-train", description="Fine-tune a LoRA adapter for a training job.")
    p.add_argument("--config", type=Path, help="the agent's config (default $GPU_NODE_CONFIG or ~/.config/gpu-node/)")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="load base model NAME from PATH (a local folder); other names go to from_pretrained(NAME)",
    )
    p.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="where adapters go (default $GPU_NODE_ADAPTERS_DIR or ~/.local/share/gpu-node/adapters)",
    )
    p.add_argument("--max-length", type=int, default=1024, help="tokens per example, longer ones cut (1024)")
    p.add_argument(
        "--micro-batch-size",
        type=int,
        default=4,
        help="examples per forward pass; the job's batch size is reached by gradient accumulation (4)",
    )
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--lora-alpha", type=int, default=32)
    p.add_argument("--lora-dropout", type=float, default=0.05)
    p.add_argument("--gradient-checkpointing", action="store_true", help="less GPU memory, slower steps")
    p.add_argument("--device", default="auto", help="cuda, cpu, ... (auto: cuda when available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--load-adapter",
        action="store_true",
        help="then POST the adapter to the backend's /load_lora_adapter (vLLM with runtime LoRA updates)",
    )
    return p.parse_args(argv)


def read_job(stdin_text: str, environ: dict[str, str]) -> Job:
    """The `train` params: the JSON object on stdin, else the GPU_NODE_PARAM_* variables."""
    params: Any
    if stdin_text.strip():
        try:
            params = json.loads(stdin_text)
        except ValueError as exc:
            raise TrainError(f"the params on stdin are not JSON: {exc}") from exc
    else:
        names = ("job_id", "base_model", "dataset_url", "output_model", "hyperparameters")
        params = {n: environ[env_name(n)] for n in names if env_name(n) in environ}
        if isinstance(params.get("hyperparameters"), str):
            params["hyperparameters"] = json.loads(params["hyperparameters"])
    if not isinstance(params, dict):
        raise TrainError("the params must be a JSON object")
    missing = [n for n in ("base_model", "dataset_url", "output_model") if not isinstance(params.get(n), str)]
    if missing:
        raise TrainError(f"the params lack {', '.join(missing)}")
    hyper = params.get("hyperparameters") if isinstance(params.get("hyperparameters"), dict) else {}
    try:
        epochs, batch, rate = (
            int(hyper.get("n_epochs", 1)),
            int(hyper.get("batch_size", 8)),
            float(hyper.get("learning_rate", 1e-4)),
        )
    except (TypeError, ValueError) as exc:
        raise TrainError(f"bad hyperparameters: {exc}") from exc
    if epochs < 1 or batch < 1 or not (0 < rate < 1):
        raise TrainError("n_epochs and batch_size must be at least 1 and learning_rate between 0 and 1")
    return Job(
        str(params.get("job_id", "")),
        params["base_model"],
        params["dataset_url"],
        params["output_model"],
        epochs,
        batch,
        rate,
    )


def same_origin(url: str, server_url: str) -> bool:
    a, b = urlsplit(url), urlsplit(server_url)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


def fetch_dataset(url: str, *, server_url: str, token: str, timeout: float = DOWNLOAD_TIMEOUT_S) -> list[dict]:
    """The dataset's examples. The node token goes only to the service (an uploaded file's URL), never elsewhere."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise TrainError(f"the dataset URL must be http(s): {url!r}")
    headers = {"Authorization": f"Bearer {token}"} if token and same_origin(url, server_url) else {}
    body = bytearray()
    try:
        with httpx.stream("GET", url, headers=headers, timeout=timeout, follow_redirects=False) as r:
            if r.status_code != 200:
                raise TrainError(f"the dataset download answered HTTP {r.status_code} ({url})")
            for chunk in r.iter_bytes():
                body += chunk
                if len(body) > MAX_DATASET_BYTES:
                    raise TrainError(f"the dataset is larger than {MAX_DATASET_BYTES} bytes")
    except httpx.HTTPError as exc:
        raise TrainError(f"cannot download the dataset ({url}): {exc}") from exc
    return parse_jsonl(body.decode("utf-8", errors="replace"))


def parse_jsonl(text: str) -> list[dict]:
    examples = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            example = json.loads(line)
        except ValueError as exc:
            raise TrainError(f"dataset line {number} is not JSON: {exc}") from exc
        if not isinstance(example, dict) or not ({"messages", "text"} & example.keys() or "completion" in example):
            raise TrainError(f"dataset line {number} needs messages, prompt + completion, or text")
        examples.append(example)
    if not examples:
        raise TrainError("the dataset has no examples")
    return examples


def example_text(example: dict, tokenizer: Any) -> str:
    """One example as the text the model learns: chat messages through the tokenizer's chat template (plain
    `role: content` lines when it has none), prompt + completion, or text; ended with the EOS token."""
    eos = tokenizer.eos_token or ""
    if isinstance(example.get("messages"), list):
        messages = [m for m in example["messages"] if isinstance(m, dict)]
        if getattr(tokenizer, "chat_template", None):
            return str(tokenizer.apply_chat_template(messages, tokenize=False))
        return "\n".join(f"{m.get('role', 'user')}: {m.get('content') or ''}" for m in messages) + eos
    if "completion" in example:
        return f"{example.get('prompt') or ''}{example['completion']}{eos}"
    return f"{example['text']}{eos}"


def adapter_dir(output_dir: Path, output_model: str) -> Path:
    """`ft:org/base:suffix:7` -> <output_dir>/ft-org-base-suffix-7."""
    return output_dir / re.sub(r"[^A-Za-z0-9._]+", "-", output_model).strip("-.")


def emit(**fields: Any) -> None:
    """One progress line for the agent (API.md §13)."""
    print(json.dumps(fields), flush=True)


def model_path(name: str, mapping: list[str]) -> str:
    for entry in mapping:
        key, sep, path = entry.partition("=")
        if not sep:
            raise TrainError(f"--model takes NAME=PATH, not {entry!r}")
        if key == name:
            return path
    return name


def _device(torch: Any, wanted: str) -> Any:
    if wanted != "auto":
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_model(path: str, args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(the base model wrapped with fresh LoRA layers on every linear layer, its tokenizer, the device)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(args.seed)  # the LoRA weights' start and dropout: a run repeats
    device = _device(torch, args.device)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16 if bf16 else torch.float32)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    lora = LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora).to(device)
    return model, tokenizer, device


def _batch_loss(model: Any, tokenizer: Any, texts: list[str], device: Any, max_length: int) -> Any:
    batch = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
    batch = {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    return model(**batch, labels=labels).loss


def train(job: Job, texts: list[str], model: Any, tokenizer: Any, device: Any, args: argparse.Namespace) -> float:
    """AdamW over the LoRA weights, `job.epochs` passes in shuffled batches of `job.batch_size` (micro-batches
    accumulated); one progress line per step. The last step's loss."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=job.learning_rate)
    per_epoch = math.ceil(len(texts) / job.batch_size)
    total, step, loss_value = per_epoch * job.epochs, 0, float("nan")
    micro = max(1, min(args.micro_batch_size, job.batch_size))
    order = list(range(len(texts)))
    rng = random.Random(args.seed)  # noqa: S311 - the order of examples, not a secret
    model.train()
    for _ in range(job.epochs):
        rng.shuffle(order)
        for start in range(0, len(order), job.batch_size):
            chunk = [texts[i] for i in order[start : start + job.batch_size]]
            loss_value = 0.0
            for m in range(0, len(chunk), micro):
                part = chunk[m : m + micro]
                loss = _batch_loss(model, tokenizer, part, device, args.max_length) * (len(part) / len(chunk))
                loss.backward()
                loss_value += float(loss.detach())
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            emit(
                progress=round(step / total, 6),
                step=step,
                epoch=round(step / per_epoch, 4),
                loss=round(loss_value, 6),
                learning_rate=job.learning_rate,
            )
    return loss_value


def load_into_backend(cfg: node_config.NodeConfig, name: str, path: Path) -> None:
    """Ask the node's vLLM (VLLM_ALLOW_RUNTIME_LORA_UPDATING=True) to serve the adapter as `name`."""
    url = cfg.backend_url.rstrip("/") + "/load_lora_adapter"
    headers = {"Authorization": f"Bearer {cfg.backend_key}"} if cfg.backend_key else {}
    try:
        r = httpx.post(url, json={"lora_name": name, "lora_path": str(path)}, headers=headers, timeout=300)
    except httpx.HTTPError as exc:
        raise TrainError(f"cannot reach the backend to load the adapter ({url}): {exc}") from exc
    if r.status_code != 200:
        raise TrainError(f"the backend did not load the adapter ({url}: HTTP {r.status_code}: {r.text[:500]})")


def run(args: argparse.Namespace, stdin_text: str, environ: dict[str, str]) -> Path:
    """Train one job; the adapter's folder."""
    job = read_job(stdin_text, environ)
    cfg = node_config.load(args.config or node_config.default_path())
    examples = fetch_dataset(job.dataset_url, server_url=cfg.server_url, token=cfg.node_token)
    print(f"job {job.job_id}: {len(examples)} examples, base model {job.base_model}", flush=True)
    model, tokenizer, device = load_model(model_path(job.base_model, args.model), args)
    texts = [example_text(e, tokenizer) for e in examples]
    emit(progress=0.0, step=0, message=f"training {job.output_model} on {device}")
    train(job, texts, model, tokenizer, device, args)
    folder = adapter_dir(args.output_dir or default_output_dir(), job.output_model)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    print(f"adapter saved to {folder}", flush=True)
    if args.load_adapter:
        load_into_backend(cfg, job.output_model, folder)
        print(f"the backend serves {job.output_model}", flush=True)
    result_file = environ.get("GPU_NODE_RESULT_FILE")
    if result_file:
        Path(result_file).write_text(json.dumps({"fine_tuned_model": job.output_model}))
    return folder


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args, "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read(), dict(os.environ))
    except (TrainError, node_config.ConfigError) as exc:
        print(f"gpu-node-train: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
