"""The files and folders a user names: text read as UTF-8 (with or without a byte-order mark),
folders made to write into, files written all at once (`atomic_write`), each failure a
one-line VaarError naming the path instead of a traceback (a binary or UTF-16 file, a folder
where a file was meant, a path under a file, a full disk). And `package_path`: the files vaar
ships inside its package (instruments, reference, R sources, templates, static pages)."""

from __future__ import annotations

import codecs
import contextlib
import errno
import os
import re
import secrets
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from vaar.errors import ConfigError, VaarError


def package_path(*parts: str) -> Path:
    """A file or folder shipped inside the vaar package, wherever vaar is installed (a wheel in
    site-packages or an editable checkout). pip always unpacks vaar, so it is a real path that
    R can source and a folder can be globbed."""
    return Path(resources.files("vaar"), *parts)


_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)  # also the start of UTF-32 LE/BE


def decode_text(data: bytes, name: str) -> str:
    """`data` as text: UTF-8, a leading BOM dropped; UTF-16, binary or other encodings are
    refused with a message that says how to fix the file."""
    if data.startswith(_UTF16_BOMS):
        raise VaarError(f"{name}: UTF-16 (or UTF-32) text; save the file as UTF-8")
    if b"\x00" in data:
        offset = data.index(b"\x00")
        raise VaarError(f"{name}: binary content (a NUL byte at offset {offset}), not a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise VaarError(
            f"{name}: not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); "
            "save the file as UTF-8"
        ) from None


def os_reason(exc: OSError, path: Path) -> str:
    """Why an OSError happened, in words about `path` (no errno numbers, no traceback)."""
    if exc.errno == errno.ENOTDIR or isinstance(exc, NotADirectoryError):
        parent = file_ancestor(path)
        return f"{parent} is a file, not a folder" if parent else "a parent is not a folder"
    if isinstance(exc, IsADirectoryError):
        return "it is a folder"
    return exc.strerror or str(exc)


def read_bytes(path: str | Path, what: str = "file") -> bytes:
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise VaarError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise VaarError(f"{path}: is a folder, not a {what}") from None
    except OSError as exc:
        raise VaarError(f"{path}: cannot read the {what} ({os_reason(exc, path)})") from None


def read_text(path: str | Path, what: str = "file") -> str:
    """A text file the user named (UTF-8, optional BOM); VaarError naming the path otherwise."""
    return decode_text(read_bytes(path, what), str(path))


# TOML strings and comments, to look at the keys alone. tomllib's memory grows with the square
# of a dotted key's length (10,000 parts: 0.4 GB), so keys are capped before it parses.
_TOML_NOT_KEYS = re.compile(
    r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*'
)
MAX_TOML_DOTS = 100  # per line, outside strings: a study's keys have a handful


def parse_toml(text: str, name: str) -> dict:
    """TOML text as a dict; ConfigError naming `name` (and the line) when it is not valid TOML
    or is built to exhaust the parser (keys of hundreds of parts, thousands of nested arrays)."""
    bare = _TOML_NOT_KEYS.sub(lambda m: "\n" * m.group().count("\n"), text)
    for number, line in enumerate(bare.split("\n"), 1):
        if line.count(".") > MAX_TOML_DOTS:
            raise ConfigError(
                f"{name}: line {number}: more than {MAX_TOML_DOTS} dots outside strings "
                "(a key of that many parts is not a vaar setting)"
            )
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{name}: not valid TOML: arrays or tables nested too deeply") from None


def read_toml(path: str | Path, what: str = "file") -> dict:
    """A TOML file the user named, parsed; ConfigError naming the file otherwise."""
    try:
        text = read_text(path, what)
    except VaarError as exc:
        raise ConfigError(str(exc)) from None
    return parse_toml(text, str(path))


def file_ancestor(path: Path) -> Path | None:
    """The nearest existing ancestor of `path` that is not a folder, if any."""
    for parent in Path(path).parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def folder_problem(path: str | Path) -> str | None:
    """Why `path` cannot be (or become) a folder to write into, or None when it can."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        return f"{path} is a file, not a folder"
    parent = file_ancestor(path)
    if parent is not None:
        return f"{path} lies under {parent}, which is a file"
    return None


def make_folder(path: str | Path, what: str = "output folder") -> Path:
    """Create `path` (and its parents) to write into; VaarError naming it when that fails."""
    path = Path(path)
    problem = folder_problem(path)
    if problem:
        raise VaarError(f"{what}: {problem}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VaarError(f"{what}: cannot create {path} ({os_reason(exc, path)})") from None
    return path


@contextlib.contextmanager
def atomic_write(path: str | Path, what: str = "file") -> Iterator[Path]:
    """Write `path` all or nothing: yields a temporary path beside it to write; once the block
    is done the data are synced and the temporary file replaces `path` (os.replace). On any
    failure (a full disk, say) the temporary file is removed and `path`, if it existed, is left
    as it was; an OSError becomes a one-line VaarError naming `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the data are on disk before the name points at them
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise VaarError(f"{path}: cannot write the {what} ({os_reason(exc, path)})") from None
        raise


def write_text(path: str | Path, text: str, what: str = "file") -> Path:
    """`text` written to `path` as UTF-8, all or nothing (see atomic_write)."""
    with atomic_write(path, what) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
