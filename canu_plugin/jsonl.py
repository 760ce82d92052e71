"""JSON-lines files: one JSON object a line. fast-reid's ``metrics.json`` (read by
:func:`canu_plugin.engine.run_files.epoch_records`) and ACAN's diagnostics
(``MODEL.ACAN.DIAG_FILE``, appended by its hook) are such files."""
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
