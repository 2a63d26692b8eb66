"""L.POINT (Lotte Members) purchase data: the competition's six-file folder, or the merged `products.csv`.

A folder holds the raw files (`LPOINT_BIG_COMP_01_DEMO.csv` ... `06_LPAY.csv`); a single file is the
per-line table analysts merge from them, with Korean headers. One receipt (rct_no / 영수증번호) is one
`Purchase`; each service use (03_COP_U) is one more, without lines, its id prefixed "svc:" because
service and product receipt numbers are not known to be disjoint. Customers come first as
`CustomerProfile` events, then purchases in event-time order (date + hour in `zone`).

Values are read as text and parsed in `decode`, so a bad value makes its receipt a dead letter that
names the file, the line and the column, while the rest of the file replays. 05_BR is not read:
`Purchase` has no field for a store's region yet. Line numbers assume no quoted field spans lines.
"""

from __future__ import annotations

import codecs
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import structlog

from engine.errors import ConfigError, DecodeError, SourceError
from engine.events import UNKNOWN_CATEGORY, CustomerProfile, Event, decode_profile, decode_purchase
from engine.sources import Record

log = structlog.get_logger("nudge.sources.lpoint")

DEMO_FILE = "LPOINT_BIG_COMP_01_DEMO.csv"
PDDE_FILE = "LPOINT_BIG_COMP_02_PDDE.csv"
COP_U_FILE = "LPOINT_BIG_COMP_03_COP_U.csv"
PD_CLAC_FILE = "LPOINT_BIG_COMP_04_PD_CLAC.csv"
LPAY_FILE = "LPOINT_BIG_COMP_06_LPAY.csv"

SERVICE_ID_PREFIX = "svc:"
CHANNELS = {"1": "offline", "2": "online"}
UNKNOWN_PATH = (UNKNOWN_CATEGORY,)
CHUNK_ROWS = 250_000  # rows pandas parses at a time
SCAN_BYTES = 1 << 24  # bytes decoded at a time to check the encoding


@dataclass(frozen=True)
class Layout:
    """The column names one shape of the data gives each field."""

    receipt: str
    customer: str
    date: str
    hour: str
    store: str
    affiliate: str
    channel: str
    product: str
    quantity: str
    amount: str
    sex: str
    age: str
    region: str

    @property
    def head(self) -> tuple[str, ...]:
        """Fields every line of one receipt shares, in the order a disagreement is reported."""
        return (self.receipt, self.customer, self.date, self.hour, self.store, self.affiliate, self.channel)

    @property
    def profile(self) -> tuple[str, ...]:
        """Fields of a customer profile."""
        return (self.customer, self.sex, self.age, self.region)


RAW = Layout("rct_no", "cust", "de_dt", "de_hr", "br_c", "cop_c", "chnl_dv", "pd_c", "buy_ct", "buy_am",
             "ma_fem_dv", "ages", "zon_hlv")
MERGED = Layout("영수증번호", "고객번호", "구매일자", "구매시간", "점포코드", "제휴사", "채널구분", "상품코드",
                "구매수량", "구매금액", "성별", "연령대", "거주지대분류코드")
RAW_CATEGORY = ("clac_hlv_nm", "clac_mcls_nm", "pd_nm")  # 대분류, 중분류, 소분류 (the product name)
MERGED_CATEGORY = ("대분류명", "중분류명", "소분류명")
MERGED_LPAY = "Lpay"  # this line was paid with L.pay
MERGED_LPAY_CLIENT = "Lpay_client"  # the customer ever paid with L.pay

# Only the columns the adapter reads are required: the documented names are recalled, not copied,
# so demanding unused ones (vst_dt, the LPAY amounts) would reject usable files.
SERVICE_COLUMNS = (*RAW.head, RAW.amount)
PDDE_COLUMNS = (*RAW.head, RAW.product, RAW.quantity, RAW.amount)
MERGED_COLUMNS = (*MERGED.head, MERGED.product, MERGED.quantity, MERGED.amount, *MERGED_CATEGORY,
                  MERGED.sex, MERGED.age, MERGED.region, MERGED_LPAY_CLIENT, MERGED_LPAY)


