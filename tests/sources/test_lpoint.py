"""L.POINT source: the shared sample rows, merged files in UTF-8 and cp949, and a raw six-file folder."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from engine.config import Settings
from engine.deadletters import list_dead_letters
from engine.errors import ConfigError, DecodeError, SourceError
from engine.events import CustomerProfile, Purchase
from engine.runtime.embedded import EmbeddedRuntime
from engine.sources import Record
from engine.sources.lpoint import LPointSource

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
SEOUL = ZoneInfo("Asia/Seoul")

MERGED_HEADER = ("영수증번호,고객번호,성별,연령대,거주지대분류코드,상품코드,대분류명,중분류명,소분류명,"
                 "구매일자,구매시간,구매수량,구매금액,제휴사,점포코드,점포지역대분류,점포지역중분류,채널구분,"
                 "Lpay_client,Lpay")


def merged_row(receipt: str = "R1", customer: str = "M000000001", product: str = "PD0001",
               category: str = "음료,생수,생수", date: str = "20210105", hour: str = "10", quantity: str = "1",
               amount: str = "1000.0", channel: str = "1", lpay: str = "0", sex: str = "여성") -> str:
    """One line of a merged products.csv; the arguments are the columns a test varies."""
    return (f"{receipt},{customer},{sex},30대,Z07,{product},{category},{date},{hour},{quantity},{amount},"
            f"A01,A010039,Z07,Z07001,{channel},1,{lpay}")


def write_merged(path: Path, rows: list[str], encoding: str = "utf-8") -> Path:
    """A merged products.csv with these rows under the Korean header."""
    path.write_bytes("\n".join([MERGED_HEADER, *rows, ""]).encode(encoding))
    return path


def decode(source: LPointSource, record: Record) -> Purchase | CustomerProfile:
    """The event of one record, through the source's decoder."""
    return source.decoder.decode(record.raw, record.where)


def decoded(source: LPointSource) -> list[Purchase | CustomerProfile]:
    """Every event of the source in replay order (fails on a dead letter)."""
    return [decode(source, record) for record in source.records()]


def purchases(source: LPointSource) -> list[Purchase]:
    """The purchases of the source in replay order."""
    return [event for event in decoded(source) if isinstance(event, Purchase)]


def record_of(source: LPointSource, event_id: str) -> Record:
    """The record whose receipt number is `event_id` (without the service prefix)."""
    return next(r for r in source.records()
                if r.raw["kind"] != "profile" and r.raw["receipt"][source.layout.receipt] == event_id)


# -- the shared sample ---------------------------------------------------------------------------
def test_sample_file_is_one_basket_of_four_lines_and_one_customer() -> None:
    sample = SHARED_DATA / "sample_products.csv"
    if not sample.is_file():
        pytest.skip(f"the shared L.POINT sample is not at {sample}")
    source = LPointSource(sample)
    events = decoded(source)
    assert len(source) == len(events) == 2

    profile, purchase = events
    assert profile == CustomerProfile(customer_id="M355489415", time_zone="Asia/Seoul", sex="남성", age_band="20대",
                                      region="Z10", attributes={"lpay_client": "1"})
    assert purchase.event_id == "4000035215"
    assert purchase.customer_id == "M355489415"
    assert purchase.event_time == datetime(2021, 1, 1, 0, 0, tzinfo=SEOUL)
    assert purchase.event_time.utcoffset() is not None
    assert (purchase.store_id, purchase.affiliate, purchase.channel, purchase.lpay) == ("A043757", "A04", "offline",
                                                                                         False)
    assert [line[0] for line in purchase.lines] == ["PD1173", "PD0223", "PD1918", "PD0223"]  # two scans kept
    assert purchase.lines[1] == purchase.lines[3] == ("PD0223", ("과자", "사탕/캔디", "젤리"), 1, 1000.0)
    assert purchase.total == 30650.0


