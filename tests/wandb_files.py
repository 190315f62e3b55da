"""Reads W&B offline run files (``run-*.wandb``) back: LevelDB-log framing around protobuf ``Record`` messages.

wandb ≥ 0.2x no longer ships a Python reader; the format is: a 7-byte header (":W&B", magic, version), then 32 KiB
blocks of chunks, each with a 7-byte header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last).
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768


def _payloads(raw: bytes):
    pos, buf = 7, b""
    while pos + 7 <= len(raw):
        left = BLOCK - (pos % BLOCK)
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        pos += 7
        if kind == 0 and length == 0:
            break
        buf += raw[pos : pos + length]
        pos += length
        if kind in (1, 4):
            yield buf
            buf = b""


def _key(item) -> str:
    """Items carry either ``key`` or ``nested_key`` (a path), depending on the wandb version and the key."""
    return item.key or "/".join(item.nested_key)


def read_offline_run(path: Path) -> dict:
    """{'run': {name, group, job_type, config}, 'history': [rows], 'summary': {...}} of one ``.wandb`` file.

    Media (tables, images) arrive as flattened keys: ``<key>/_type``, ``<key>/path``, …; see ``logged_file``."""
    out: dict = {"run": {}, "history": [], "summary": {}}
    for data in _payloads(Path(path).read_bytes()):
        rec = pb.Record()
        rec.ParseFromString(data)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            config = {i.key: json.loads(i.value_json) for i in rec.run.config.update}
            out["run"] = {"name": rec.run.display_name, "group": rec.run.run_group, "job_type": rec.run.job_type,
                          "config": config}
        elif kind == "history":
            out["history"].append({_key(i): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            out["summary"].update({_key(i): json.loads(i.value_json) for i in rec.summary.update if _key(i)})
    return out


def logged_file(wandb_file: Path, row: dict, key: str) -> Path:
    """The media file a logged ``wandb.Table`` or ``wandb.Image`` under ``key`` points at (``files/`` of the run)."""
    relative = row[f"{key}/path"] if f"{key}/path" in row else row[key]["path"]
    return Path(wandb_file).parent / "files" / relative


def logged_table(wandb_file: Path, row: dict, key: str) -> tuple[list, list]:
    """(columns, rows) of a ``wandb.Table`` logged under ``key``, as its ``.table.json`` holds them."""
    assert (row.get(f"{key}/_type") or row[key]["_type"]) == "table-file", f"{key} is not a logged table"
    data = json.loads(logged_file(wandb_file, row, key).read_text(encoding="utf-8"))
    return data["columns"], data["data"]