class LPointDecoder:
    """An L.POINT record (a profile row, a receipt's lines or a service use, as text) into its event."""

    def __init__(self, layout: Layout, zone: ZoneInfo) -> None:
        self.layout, self.zone = layout, zone

    def decode(self, raw: dict, where: str) -> Event:
        """Parse a record's text into a profile or a purchase, or raise `DecodeError` naming line and column."""
        layout = self.layout
        if raw["kind"] == "profile":
            return self._profile(raw["row"], where)
        head = raw["receipt"]
        for field in layout.head:
            if isinstance(head[field], list):  # lines of one receipt that disagree keep every line's value
                raise DecodeError(_disagreement(raw["file"], field, head[field], raw["lines"], head[layout.receipt]))
        event = {
            "event_id": head[layout.receipt],
            "customer_id": head[layout.customer],
            "event_time": self._event_time(head[layout.date], head[layout.hour], where),
            "store_id": head[layout.store] or None,
            "affiliate": head[layout.affiliate] or None,
            "channel": _channel(head[layout.channel], where, layout.channel),
            "lpay": raw["lpay"],
        }
        if raw["kind"] == "service":
            event["event_id"] = SERVICE_ID_PREFIX + head[layout.receipt]
            event["amount"] = parse_number(head[layout.amount], where, layout.amount)
        else:
            event["lines"] = self._lines(raw["items"], raw["lines"], raw["file"])
        return decode_purchase(event, where)

    def _profile(self, row: dict[str, str], where: str) -> CustomerProfile:
        layout = self.layout
        profile = {"customer_id": row[layout.customer], "time_zone": self.zone.key, "sex": row[layout.sex] or None,
                   "age_band": row[layout.age] or None, "region": row[layout.region] or None}
        if row.get(MERGED_LPAY_CLIENT):
            profile["attributes"] = {"lpay_client": row[MERGED_LPAY_CLIENT]}
        return decode_profile(profile, where)

    def _event_time(self, date: str, hour: str, where: str) -> datetime:
        """Date YYYYMMDD and hour 0-23 in the source's zone (the same rule `_sort_time` applies)."""
        if len(date) != 8 or not (date.isascii() and date.isdigit()):
            raise DecodeError(f"{where}: {self.layout.date}: unknown date format {date!r} (expected YYYYMMDD)")
        if not (0 < len(hour) <= 2 and hour.isascii() and hour.isdigit()) or int(hour) > 23:
            raise DecodeError(f"{where}: {self.layout.hour}: {hour!r} is not an hour of the day (0-23)")
        try:
            return datetime(int(date[:4]), int(date[4:6]), int(date[6:]), int(hour), tzinfo=self.zone)
        except ValueError:
            raise DecodeError(f"{where}: {self.layout.date}: {date!r} is not a date (expected YYYYMMDD)") from None

    def _lines(self, items: list[tuple], lines: list[int], file: str) -> list[tuple]:
        """(product, category, quantity, amount) tuples with the quantity and amount parsed."""
        try:
            parsed = [(pid, path, int(qty), float(amount)) for pid, path, qty, amount in items]
            if math.isfinite(sum(line[3] for line in parsed)):
                return parsed
        except ValueError:
            pass
        # Only a receipt with a bad value gets here: parse it line by line to name the line and the column.
        quantity, amount = self.layout.quantity, self.layout.amount
        return [(pid, path, parse_quantity(qty, f"{file} line {n}", quantity),
                 parse_number(value, f"{file} line {n}", amount))
                for (pid, path, qty, value), n in zip(items, lines, strict=True)]