# -- merged products.csv -------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp949"])
def test_merged_file_reads_korean_in_utf8_and_cp949(tmp_path: Path, encoding: str) -> None:
    path = write_merged(tmp_path / "products.csv", [
        merged_row("R1", product="PD0001", category="음료,생수,생수", amount="1500"),
        merged_row("R1", product="PD0002", category="과자,사탕/캔디,젤리", quantity="2", amount="2000"),
        merged_row("R2", customer="M000000002", hour="9", product="PD0003", category="화장품/뷰티케어,스킨케어,",
                   lpay="1"),
    ], encoding)
    source = LPointSource(path)
    r2, r1 = purchases(source)  # R2 was at 09:00, R1 at 10:00
    assert r1.lines == (("PD0001", ("음료", "생수", "생수"), 1, 1500.0),
                        ("PD0002", ("과자", "사탕/캔디", "젤리"), 2, 2000.0))
    assert r2.lines[0][1] == ("화장품/뷰티케어", "스킨케어")  # an empty level ends the path
    assert (r1.lpay, r2.lpay) == (False, True)
    profiles = [e for e in decoded(source) if isinstance(e, CustomerProfile)]
    assert [(p.customer_id, p.sex) for p in profiles] == [("M000000001", "여성"), ("M000000002", "여성")]


def test_forced_encoding_names_the_line_it_cannot_read(tmp_path: Path) -> None:
    path = write_merged(tmp_path / "products.csv", [merged_row("R1"), merged_row("R2", category="과자,젤리,젤리")],
                        "cp949")
    assert purchases(LPointSource(path, encoding="cp949"))[1].lines[0][1] == ("과자", "젤리", "젤리")
    with pytest.raises(SourceError, match=r"products\.csv line 1: bytes that are not UTF-8"):  # the Korean header
        LPointSource(path, encoding="utf-8")


def test_undecodable_bytes_name_the_file_and_line(tmp_path: Path) -> None:
    bad = b"\xff\xfe\x00garbage"
    for codec in ("utf-8", "cp949"):  # the bytes must be invalid in both encodings auto tries
        with pytest.raises(UnicodeDecodeError):
            bad.decode(codec)
    path = write_merged(tmp_path / "products.csv", [merged_row("R1"), merged_row("R2")], "cp949")
    path.write_bytes(path.read_bytes().replace(b"R2", b"R2" + bad))
    with pytest.raises(SourceError, match=r"products\.csv line 3: bytes that are neither UTF-8 nor cp949"):
        LPointSource(path)


@pytest.mark.parametrize("content", [b"", b"  \n\r\n", b"\xef\xbb\xbf\n"])
def test_empty_file_is_a_source_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "products.csv"
    path.write_bytes(content)
    with pytest.raises(SourceError, match=r"products\.csv: the file is empty"):
        LPointSource(path)


def test_header_only_file_has_no_records(tmp_path: Path) -> None:
    source = LPointSource(write_merged(tmp_path / "products.csv", []))
    assert len(source) == 0
    assert list(source.records()) == []


