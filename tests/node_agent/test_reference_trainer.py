"""The reference trainer `gpu-node-train` (API.md §13), for real on the CPU: a tiny Llama and its tokenizer built
here (no download), a JSONL dataset served by a stub of the service's dataset endpoint (which checks the node
token) and a stub of vLLM's /load_lora_adapter, run as the agent runs a `train` hook. The loss goes down, the
adapter is saved, the progress lines are what the agent streams, and the backend is asked to serve the adapter."""

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from gpu_node import hooks, train
from gpu_node.config import Hook, NodeConfig, save

GPU_NODE_TRAIN = Path(sys.executable).with_name("gpu-node-train")
TOKEN = "gpn_node-token"
FILE_PATH = "/api/v1/llm_models/files/3/"
QA = [("what is the capital of france", "paris"), ("what is the capital of italy", "rome"),
      ("what is the capital of spain", "madrid"), ("what is the capital of japan", "tokyo")]  # fmt: skip
DATASET = "".join(
    json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n"
    for q, a in QA * 2
)
CHAT_TEMPLATE = "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}{{ eos_token }}"


class Stub:
    """The service's dataset endpoint (node token required) and a vLLM's /v1/load_lora_adapter."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict, bytes]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _record(self) -> bytes:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stub.requests.append((self.command, self.path, dict(self.headers), body))
                return body

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._record()
                if self.path != FILE_PATH:
                    self._answer(404, b"")
                elif self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._answer(401, b'{"detail": "node token required"}')
                else:
                    self._answer(200, DATASET.encode())

            def do_POST(self) -> None:
                self._record()
                self._answer(200 if self.path == "/v1/load_lora_adapter" else 404, b"Success")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def stub() -> Iterator[Stub]:
    server = Stub()
    yield server
    server.server.shutdown()


def tiny_model(folder: Path) -> Path:
    """A 2-layer Llama (hidden 32) and a word-level tokenizer for the dataset's words, saved to `folder`."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = sorted({w for q, a in QA for w in f"user assistant : {q} {a}".split()})
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[EOS]", *words])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]")
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=0, eos_token_id=2, bos_token_id=2)  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_the_reference_trainer_fine_tunes_a_tiny_model_on_the_cpu_and_its_loss_goes_down(stub, tmp_path):
    model_dir = tiny_model(tmp_path / "base")
    config_path = tmp_path / "config.json"
    save(NodeConfig(server_url=stub.url, node_id=1, node_token=TOKEN, backend_url=f"{stub.url}/v1",
                    backend_key="sk-backend"), config_path)  # fmt: skip
    argv = [str(GPU_NODE_TRAIN), "--config", str(config_path), "--model", f"org/tiny={model_dir}",
            "--output-dir", str(tmp_path / "adapters"), "--device", "cpu", "--micro-batch-size", "2",
            "--lora-r", "8", "--load-adapter"]  # fmt: skip
    params = {"job_id": 3, "base_model": "org/tiny", "dataset_url": f"{stub.url}{FILE_PATH}",
              "hyperparameters": {"n_epochs": 5, "batch_size": 4, "learning_rate": 0.005},
              "output_model": "ft:org/tiny:qa:3"}  # fmt: skip
    reports: list[dict] = []

    result = hooks.execute({"id": 9, "action": "train", "params": params},
                           {"train": Hook(argv=argv, timeout_s=120)}, on_progress=reports.append)  # fmt: skip

    assert result["status"] == "succeeded", result["output"]
    assert result["fine_tuned_model"] == "ft:org/tiny:qa:3"
    steps = [r for r in reports if r.get("metrics", {}).get("step", 0) > 0]
    assert [r["metrics"]["step"] for r in steps] == list(range(1, 11))  # 8 examples / 4 a batch x 5 epochs
    assert [r["progress"] for r in steps] == [s / 10 for s in range(1, 11)]
    assert steps[-1]["metrics"]["epoch"] == 5
    losses = [r["metrics"]["loss"] for r in steps]
    assert losses[-1] < losses[0] * 0.9, losses
    adapter = tmp_path / "adapters" / "ft-org-tiny-qa-3"
    assert (adapter / "adapter_model.safetensors").stat().st_size > 0
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 8
    assert f"adapter saved to {adapter}" in result["output"]
    dataset_get = [r for r in stub.requests if r[0] == "GET"]
    assert [r[2].get("Authorization") for r in dataset_get] == [f"Bearer {TOKEN}"]
    (load,) = [r for r in stub.requests if r[0] == "POST"]
    assert load[1] == "/v1/load_lora_adapter" and load[2]["Authorization"] == "Bearer sk-backend"
    assert json.loads(load[3]) == {"lora_name": "ft:org/tiny:qa:3", "lora_path": str(adapter)}


# --- its parts, without torch ------------------------------------------------------------------------------------


def test_the_node_token_goes_to_the_service_only(stub):
    other = Stub()  # another origin: a client's https dataset, say
    try:
        assert len(train.fetch_dataset(f"{stub.url}{FILE_PATH}", server_url=stub.url, token=TOKEN)) == 8
        with pytest.raises(train.TrainError, match="HTTP 401"):
            train.fetch_dataset(f"{other.url}{FILE_PATH}", server_url=stub.url, token=TOKEN)
    finally:
        other.server.shutdown()
    assert "Authorization" not in other.requests[0][2]


def test_a_bad_dataset_line_is_named():
    with pytest.raises(train.TrainError, match="dataset line 2 is not JSON"):
        train.parse_jsonl('{"text": "a"}\n{oops\n')
    with pytest.raises(train.TrainError, match="dataset line 1 needs messages"):
        train.parse_jsonl('{"prompt": "a"}\n')


def test_the_params_come_from_stdin_or_the_hooks_environment():
    params = {"job_id": 4, "base_model": "org/a", "dataset_url": "https://x/d.jsonl", "output_model": "ft:org/a:j:4",
              "hyperparameters": {"n_epochs": 2, "batch_size": 16, "learning_rate": 0.0002}}  # fmt: skip
    from_stdin = train.read_job(json.dumps(params), {})
    environ = {hooks.env_name(k): v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
    assert train.read_job("", environ) == from_stdin
    assert (from_stdin.epochs, from_stdin.batch_size, from_stdin.learning_rate) == (2, 16, 0.0002)
    with pytest.raises(train.TrainError, match="lack dataset_url"):
        train.read_job(json.dumps({**params, "dataset_url": None}), {})
