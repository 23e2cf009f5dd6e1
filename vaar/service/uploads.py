"""Reading and checking an upload before it is queued: a bad file gets a 4xx with a message
that says what to fix, instead of a job that fails later.

Everything here is plain Python (pandas, tomllib, the instrument files): no R in the server
process. A lavaan model must first pass the allow-list (vaar.sem.grammar, plain Python); only
then does the runner's checker process let lavaan parse it (R), for lavaan's own errors.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import pandas as pd
from aiohttp import BodyPartReader, MultipartReader, web

from vaar.config import Study, parse_study
from vaar.data import check_csv
from vaar.errors import ConfigError, VaarError
from vaar.files import parse_toml
from vaar.sem.grammar import ModelSyntaxError, check_model
from vaar.sem.ladder import check_groups, first_bad_number

DATA_SUFFIXES = (".csv", ".tsv", ".txt")
TEXT_FIELD_LIMIT = 256 * 1024  # model syntax, study TOML, group name
FIELDS = ("data", "model", "study", "group")
DEFAULT_GROUP = "model"
_MAGIC = {
    b"PK\x03\x04": "a zip archive (e.g. .xlsx)",
    b"\x89PNG": "a PNG image",
    b"%PDF": "a PDF document",
    b"\xd0\xcf\x11\xe0": "an old Office document (.xls)",
    b"\x1f\x8b": "a gzip archive",
    b"PAR1": "a Parquet file",
}


class UploadError(VaarError):
    """A 4xx whose message the error middleware sends to the client as JSON."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def bad(message: str) -> UploadError:
    return UploadError(400, message)


def unprocessable(message: str) -> UploadError:
    return UploadError(422, message)


@dataclass
class Upload:
    data: bytes = b""
    filename: str = "data.csv"
    model: str | None = None
    study_text: str | None = None
    group: str = DEFAULT_GROUP


@dataclass
class CheckedUpload:
    """A validated upload: the table, and what to fit."""

    table: pd.DataFrame
    group: str
    kind: str  # "model" (user lavaan syntax), "study" (study config), "auto" (instruments found)
    model: str | None = None
    study: Study | None = None
    study_text: str | None = None
    instruments: list[str] = field(default_factory=list)
    filename: str = "data.csv"

    def spec(self) -> dict:
        """What the job needs to run, stored with the job (plain JSON)."""
        return {
            "kind": self.kind,
            "group": self.group,
            "filename": self.filename,
            "rows": len(self.table),
            "columns": list(self.table.columns),
            "groups": sorted(map(str, self.table[self.group].unique())),
            "model": self.model,
            "study": self.study_text,
            "instruments": self.instruments,
        }