def test_missing_column_names_the_file_and_the_column(tmp_path: Path) -> None:
    path = tmp_path / "products.csv"
    header = MERGED_HEADER.replace("구매금액,", "")
    path.write_text(header + "\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"products\.csv: no column '구매금액'"):
        LPointSource(path)


def test_row_with_too_many_fields_names_the_line(tmp_path: Path) -> None:
    path = write_merged(tmp_path / "products.csv", [merged_row("R1"), merged_row("R2") + ",extra"])
    with pytest.raises(SourceError, match=r"products\.csv: line 3: 21 fields where the header has 20"):
        LPointSource(path)


def test_extra_columns_and_blank_lines_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "products.csv"
    path.write_text("\n".join([MERGED_HEADER + ",memo", merged_row("R1") + ",x", "", merged_row("R2") + ",y", ""]),
                    encoding="utf-8")
    source = LPointSource(path)
    assert [p.event_id for p in purchases(source)] == ["R1", "R2"]
    assert record_of(source, "R2").raw["lines"] == [4]  # line numbers count the blank line


def test_returns_are_kept_as_negative_lines(tmp_path: Path) -> None:
    path = write_merged(tmp_path / "products.csv", [merged_row("R1", quantity="-1", amount="-1000.0")])
    (purchase,) = purchases(LPointSource(path))
    assert purchase.lines[0][2:] == (-1, -1000.0)
    assert purchase.is_return


def test_replay_is_in_event_time_order_after_the_profiles(tmp_path: Path) -> None:
    path = write_merged(tmp_path / "products.csv", [
        merged_row("R3", date="20210301", hour="8"),
        merged_row("R1", customer="M000000002", date="20210101", hour="23"),
        merged_row("R9", date="20210101", hour="23"),
        merged_row("R2", date="20210102", hour="0"),
        merged_row("R3", date="20210301", hour="8", product="PD0002"),  # a receipt's lines need not be adjacent
    ])
    source = LPointSource(path)
    records = list(source.records())
    assert [r.position for r in records] == list(range(len(source)))
    assert [r.raw["kind"] for r in records] == ["profile", "profile", "receipt", "receipt", "receipt", "receipt"]
    assert [p.event_id for p in purchases(source)] == ["R1", "R9", "R2", "R3"]
    assert record_of(source, "R3").raw["lines"] == [2, 6]
    assert record_of(source, "R3").where == "products.csv lines 2, 6"
    assert [r.position for r in source.records(4)] == [4, 5]  # a resumed replay starts at its position


# -- dead letters: one bad receipt, the rest still replays ----------------------------------------
def test_non_numeric_amount_names_file_line_and_column(tmp_path: Path) -> None:
    path = write_merged(tmp_path / "products.csv", [merged_row("R1"), merged_row("R1", amount="abc"),
                                                    merged_row("R2")])
    source = LPointSource(path)
    with pytest.raises(DecodeError, match=r"^products\.csv line 3: 구매금액: 'abc' is not a number$"):
        decode(source, record_of(source, "R1"))
    assert decode(source, record_of(source, "R2")).total == 1000.0


def test_non_numeric_quantity_names_file_line_and_column(tmp_path: Path) -> None:
    path = write_merged(tmp_path / "products.csv", [merged_row("R1", quantity="1.5")])
    source = LPointSource(path)
    with pytest.raises(DecodeError, match=r"^products\.csv line 2: 구매수량: '1.5' is not a whole number$"):
        decode(source, record_of(source, "R1"))


@pytest.mark.parametrize("date", ["2021-13-45", "01/02/2021", "20211345", ""])
def test_bad_date_is_a_decode_error_and_sorts_last(tmp_path: Path, date: str) -> None:
    path = write_merged(tmp_path / "products.csv", [merged_row("R0", date=date), merged_row("R1"),
                                                    merged_row("R0", date=date)])
    source = LPointSource(path)
    last = list(source.records())[-1]
    assert last.raw["receipt"]["영수증번호"] == "R0"
    with pytest.raises(DecodeError, match=r"^products\.csv lines 2, 4: 구매일자: .*(unknown date format|not a date)"):
        decode(source, last)


def test_hour_out_of_range_is_a_decode_error(tmp_path: Path) -> None:
    source = LPointSource(write_merged(tmp_path / "products.csv", [merged_row("R1", hour="24")]))
    with pytest.raises(DecodeError, match=r"^products\.csv line 2: 구매시간: '24' is not an hour of the day"):
        decode(source, record_of(source, "R1"))


def test_unknown_channel_is_a_decode_error(tmp_path: Path) -> None:
    source = LPointSource(write_merged(tmp_path / "products.csv", [merged_row("R1", channel="3")]))
    with pytest.raises(DecodeError, match=r"채널구분: '3' is not a channel"):
        decode(source, record_of(source, "R1"))


def test_lines_that_disagree_on_the_customer_are_a_decode_error(tmp_path: Path) -> None:
    path = write_merged(tmp_path / "products.csv", [merged_row("R1"), merged_row("R1", customer="M000000009")])
    source = LPointSource(path)
    record = record_of(source, "R1")
    assert record.raw["receipt"]["고객번호"] == ["M000000001", "M000000009"]
    with pytest.raises(DecodeError, match=r"^products\.csv lines 2 and 3: 고객번호: the lines of receipt 'R1' "
                                          r"disagree \('M000000001' and 'M000000009'\)$"):
        decode(source, record)


def test_replay_keeps_the_bad_receipt_as_a_dead_letter_and_applies_the_rest(tmp_path: Path) -> None:
    path = write_merged(tmp_path / "products.csv", [
        merged_row("R1", amount="1500"),
        merged_row("R2", date="20210107", amount="abc"),
        merged_row("R3", date="20210110", amount="2500"),
    ])
    source = LPointSource(path)
    runtime = EmbeddedRuntime(Settings(home=tmp_path / "home"))
    summary = runtime.replay(source)

    assert (summary.run.profiles, summary.run.purchases, summary.run.dead_letters) == (1, 2, 1)
    (letter,) = list_dead_letters(runtime.engine, source.key)
    assert letter.reason == "products.csv line 3: 구매금액: 'abc' is not a number"
    assert letter.where == "products.csv line 3"
    assert json.loads(letter.raw)["receipt"]["영수증번호"] == "R2"
    state = summary.states["M000000001"]
    assert state.events == 2
    assert state.monetary == 4000.0


# -- the raw competition folder ------------------------------------------------------------------
RAW_FILES = {
    "LPOINT_BIG_COMP_01_DEMO.csv": ["cust,ma_fem_dv,ages,zon_hlv",
                                    "M000000001,여성,30대,Z07",
                                    "M000000002,남성,50대,Z11"],
    "LPOINT_BIG_COMP_02_PDDE.csv": ["cust,rct_no,chnl_dv,cop_c,br_c,pd_c,de_dt,de_hr,buy_am,buy_ct",
                                    "M000000001,A01000001113,1,A01,A010039,PD0290,20210101,10,15000,1",
                                    "M000000001,A01000001113,1,A01,A010039,PD9999,20210101,10,5000,2",
                                    "M000000002,A06000000001,2,A06,,PD0290,20210102,21,15000,1"],
    "LPOINT_BIG_COMP_03_COP_U.csv": ["cust,rct_no,cop_c,br_c,chnl_dv,de_dt,vst_dt,de_hr,buy_am",
                                     "M000000001,E01000000007,E01,E010012,1,20210101,20210101,18,32000"],
    "LPOINT_BIG_COMP_04_PD_CLAC.csv": ["pd_c,pd_nm,clac_hlv_nm,clac_mcls_nm",
                                       "PD0290,남성티셔츠,남성의류,남성의류상의"],
    "LPOINT_BIG_COMP_05_BR.csv": ["br_c,cop_c,zon_hlv,zon_mcls", "A010039,A01,Z07,Z07001"],
    "LPOINT_BIG_COMP_06_LPAY.csv": ["cust,rct_no,cop_c,chnl_dv,de_dt,de_hr,buy_am",
                                    "M000000002,A06000000001,A06,2,20210102,21,15000"],
}


def write_folder(folder: Path, files: dict[str, list[str]] = RAW_FILES, encoding: str = "utf-8") -> Path:
    """The raw competition files in `folder`."""
    folder.mkdir(exist_ok=True)
    for name, lines in files.items():
        (folder / name).write_bytes("\n".join([*lines, ""]).encode(encoding))
    return folder


@pytest.mark.parametrize("encoding", ["utf-8", "cp949"])
def test_raw_folder_gives_profiles_receipts_and_service_uses(tmp_path: Path, encoding: str) -> None:
    source = LPointSource(write_folder(tmp_path / "lpoint", encoding=encoding))
    events = decoded(source)
    for record in source.records():
        json.dumps(record.raw)  # stored in the dead-letter table as JSON
    profiles = [e for e in events if isinstance(e, CustomerProfile)]
    assert [(p.customer_id, p.sex, p.age_band, p.region, p.time_zone) for p in profiles] == [
        ("M000000001", "여성", "30대", "Z07", "Asia/Seoul"), ("M000000002", "남성", "50대", "Z11", "Asia/Seoul")]

    store, service, online = [e for e in events if isinstance(e, Purchase)]  # in event-time order
    assert store.event_id == "A01000001113"
    assert store.event_time == datetime(2021, 1, 1, 10, tzinfo=SEOUL)
    assert store.lines == (("PD0290", ("남성의류", "남성의류상의", "남성티셔츠"), 1, 15000.0),
                           ("PD9999", ("UNKNOWN",), 2, 5000.0))  # no category row: kept, category UNKNOWN
    assert not store.lpay

    assert service.event_id == "svc:E01000000007"
    assert (service.lines, service.amount, service.total) == ((), 32000.0, 32000.0)
    assert (service.affiliate, service.store_id) == ("E01", "E010012")
    assert service.event_time == datetime(2021, 1, 1, 18, tzinfo=SEOUL)

    assert (online.channel, online.store_id, online.lpay) == ("online", None, True)  # paid with L.pay (06)


def test_raw_folder_bad_amount_names_the_raw_file_line_and_column(tmp_path: Path) -> None:
    files = dict(RAW_FILES)
    files["LPOINT_BIG_COMP_02_PDDE.csv"] = [*RAW_FILES["LPOINT_BIG_COMP_02_PDDE.csv"],
                                            "M000000002,A01000000005,1,A01,A010039,PD0290,20210103,9,abc,1"]
    files["LPOINT_BIG_COMP_03_COP_U.csv"] = [*RAW_FILES["LPOINT_BIG_COMP_03_COP_U.csv"],
                                             "M000000002,E01000000008,E01,E010012,1,20210104,20210104,9,"]
    source = LPointSource(write_folder(tmp_path / "lpoint", files))
    with pytest.raises(DecodeError, match=r"^LPOINT_BIG_COMP_02_PDDE\.csv line 5: buy_am: 'abc' is not a number$"):
        decode(source, record_of(source, "A01000000005"))
    with pytest.raises(DecodeError, match=r"^LPOINT_BIG_COMP_03_COP_U\.csv line 3: buy_am: '' is not a number$"):
        decode(source, record_of(source, "E01000000008"))


def test_raw_folder_needs_only_the_product_lines(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "lpoint", {"LPOINT_BIG_COMP_02_PDDE.csv":
                                                RAW_FILES["LPOINT_BIG_COMP_02_PDDE.csv"]})
    with capture_logs() as logs:
        source = LPointSource(folder)
    missing = {entry["file"] for entry in logs if entry["event"] == "lpoint.file_missing"}
    assert missing == {"LPOINT_BIG_COMP_01_DEMO.csv", "LPOINT_BIG_COMP_03_COP_U.csv",
                       "LPOINT_BIG_COMP_04_PD_CLAC.csv", "LPOINT_BIG_COMP_06_LPAY.csv"}
    events = decoded(source)
    assert len(events) == 2
    assert all(line[1] == ("UNKNOWN",) for event in events for line in event.lines)
    assert not any(event.lpay for event in events)


def test_raw_folder_without_product_lines_is_a_source_error(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "lpoint", {"LPOINT_BIG_COMP_01_DEMO.csv":
                                                RAW_FILES["LPOINT_BIG_COMP_01_DEMO.csv"]})
    with pytest.raises(SourceError, match=r"no LPOINT_BIG_COMP_02_PDDE\.csv"):
        LPointSource(folder)


def test_raw_file_missing_a_column_names_the_file_and_column(tmp_path: Path) -> None:
    files = dict(RAW_FILES)
    files["LPOINT_BIG_COMP_04_PD_CLAC.csv"] = ["pd_c,pd_nm,clac_hlv_nm", "PD0290,남성티셔츠,남성의류"]
    with pytest.raises(SourceError, match=r"LPOINT_BIG_COMP_04_PD_CLAC\.csv: no column 'clac_mcls_nm'"):
        LPointSource(write_folder(tmp_path / "lpoint", files))


def test_missing_path_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file or folder"):
        LPointSource(tmp_path / "nowhere")


def test_unknown_encoding_or_zone_is_a_config_error(tmp_path: Path) -> None:
    path = write_merged(tmp_path / "products.csv", [merged_row("R1")])
    with pytest.raises(ConfigError, match="encoding: unknown 'latin-9000'"):
        LPointSource(path, encoding="latin-9000")
    with pytest.raises(ConfigError, match="unknown zone 'Mars/Olympus'"):
        LPointSource(path, zone="Mars/Olympus")
    assert purchases(LPointSource(path, zone="UTC"))[0].event_time == datetime(2021, 1, 5, 10, tzinfo=ZoneInfo("UTC"))