class LPointSource:
    """L.POINT customers, receipts and service uses from a raw folder or a merged `products.csv`."""

    def __init__(self, path: str | Path, zone: str = "Asia/Seoul", encoding: str = "auto") -> None:
        self.path = Path(path)
        try:
            self.zone = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"time zone: unknown zone {zone!r}") from None
        self.key = f"lpoint:{self.path.resolve()}"
        self.encoding = _codec(encoding)
        if self.path.is_dir():
            self.layout = RAW
            self._load_folder()
        elif self.path.is_file():
            self.layout = MERGED
            self._load_merged()
        else:
            raise SourceError(f"{self.path}: no such file or folder")
        self.decoder = LPointDecoder(self.layout, self.zone)

    # -- loading ---------------------------------------------------------------------------------
    def _load_merged(self) -> None:
        layout, file = MERGED, self.path.name
        frame = read_table(self.path, MERGED_COLUMNS, self.encoding)
        firsts = frame.drop_duplicates(layout.customer)  # a customer's profile is taken from their first line
        self._profiles = _profile_rows(file, firsts, (*layout.profile, MERGED_LPAY_CLIENT))
        names = frame[MERGED_CATEGORY[0]] + "\x1f" + frame[MERGED_CATEGORY[1]] + "\x1f" + frame[MERGED_CATEGORY[2]]
        codes, uniques = pd.factorize(names)
        receipts = _group_receipts(frame, layout, codes, [category_path(u.split("\x1f")) for u in uniques])
        paid = frame[MERGED_LPAY].eq("1").to_numpy(bool)[receipts.order]
        lpay = np.logical_or.reduceat(paid, receipts.starts) if len(paid) else np.zeros(0, bool)
        events = receipts.events(file, layout.receipt, lpay)
        self._set_lines(receipts)
        self._set_events(events, layout.head)

    def _load_folder(self) -> None:
        layout, folder = RAW, self.path
        pdde = folder / PDDE_FILE
        if not pdde.is_file():
            raise SourceError(f"{folder}: no {PDDE_FILE} (the product purchase lines, required)")
        frame = read_table(pdde, PDDE_COLUMNS, self.encoding)
        demo = self._optional(DEMO_FILE, layout.profile, "no customer profiles")
        services = self._optional(COP_U_FILE, SERVICE_COLUMNS, "no service uses")
        clac = self._optional(PD_CLAC_FILE, (layout.product, *RAW_CATEGORY), "every product's category is UNKNOWN")
        paid = self._optional(LPAY_FILE, (layout.receipt,), "no purchase is flagged as paid with L.pay")

        self._profiles = _profile_rows(DEMO_FILE, demo, layout.profile) if demo is not None else []
        known: dict[str, tuple[str, ...]] = {}
        if clac is not None:
            clac = clac.drop_duplicates(layout.product)  # the first row of a product wins
            known = dict(zip(clac[layout.product].tolist(),
                             map(category_path, zip(*(clac[c].tolist() for c in RAW_CATEGORY), strict=True)),
                             strict=True))
        codes, uniques = pd.factorize(frame[layout.product])
        paths = [known.get(u, UNKNOWN_PATH) for u in uniques]
        unknown = sum(p is UNKNOWN_PATH for p in paths)
        if unknown and clac is not None:
            log.info("lpoint.unknown_products", file=PD_CLAC_FILE, products=unknown)
        receipts = _group_receipts(frame, layout, codes, paths)
        lpay_receipts = paid[layout.receipt] if paid is not None else pd.Series([], dtype=str)
        events = receipts.events(PDDE_FILE, layout.receipt,
                                 receipts.head[layout.receipt].isin(lpay_receipts).to_numpy(bool))
        if services is not None:
            uses = services.reset_index(names="_a")
            uses["_b"] = uses["_a"]
            uses["_service"] = True
            uses["_r"] = -1
            uses["_file"] = COP_U_FILE
            uses["_lpay"] = uses[layout.receipt].isin(lpay_receipts)
            uses["_id"] = SERVICE_ID_PREFIX + uses[layout.receipt]
            events = pd.concat([events, uses], ignore_index=True)
        self._set_lines(receipts)
        self._set_events(events, SERVICE_COLUMNS if services is not None else layout.head)

    def _optional(self, name: str, columns: tuple[str, ...], effect: str) -> pd.DataFrame | None:
        """One of the optional raw files, or None (with a warning) when the folder lacks it."""
        path = self.path / name
        if not path.is_file():
            log.warning("lpoint.file_missing", folder=str(self.path), file=name, effect=effect)
            return None
        return read_table(path, columns, self.encoding)

    def _set_lines(self, receipts: _Receipts) -> None:
        self._product, self._category = receipts.product, receipts.category
        self._quantity, self._amount, self._line = receipts.quantity, receipts.amount, receipts.line
        self._disagree = receipts.disagree

    def _set_events(self, events: pd.DataFrame, columns: tuple[str, ...]) -> None:
        """Order the events for replay and keep each column as a plain list."""
        events["_when"] = _sort_time(events[self.layout.date], events[self.layout.hour])
        # Wall-clock order is event-time order in Asia/Seoul (no DST); a time that cannot be parsed sorts last.
        events = events.sort_values(["_when", "_id"], na_position="last", kind="stable")
        self._columns = columns
        self._head = {c: shared_list(events[c].fillna("")) for c in columns}
        self._service = events["_service"].to_numpy(bool).tolist()
        self._file = shared_list(events["_file"])
        self._a, self._b = events["_a"].tolist(), events["_b"].tolist()
        self._receipt_index = events["_r"].tolist()
        self._lpay = events["_lpay"].to_numpy(bool).tolist()
        log.info("lpoint.loaded", source=self.key, profiles=len(self._profiles), events=len(self._a),
                 lines=len(self._product))

    # -- the ReplayableSource protocol --------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._profiles) + len(self._a)

    def records(self, start: int = 0) -> Iterator[Record]:
        """Profiles first, then receipts and service uses sorted by (event time, event id)."""
        n_profiles = len(self._profiles)
        for i in range(start, n_profiles):
            file, line, row = self._profiles[i]
            yield Record(i, {"kind": "profile", "file": file, "lines": [line], "row": row}, f"{file} line {line}")
        head, columns, receipt_columns = self._head, self._columns, self.layout.head
        product, category, quantity, amount = self._product, self._category, self._quantity, self._amount
        for i in range(max(0, start - n_profiles), len(self._a)):
            file, a, b = self._file[i], self._a[i], self._b[i]
            if self._service[i]:
                raw = {"kind": "service", "file": file, "lines": [a], "lpay": self._lpay[i],
                       "receipt": {c: head[c][i] for c in columns}}
                yield Record(n_profiles + i, raw, f"{file} line {a}")
                continue
            lines = self._line[a:b].tolist()
            receipt = {c: head[c][i] for c in receipt_columns}
            if self._disagree and (differing := self._disagree.get(self._receipt_index[i])):
                receipt.update(differing)
            raw = {"kind": "receipt", "file": file, "lines": lines, "lpay": self._lpay[i], "receipt": receipt,
                   "items": list(zip(product[a:b], category[a:b], quantity[a:b], amount[a:b], strict=True))}
            yield Record(n_profiles + i, raw, f"{file} {line_span(lines)}")