async def read_upload(request: web.Request, max_bytes: int) -> Upload:
    """Stream the multipart body, stopping as soon as it passes the size limit."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large(max_bytes)
    if not request.content_type.startswith("multipart/"):
        raise UploadError(
            415,
            f"send multipart/form-data with a 'data' file field (got {request.content_type!r})",
        )
    try:
        reader = await request.multipart()
        return await _read_parts(reader, max_bytes)
    except UploadError:
        raise
    except (ValueError, AssertionError) as exc:  # aiohttp's multipart parser on a broken body
        raise bad(f"malformed multipart body: {exc}") from None


def too_large(max_bytes: int) -> UploadError:
    return UploadError(413, f"upload too large: the limit is {max_bytes / 1048576:.1f} MiB")


async def _read_parts(reader: MultipartReader, max_bytes: int) -> Upload:
    upload, seen, total = Upload(), set(), 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise bad("nested multipart bodies are not supported")
        name = part.name or ""
        if name not in FIELDS:
            raise bad(f"unknown form field {name!r} (expected: {', '.join(FIELDS)})")
        if name in seen:
            raise bad(f"form field {name!r} was sent twice")
        seen.add(name)
        limit = max_bytes if name == "data" else TEXT_FIELD_LIMIT
        chunks = []
        while chunk := await part.read_chunk(64 * 1024):
            total += len(chunk)
            if total > max_bytes:
                raise too_large(max_bytes)
            chunks.append(chunk)
            if sum(map(len, chunks)) > limit:
                raise UploadError(413, f"field {name!r} is longer than {limit} bytes")
        body = b"".join(chunks)
        if name == "data":
            upload.data, upload.filename = body, part.filename or "data.csv"
        else:
            text = _text(body, name).strip()
            if name == "group":
                upload.group = text or DEFAULT_GROUP
            elif text:
                setattr(upload, "study_text" if name == "study" else "model", text)
    if "data" not in seen:
        raise bad("missing the 'data' file field (a CSV file with one row per respondent)")
    return upload


def _text(body: bytes, name: str) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UploadError(415, f"field {name!r} is not UTF-8 text") from None


def check_upload(upload: Upload, *, max_columns: int, max_rows: int) -> CheckedUpload:
    """Parse and check everything that needs no R, in time linear in the upload's size; the
    limits are ServiceSettings'. Raises UploadError (4xx)."""
    if upload.model and upload.study_text:
        raise bad("send either a lavaan 'model' or a 'study' config, not both")
    table = parse_table(
        upload.data, upload.filename, upload.group, max_columns=max_columns, max_rows=max_rows
    )
    check_group(table, upload.group)
    checked = CheckedUpload(
        table=table, group=upload.group, kind="auto", filename=_safe_name(upload.filename)
    )
    if upload.model:
        try:  # lavaan evaluates parts of a model as R code: nothing unchecked goes near R
            check_model(upload.model, source="model")
        except ModelSyntaxError as exc:
            raise unprocessable(str(exc)) from None
        try:
            check_groups(table, upload.group, at_least=2)  # an invariance ladder compares groups
        except VaarError as exc:
            raise unprocessable(str(exc)) from None
        checked.kind, checked.model = "model", upload.model
        return checked  # the variables are checked once lavaan has parsed the syntax
    if upload.study_text:
        checked.kind, checked.study_text = "study", upload.study_text
        checked.study = parse_study_text(upload.study_text)
        ids = list(checked.study.instruments)
    else:
        ids = _instruments_in(table)
    checked.instruments = ids
    check_items(table, ids)
    return checked


