"""A small fake trainer for the end-to-end tests: the node agent's `train` hook (API.md §13).

It reads its command's params as JSON on stdin, downloads the dataset with the node's token (from the agent's
config file, $GPU_NODE_CONFIG), prints one JSON progress line per "step" on stdout, and writes
`{"fine_tuned_model": <output_model>}` to $GPU_NODE_RESULT_FILE. FAKE_TRAINER_STEP_S paces the steps.
"""

import json
import os
import sys
import time
import urllib.request


def main() -> int:
    params = json.loads(sys.stdin.read() or "{}")
    with open(os.environ["GPU_NODE_CONFIG"]) as f:
        token = json.load(f)["node_token"]
    request = urllib.request.Request(params["dataset_url"], headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        examples = [line for line in response.read().decode().splitlines() if line.strip()]
    steps = 4
    pause = float(os.environ.get("FAKE_TRAINER_STEP_S", "1.5"))
    for step in range(1, steps + 1):
        time.sleep(pause)
        loss = round(2.0 / step, 4)
        print(json.dumps({"progress": step / steps, "step": step, "epoch": 1, "loss": loss}), flush=True)
    with open(os.environ["GPU_NODE_RESULT_FILE"], "w") as f:
        json.dump({"fine_tuned_model": params["output_model"]}, f)
    print(f"trained on {len(examples)} examples", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