# -- reading files -------------------------------------------------------------------------------
def read_table(path: Path, columns: tuple[str, ...], encoding: str) -> pd.DataFrame:
    """Every column of a CSV file as text, indexed by file line (header = line 1); `columns` are required."""
    codec = readable_codec(path, encoding)
    try:
        header = [str(c).strip() for c in pd.read_csv(path, encoding=codec, nrows=0).columns]
        missing = [c for c in columns if c not in header]
        if missing:
            raise SourceError(f"{path}: no column {', '.join(repr(c) for c in missing)} "
                              f"(the header has {', '.join(header)})")
        # Blank lines are kept as rows so that row i stays file line i + 2. Chunks keep the peak memory
        # near the final frame's: pandas holds each chunk as Python strings before it packs them.
        chunks = list(pd.read_csv(path, encoding=codec, dtype=str, keep_default_na=False, skip_blank_lines=False,
                                  chunksize=CHUNK_ROWS))
    except pd.errors.ParserError as exc:
        raise SourceError(f"{path}: {_parser_problem(exc)}") from None
    frame = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame(columns=header, dtype=str)
    frame.columns = header
    frame.index = pd.RangeIndex(2, len(frame) + 2)
    if len(frame):
        blank = frame.iloc[:, 0].str.strip().eq("") & frame.iloc[:, 1:].eq("").all(axis=1)
        if blank.any():
            frame = frame[~blank]
    return frame


