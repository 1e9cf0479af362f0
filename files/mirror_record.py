"""What the mirror remembers of a file's copy in a workspace: the `files.mirror_stat` column.

One record per file row, written by the host that last wrote, read or removed the copy:

    {"at": "src/a.py", "stat": "1234:1712345678901234567", "sha": "<sha256>", "by": "<id>"}

- `by` is the id of the disk that holds the workspace (`<data dir>/mirror-id`, made once), so a
  host never takes another host's copy for its own: a project's stale workspace on a host its
  container left is brought up to date, never imported back;
- `at` is where the copy is in the workspace: a move renames the row at once, the copy when the
  mirror gets to it;
- `stat` ("size:mtime_ns" of the copy; None: this host left no copy) tells whether a program
  changed the copy since, and `sha` what the copy held then, so a newer version in PostgreSQL
  is told apart from a program's change.

Records written before the mirror moved to the agent are a bare "size:mtime_ns": read as this
host's, with the content unknown (the mirror then wrote synchronously, so they were current).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

ID_FILE = "mirror-id"


@dataclass(frozen=True, slots=True)
class MirrorRecord:
    at: str
    stat: str | None
    sha: str | None
    by: str

    def encode(self) -> str:
        return json.dumps(
            {"at": self.at, "stat": self.stat, "sha": self.sha, "by": self.by},
            separators=(",", ":"),
        )

    @property
    def has_copy(self) -> bool:
        return self.stat is not None


def parse_record(raw: str | None, path: str, host: str) -> MirrorRecord | None:
    """The record in `raw` (None: no host ever kept a copy); a legacy stat is this host's."""
    if not raw:
        return None
    if not raw.startswith("{"):
        return MirrorRecord(at=path, stat=raw, sha=None, by=host)
    try:
        found = json.loads(raw)
        return MirrorRecord(
            at=str(found["at"]),
            stat=None if found["stat"] is None else str(found["stat"]),
            sha=None if found["sha"] is None else str(found["sha"]),
            by=str(found["by"]),
        )
    except (ValueError, KeyError, TypeError):
        return None  # unreadable: as if no host had a copy


def host_id(data_dir: Path) -> str:
    """The id of the disk under `data_dir`, made the first time it is asked for. Hosts that
    share the disk share the id, as they share the workspaces on it."""
    path = data_dir / ID_FILE
    with contextlib.suppress(FileNotFoundError):
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    made = str(uuid.uuid4())
    tmp = data_dir / f".{ID_FILE}.{made}"
    tmp.write_text(made + "\n")
    try:
        # link() fails when another process made the id first: theirs wins, ours goes.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()
