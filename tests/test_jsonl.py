"""The per-epoch JSON-lines logs: append creates the folder, read returns the records in order."""
from canu_plugin.jsonl import append_jsonl, read_jsonl


def test_append_then_read(tmp_path):
    path = str(tmp_path / "new" / "log.jsonl")
    assert read_jsonl(path) == []
    append_jsonl(path, {"epoch": 0, "x": 1.5})
    append_jsonl(path, {"epoch": 1, "x": [1, 2]})
    assert read_jsonl(path) == [{"epoch": 0, "x": 1.5}, {"epoch": 1, "x": [1, 2]}]