def readable_codec(path: Path, encoding: str) -> str:
    """The codec that reads the whole file: `encoding`, or with 'auto' UTF-8 (BOM or not), else cp949.

    Raises `SourceError` for an empty file, or one with bytes no codec tried can read, naming the line.
    """
    tries = ("utf-8-sig", "cp949") if encoding == "auto" else (encoding,)
    failures = []
    for codec in tries:
        has_text, failure = _scan(path, codec)
        if not has_text:
            raise SourceError(f"{path}: the file is empty")
        if failure is None:
            return codec
        failures.append(failure)
    # The codec that read furthest is the likelier one: its first bad byte is the one to show.
    offset, line, detail = max(failures)
    names = " nor ".join("UTF-8" if c == "utf-8-sig" else c for c in tries)
    what = f"neither {names}" if len(tries) > 1 else f"not {names}"
    raise SourceError(f"{path} line {line}: bytes that are {what} ({detail} at offset {offset})")


def _scan(path: Path, codec: str) -> tuple[bool, tuple[int, int, str] | None]:
    """Whether the file holds more than whitespace, and (offset, line, reason) of the first byte `codec` cannot read.

    Reads blocks cut after a newline: in UTF-8 and cp949 the newline byte is never part of a longer character.
    """
    has_text, line, offset, rest = False, 1, 0, b""
    with path.open("rb") as file:
        while True:
            chunk = file.read(SCAN_BYTES)
            block = rest + chunk
            cut = block.rfind(b"\n") + 1 if chunk else len(block)
            part, rest = block[:cut], block[cut:]
            has_text = has_text or bool(part.removeprefix(codecs.BOM_UTF8 if offset == 0 else b"").strip())
            try:
                part.decode(codec)
            except UnicodeDecodeError as exc:
                detail = f"{exc.reason}: byte {part[exc.start]:#04x}"
                return True, (offset + exc.start, line + part.count(b"\n", 0, exc.start), detail)
            line += part.count(b"\n")
            offset += len(part)
            if not chunk:
                return has_text, None


def _codec(encoding: str) -> str:
    """'auto', or the codec's canonical name (UTF-8 read BOM or not)."""
    if encoding == "auto":
        return encoding
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise ConfigError(f"encoding: unknown {encoding!r} (auto, utf-8 or cp949)") from None
    return "utf-8-sig" if name == "utf-8" else name


def _parser_problem(exc: pd.errors.ParserError) -> str:
    """pandas' tokenizer message, re-worded with the line when it has one."""
    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
    if found:
        expected, line, saw = found.groups()
        return f"line {line}: {saw} fields where the header has {expected}"
    return str(exc).strip()


def shared_list(column: pd.Series) -> list:
    """The column as a list in which equal values are one object: millions of lines, few distinct values."""
    codes, uniques = pd.factorize(column)
    return np.asarray(uniques, dtype=object)[codes].tolist()


def category_path(names: Iterable[str]) -> tuple[str, ...]:
    """Top category first, cut at the first empty level; ("UNKNOWN",) when there is none."""
    path = []
    for name in names:
        name = name.strip()
        if not name:
            break
        path.append(name)
    return tuple(path) or UNKNOWN_PATH


def _profile_rows(file: str, frame: pd.DataFrame, columns: tuple[str, ...]) -> list[tuple[str, int, dict]]:
    rows = frame[list(columns)].to_dict("records")
    return list(zip([file] * len(rows), frame.index.tolist(), rows, strict=True))


@dataclass
class _Receipts:
    """Product lines grouped by receipt: per-line lists in receipt order and the first line of each receipt."""

    order: np.ndarray  # file row of each line, in receipt order
    starts: np.ndarray
    ends: np.ndarray
    head: pd.DataFrame  # the receipt fields of each receipt's first line
    product: list[str]
    category: list[tuple[str, ...]]
    quantity: list[str]
    amount: list[str]
    line: np.ndarray  # file line of each line
    disagree: dict[int, dict[str, list[str]]]  # receipt index -> field -> every line's value

    def events(self, file: str, receipt: str, lpay: np.ndarray) -> pd.DataFrame:
        """One row per receipt for the replay order: its fields and where its lines are."""
        events = self.head.reset_index(drop=True)
        events["_service"] = False
        events["_a"], events["_b"] = self.starts, self.ends
        events["_r"] = np.arange(len(events))
        events["_file"] = file
        events["_lpay"] = lpay
        events["_id"] = events[receipt]
        return events


