"""The journal: what a run has finished, so an interrupted run continues where it stopped.

One append-only file beside the output. Each record is framed (length, CRC32, pickled body) and written
with one `write` call and flushed, so a run killed at any instant (Ctrl-C, SIGTERM, `kill -9`) leaves at most
one torn record at the end; opening the journal drops it. The first record is the run's fingerprint: a
journal written by a different command is refused rather than mixed in.

Records: ("done", key, outcome) when an item is predicted (or fails, or is skipped), ("pushed", keys) after
those items' predictions reached Label Studio. The final files are built from the journal at the end, in
source order, so the output is the same however often the run was interrupted.
"""

from __future__ import annotations

import pickle
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from converters.errors import SegassistError

_FRAME = struct.Struct("<II")  # body length, CRC32 of the body


class Journal:
    def __init__(self, path: Path, fingerprint: dict[str, Any]) -> None:
        self.path = path
        self.offsets: dict[str, int] = {}  # key -> offset of its "done" record
        self.pushed: set[str] = set()
        self.resumed = path.exists()
        if self.resumed:
            self._load(fingerprint)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = path.open("wb")
            self._append(("fingerprint", fingerprint))

    def _load(self, fingerprint: dict[str, Any]) -> None:
        good = 0
        with self.path.open("rb") as handle:
            for offset, record in records(handle):
                if offset == 0:
                    if record != ("fingerprint", fingerprint):
                        raise SegassistError(
                            "the journal of an interrupted run with other arguments is in the way: rerun "
                            "that command to finish it, or delete the journal to start over",
                            file=str(self.path),
                        )
                elif record[0] == "done":
                    self.offsets[record[1]] = offset
                elif record[0] == "pushed":
                    self.pushed.update(record[1])
                good = handle.tell()
        if good == 0:  # killed before its first record was whole: nothing to resume
            self.resumed = False
            self._handle = self.path.open("wb")
            self._append(("fingerprint", fingerprint))
            return
        self._handle = self.path.open("r+b")
        self._handle.truncate(good)  # a record torn by a kill
        self._handle.seek(good)

    def _append(self, record: tuple) -> int:
        body = pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
        offset = self._handle.tell()
        self._handle.write(_FRAME.pack(len(body), zlib.crc32(body)) + body)
        self._handle.flush()
        return offset

    def done(self, key: str, outcome: Any) -> None:
        self.offsets[key] = self._append(("done", key, outcome))

    def mark_pushed(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        self._append(("pushed", keys))
        self.pushed.update(keys)

    def outcomes(self, keys: Iterable[str]) -> Iterator[tuple[str, Any]]:
        """(key, outcome or None) for each of `keys`, in that order; read from disk one at a time, so the
        journal never holds outcomes in memory."""
        self._handle.flush()
        with self.path.open("rb") as handle:
            for key in keys:
                offset = self.offsets.get(key)
                if offset is None:
                    yield key, None
                    continue
                handle.seek(offset)
                length, _ = _FRAME.unpack(handle.read(_FRAME.size))
                yield key, pickle.loads(handle.read(length))[2]

    def close(self) -> None:
        self._handle.close()

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def records(handle: Any) -> Iterable[tuple[int, tuple]]:
    """(offset, record) up to the first torn or corrupt record."""
    while True:
        offset = handle.tell()
        header = handle.read(_FRAME.size)
        if len(header) < _FRAME.size:
            return
        length, crc = _FRAME.unpack(header)
        body = handle.read(length)
        if len(body) < length or zlib.crc32(body) != crc:
            return
        try:
            record = pickle.loads(body)
        except Exception:  # a body that passed its CRC yet does not unpickle: treat as torn
            return
        yield offset, record
