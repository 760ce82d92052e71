"""The per-epoch logs (``pseudo_labels.jsonl``, ``discriminator.jsonl``, ``run_log.jsonl``,
ACAN's diagnostics): one JSON object a line, appended by the hooks, read by the benchmark."""
import json
import os


def append_jsonl(path, record):
    """Append ``record`` (a JSON-serialisable dict) as one line of ``path``, creating its folder."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_jsonl(path):
    """Every record of ``path`` in order; [] when the file does not exist."""
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