def _group_receipts(frame: pd.DataFrame, layout: Layout, category_codes: np.ndarray,
                    paths: list[tuple[str, ...]]) -> _Receipts:
    """Group lines by receipt, in order of each receipt's first line, keeping file order within one.

    Line `i` of the file has the category `paths[category_codes[i]]`.
    """
    n = len(frame)
    codes, _ = pd.factorize(frame[layout.receipt])  # numbered in order of first appearance
    order = np.argsort(codes, kind="stable")
    grouped = codes[order]
    counts = np.bincount(codes) if n else np.zeros(0, np.int64)
    ends = np.cumsum(counts)
    starts = ends - counts
    disagree: dict[int, dict[str, list[str]]] = {}
    for field in layout.head[1:]:
        field_codes = pd.factorize(frame[field])[0][order]
        differs = field_codes != field_codes[starts][grouped]
        if differs.any():
            values = frame[field].to_numpy(dtype=object)
            for r in np.unique(grouped[differs]).tolist():
                disagree.setdefault(r, {})[field] = values[order[starts[r]:ends[r]]].tolist()
    return _Receipts(
        order=order,
        starts=starts,
        ends=ends,
        head=frame.iloc[order[starts]][list(layout.head)],
        product=shared_list(frame[layout.product].iloc[order]),
        category=[paths[c] for c in category_codes[order].tolist()],
        quantity=shared_list(frame[layout.quantity].iloc[order]),
        amount=shared_list(frame[layout.amount].iloc[order]),
        line=frame.index.to_numpy()[order],
        disagree=disagree,
    )


def _sort_time(dates: pd.Series, hours: pd.Series) -> pd.Series:
    """Naive date + hour for ordering; NaT where `LPointSource._event_time` would reject the text."""
    hours_ok = hours.str.fullmatch(r"[0-9]{1,2}")
    day = pd.to_datetime(dates.where(dates.str.fullmatch(r"[0-9]{8}")), format="%Y%m%d", errors="coerce")
    hour = pd.to_numeric(hours.where(hours_ok), errors="coerce")
    return day + pd.to_timedelta(hour.where(hour <= 23), unit="h")


# -- decoding values -----------------------------------------------------------------------------
def parse_number(text: str, where: str, field: str) -> float:
    """A finite number, or `DecodeError` naming where and the column."""
    try:
        value = float(text)
    except ValueError:
        raise DecodeError(f"{where}: {field}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise DecodeError(f"{where}: {field}: {text!r} is not a finite number")
    return value


def parse_quantity(text: str, where: str, field: str) -> int:
    """A whole number ("3" or "3.0"), or `DecodeError` naming where and the column."""
    try:
        return int(text)
    except ValueError:
        pass
    value = parse_number(text, where, field)
    if not value.is_integer():
        raise DecodeError(f"{where}: {field}: {text!r} is not a whole number")
    return int(value)


def _channel(text: str, where: str, field: str) -> str:
    try:
        return CHANNELS[text]
    except KeyError:
        raise DecodeError(f"{where}: {field}: {text!r} is not a channel (1 offline, 2 online)") from None


def _disagreement(file: str, field: str, values: list[str], lines: list[int], receipt: str) -> str:
    first = values[0]
    i = next(i for i, value in enumerate(values) if value != first)
    return (f"{file} lines {lines[0]} and {lines[i]}: {field}: the lines of receipt {receipt!r} disagree "
            f"({first!r} and {values[i]!r})")


def line_span(lines: list[int]) -> str:
    """'line 5', 'lines 2-5' or 'lines 2-3, 9': the file lines a record came from (ascending)."""
    if len(lines) == 1:
        return f"line {lines[0]}"
    if lines[-1] - lines[0] == len(lines) - 1:
        return f"lines {lines[0]}-{lines[-1]}"
    runs, first = [], lines[0]
    for prev, line in pairwise(lines):
        if line != prev + 1:
            runs.append(f"{first}-{prev}" if prev != first else f"{first}")
            first = line
    runs.append(f"{first}-{lines[-1]}" if lines[-1] != first else f"{first}")
    return "lines " + ", ".join(runs)

