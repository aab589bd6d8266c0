"""Files: every file or folder a command writes goes through an `Outputs`; a file a dataset names (a panoptic
PNG, a label map) is found with `inside`, which keeps it in the dataset's folder.

An `Outputs` holds all the outputs of one command. Each output is reserved before the work starts, which also
checks that it can be written: a temporary file or folder is made beside the target, on the same file system.
The work writes into those temporary paths; `commit` then puts them all in place together, and an error (or
leaving the `with` block without a commit) removes them all and touches no target. What the target is decides
how the output is put in place:

- nothing yet, or a regular file: replaced atomically by a rename. The new file gets the mode a plain `open()`
  would give it: an existing file keeps its mode, a new one gets 0666 less the umask (folders: 0777 less it);
- a symlink: followed to its final target, which is replaced as above; the link stays;
- a character device or a FIFO (`-` is standard output): the content, staged in the system's temporary folder,
  is copied into it at commit, since a rename would replace the device (file outputs only);
- a folder: replaced by the new folder for a folder output (the old one is removed after the swap); refused
  for a file output. Anything else (a block device, a socket) is refused.

A target that cannot be written raises `OutputError`: "cannot write PATH: reason".
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import orjson

from converters.errors import OutputError, SegassistError

STDOUT = "-"


@dataclass
class _Output:
    target: Path  # as the user named it (messages)
    final: Path  # where the content goes: the symlink's final target, the device, or `target`
    temp: Path
    folder: bool
    stream: bool  # copied into `final` (a device, a FIFO, standard output) instead of renamed over it
    mode: int  # given to `temp` just before the rename (set earlier, a read-only mode would bar the writing)


class Outputs:
    """All the outputs of one command, committed together or not at all (see the module's docstring).

    Use as `with Outputs() as outputs:`, reserve with `file` and `folder` before the work, write into the
    paths they return, then `commit()`; leaving the block without a commit removes every temporary path.
    """

    def __init__(self) -> None:
        self._outputs: list[_Output] = []
        self._scratch: list[Path] = []
        self._handles = contextlib.ExitStack()
        self._done = False

    def __enter__(self) -> Outputs:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if not self._done:
            self.abort()

    def file(self, target: Path | str) -> Path:
        """Reserve the file output `target`; returns the temporary file to write (empty, made now)."""
        return self._reserve(target, folder=False)

    def folder(self, target: Path | str) -> Path:
        """Reserve the folder output `target`; returns the temporary folder to fill (empty, made now)."""
        return self._reserve(target, folder=True)

    def scratch(self, beside: Path) -> Path:
        """A temporary file in the folder of `beside` (a reserved temporary path), removed at the end."""
        handle, name = tempfile.mkstemp(prefix=f".{beside.name}.part-", dir=beside.parent)
        os.close(handle)
        self._scratch.append(Path(name))
        return Path(name)

    def open(self, path: Path, mode: str = "r+b") -> IO[Any]:
        """Open a reserved or scratch path; the handle is closed at the latest on commit or abort."""
        return self._handles.enter_context(path.open(mode))

    def commit(self) -> None:
        """Put every output in place: streams first (the step that can fail late), then the renames."""
        self._handles.close()
        try:
            for output in self._outputs:
                if output.stream:
                    _copy_into_stream(output)
            for output in self._outputs:
                if not output.stream:
                    _move_into_place(output)
        finally:
            self._done = True
            self._remove_temporaries()

    def abort(self) -> None:
        """Remove every temporary path; no target is touched (folders made for the targets stay)."""
        self._handles.close()
        self._done = True
        self._remove_temporaries()

    def _reserve(self, target: Path | str, *, folder: bool) -> Path:
        target = Path(target)
        final, stream, mode = _inspect(target, folder=folder)
        for output in self._outputs:
            if output.final == final:
                raise OutputError(f"cannot write {target}: named twice as an output of the same command")
            # A folder output replaces its whole folder: anything written inside it would be lost.
            if (output.folder and final.is_relative_to(output.final)) or (
                folder and output.final.is_relative_to(final)
            ):
                raise OutputError(
                    f"cannot write {target}: it and {output.target} would be inside one another"
                )
        try:
            if stream:
                handle, name = tempfile.mkstemp(prefix="segassist-")
                os.close(handle)
                temp = Path(name)
            else:
                _make_parents(target, final.parent)
                prefix = f".{final.name}.tmp-"
                if folder:
                    temp = Path(tempfile.mkdtemp(prefix=prefix, dir=final.parent))
                else:
                    handle, name = tempfile.mkstemp(prefix=prefix, dir=final.parent)
                    os.close(handle)
                    temp = Path(name)
        except OSError as error:
            raise OutputError(f"cannot write {target}: {_reason(error)}") from None
        self._outputs.append(_Output(target, final, temp, folder, stream, mode))
        return temp

    def _remove_temporaries(self) -> None:
        for path in self._scratch:
            path.unlink(missing_ok=True)
        for output in self._outputs:
            _remove(output.temp)
        self._scratch.clear()


def write_text(target: Path | str, text: str) -> None:
    """Write one text output through its own `Outputs` (never half-written; see the module's docstring)."""
    with Outputs() as outputs:
        outputs.file(target).write_text(text)
        outputs.commit()


def check_writable(target: Path | str) -> None:
    """Raise OutputError now if the file output `target` could not be written later, for a command that
    reserves it only once the work has begun (a reservation made and dropped)."""
    with Outputs() as outputs:
        outputs.file(target)


# -- files a dataset names -------------------------------------------------------------------------------


def inside(folder: Path, name: object, **where: object) -> Path:
    """`folder / name`, refused (SegassistError at `where`) unless it stays inside `folder` with links
    followed: an absolute name, `..` or a symlink that leads out would let a dataset read or overwrite any
    file."""
    path = Path(folder) / str(name)
    if not path.resolve().is_relative_to(Path(folder).resolve()):
        raise SegassistError(
            f"the file name {name!r} leads outside the dataset's folder {folder}: refused", **where
        )
    return path


# -- JSON ------------------------------------------------------------------------------------------------


def parse_json(data: bytes) -> Any:
    """A whole JSON file's value from its bytes, as `json.loads` reads them (a UTF-8 byte order mark is
    allowed); an empty file is a ValueError that says so, not "Expecting value: line 1 column 1"."""
    if not data.strip():
        raise ValueError("the file is empty")
    return json.loads(data)


# The bytes orjson writes for a list of integers (nested lists included): digits, signs, commas, brackets.
_INTEGER_LIST_BYTES = b"0123456789-,[]"


def dump_json(value: Any) -> bytes:
    """`json.dumps(value)` as bytes (its ", " and ": " separators, ASCII escapes, float reprs), with every
    list of integers written by orjson: a brush RLE (up to millions of ints) several times faster.

    orjson refuses integers beyond 64 bits: a list holding one is written element by element, the json module
    writing that value, so the bytes are the same either way."""
    if isinstance(value, dict):
        return (
            b"{" + b", ".join(_dump_key(key) + b": " + dump_json(item) for key, item in value.items()) + b"}"
        )
    if isinstance(value, list | tuple):
        if value and type(value[0]) is int:  # cheap test first: most lists here hold dicts or floats
            with contextlib.suppress(TypeError):
                written = orjson.dumps(value)
                if not written.translate(None, _INTEGER_LIST_BYTES):  # ints only: commas only separate
                    return written.replace(b",", b", ")
        return b"[" + b", ".join(dump_json(item) for item in value) + b"]"
    return json.dumps(value).encode()


def _dump_key(key: Any) -> bytes:
    """A key as json writes it: a str quoted; an int, float, bool or None key made a string first."""
    return json.dumps({key: 0})[1:-4].encode()


class JsonArrayWriter:
    """Streams a JSON document whose big arrays are written one element at a time.

    Each array goes to a scratch file of its own; `finish` joins them with the small fields into the reserved
    output file, so memory never holds more than one element.
    """

    def __init__(self, outputs: Outputs, target: Path, arrays: tuple[str, ...]) -> None:
        self.temp = outputs.file(target)
        self._parts = {name: outputs.scratch(self.temp) for name in arrays}
        # "r+" on the fresh empty files: truncating ("w") makes ext4 flush each file on close.
        self._files = {name: outputs.open(path, "r+") for name, path in self._parts.items()}
        self._counts = dict.fromkeys(arrays, 0)

    def append(self, array: str, element: Any) -> None:
        handle = self._files[array]
        handle.write(",\n" if self._counts[array] else "\n")
        json.dump(element, handle, separators=(",", ":"))
        self._counts[array] += 1

    def finish(self, fields: dict[str, Any], order: tuple[str, ...]) -> None:
        """Write the document: keys in `order`, taken from `fields` or the arrays."""
        for handle in self._files.values():
            handle.close()
        with self.temp.open("r+") as out:
            out.write("{")
            for position, key in enumerate(order):
                out.write(",\n" if position else "\n")
                out.write(json.dumps(key) + ": ")
                if key in self._parts:
                    out.write("[")
                    with self._parts[key].open() as part:
                        shutil.copyfileobj(part, out)
                    out.write("\n]")
                else:
                    out.write(json.dumps(fields[key]))
            out.write("\n}\n")


# -- targets ---------------------------------------------------------------------------------------------


def _inspect(target: Path, *, folder: bool) -> tuple[Path, bool, int]:
    """(where the content goes, whether it is streamed into it, the mode for a new file or folder)."""
    if str(target) == STDOUT:
        if folder:
            raise OutputError("cannot write a folder to standard output ('-')")
        return target, True, 0
    # Links followed to the end: a rename must replace the file the link names, never the link.
    final = Path(os.path.realpath(target))
    try:
        kind = target.stat().st_mode
    except FileNotFoundError:  # a new output (or a link to one): made where the links lead
        return final, False, (0o777 if folder else 0o666) & ~_umask()
    except OSError as error:
        raise OutputError(f"cannot write {target}: {_reason(error)}") from None
    if folder:
        if not stat.S_ISDIR(kind):
            raise OutputError(f"cannot write {target}: it exists and is not a folder")
        return final, False, stat.S_IMODE(kind)
    if stat.S_ISDIR(kind):
        raise OutputError(f"cannot write {target}: it is a folder")
    # /dev/stdout and /proc/self/fd/N lead through /proc, where nothing can be renamed: written directly.
    if stat.S_ISCHR(kind) or stat.S_ISFIFO(kind) or (stat.S_ISREG(kind) and final.parts[1:2] == ("proc",)):
        return target, True, 0
    if not stat.S_ISREG(kind):
        raise OutputError(f"cannot write {target}: it is neither a regular file, a device nor a FIFO")
    return final, False, stat.S_IMODE(kind)


def _make_parents(target: Path, folder: Path) -> None:
    """Make the missing folders above the output `target`; a file on the way is named in the error."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write {target}: {existing} is not a folder")
    folder.mkdir(parents=True, exist_ok=True)


def _move_into_place(output: _Output) -> None:
    """Rename the temporary path over the target (a replaced folder is swapped out, then removed)."""
    try:
        os.chmod(output.temp, output.mode)
        if output.folder and output.final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{output.final.name}.old-", dir=output.final.parent))
            os.replace(output.final, old)
            os.replace(output.temp, output.final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(output.temp, output.final)
    except OSError as error:
        raise OutputError(f"cannot write {output.target}: {_reason(error)}") from None


def _copy_into_stream(output: _Output) -> None:
    try:
        with output.temp.open("rb") as source:
            if str(output.final) == STDOUT:
                sys.stdout.flush()
                shutil.copyfileobj(source, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            else:
                with output.final.open("wb") as sink:
                    shutil.copyfileobj(source, sink)
    except OSError as error:
        raise OutputError(f"cannot write {output.target}: {_reason(error)}") from None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def _umask() -> int:
    """The process's umask, read without changing it (the kernel reports it in /proc/self/status)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # no /proc: read it by setting it, then put it back
    os.umask(mask)
    return mask