def parse_table(
    data: bytes, filename: str, group: str, *, max_columns: int, max_rows: int
) -> pd.DataFrame:
    name = filename or "data"
    if not data.strip():
        raise bad(f"{name}: the data file is empty")
    if not name.lower().endswith(DATA_SUFFIXES):
        raise UploadError(
            415, f"{name}: unsupported file type; upload a CSV (.csv) or TSV (.tsv) text file"
        )
    for magic, what in _MAGIC.items():
        if data.startswith(magic):
            raise UploadError(415, f"{name}: this is {what}, not a CSV text file")
    if b"\x00" in data[:65536]:
        raise UploadError(415, f"{name}: binary content, not a CSV text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UploadError(415, f"{name}: not UTF-8 text (byte {exc.start})") from None
    first_line = text.split("\n", 1)[0]
    sep = (
        "\t"
        if name.lower().endswith(".tsv") or first_line.count("\t") > first_line.count(",")
        else ","
    )
    try:  # one pass, linear in the size: header names, ragged rows, quoting
        header, rows = check_csv(text, name, sep)
    except VaarError as exc:
        raise bad(str(exc)) from None
    for count, limit, what in ((len(header), max_columns, "columns"), (rows, max_rows, "rows")):
        if count > limit:
            raise UploadError(
                413, f"{name}: {count} {what}; the service takes at most {limit} (max_{what})"
            )
    try:
        table = pd.read_csv(io.StringIO(text), sep=sep, dtype={group: str}, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        detail = str(exc).strip().replace("Error tokenizing data. C error: ", "")
        raise bad(f"{name}: not a well-formed CSV file: {detail}") from None
    table.columns = [str(c).strip() for c in table.columns]
    if table.empty:
        raise bad(f"{name}: a header row but no data rows")
    return table


def check_group(table: pd.DataFrame, group: str) -> None:
    if group not in table.columns:
        raise unprocessable(
            f"group column {group!r} is not in the data (columns: {_list(table.columns)}); "
            "name it with the 'group' field"
        )
    if group != DEFAULT_GROUP and DEFAULT_GROUP in table.columns:
        raise unprocessable(
            f"the data has a column {DEFAULT_GROUP!r} but the group column is {group!r}; "
            "rename one of them (reports label groups as models)"
        )
    missing = table.index[table[group].isna()].tolist()
    if missing:
        rows = ", ".join(str(i + 2) for i in missing[:5])  # +2: 1-based, after the header
        raise unprocessable(
            f"group column {group!r} is empty in {len(missing)} row(s) (lines {rows})"
        )


def check_numeric(table: pd.DataFrame, columns: list[str]) -> None:
    """The variables lavaan will use must be finite numbers (empty cells: missing answers)."""
    for column in columns:
        bad = first_bad_number(table[column])
        if bad:
            row, shown, _ = bad  # +2 below: the file's line, 1-based, after the header
            raise unprocessable(f"column {column!r} must be numeric; line {row + 2} holds {shown}")


def check_model_variables(table: pd.DataFrame, group: str, observed: list[str]) -> None:
    """After lavaan parsed the model: every observed variable is a numeric column."""
    missing = [v for v in observed if v not in table.columns]
    if missing:
        raise unprocessable(
            f"the model uses variable(s) not in the data: {_list(missing)} "
            f"(columns: {_list(table.columns)})"
        )
    if group in observed:
        raise unprocessable(f"the group column {group!r} cannot also be a model variable")
    check_numeric(table, observed)


def parse_study_text(text: str) -> Study:
    try:
        study = parse_study(parse_toml(text, "study"), source="study")
    except ConfigError as exc:
        raise unprocessable(str(exc)) from None
    # the service never opens files a client names: only built-in instruments and reference
    paths = [i for i in study.instruments if i.endswith(".toml")]
    if paths:
        raise unprocessable(
            f"study.instruments: instrument files {paths} cannot be used by the service; "
            "use the built-in instrument ids (vaar instruments)"
        )
    if study.analysis.reference:
        raise unprocessable(
            "study.analysis.reference: reference files cannot be used by the service; "
            "leave it out to use the built-in human reference"
        )
    if study.analysis.scheduler:
        raise unprocessable(
            "study.analysis.scheduler: the service does not connect to addresses a client names; "
            "its bootstrap runs on the service's own machine"
        )
    return study


def _instruments_in(table: pd.DataFrame) -> list[str]:
    """Without a study config or a model: the instruments whose items are all columns."""
    from vaar.instruments import list_instruments

    columns = set(table.columns)
    found = [i.id for i in list_instruments() if all(item.id in columns for item in i.items)]
    if not found:
        raise unprocessable(
            "no lavaan 'model' or 'study' config was sent, and the columns hold no complete "
            "instrument (e.g. psa01..psa16); send a lavaan model or a study config"
        )
    return found


def check_items(table: pd.DataFrame, instrument_ids: list[str]) -> None:
    from vaar.instruments import load_instrument

    items = [item.id for i in instrument_ids for item in load_instrument(i).items]
    missing = [i for i in items if i not in table.columns]
    if missing:
        raise unprocessable(
            f"the data lacks {len(missing)} item column(s) of the study's instruments: "
            f"{_list(missing)}"
        )
    check_numeric(table, items)


def _list(names, limit: int = 20) -> str:
    names = [str(n) for n in names]
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _safe_name(filename: str) -> str:
    """Keep the client's file name only as a label: no directories, printable, short."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(c for c in base if c.isprintable())[:100] or "data.csv"
