"""Hostile and broken CSV imports through the real `siyu import` command: a broken record is
a line-numbered bad row (an unclosed quote never swallows the rows after it), every problem
of a row is named by column with personal data masked, numbers, dates, time zones and JSON are
checked against bounds, control characters are refused, a broken mapping is one line, and a
file is never half-imported without an error (the rejects file holds the bad rows as they
were). Runs on SQLite, and on PostgreSQL when SIYU_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

from siyu.cli.main import app
from siyu.storage.models import Customer, Event, Order

MAPPING = """\
customers:
  columns: {external_id: 会员编号, name: 姓名, mobile: 手机号, consent: 营销同意, city: 城市,
            birthday: 生日, timezone: 时区}
orders:
  columns: {order_no: 订单号, customer: 会员编号, paid_at: 支付时间, amount: 实付金额}
events:
  columns: {external_id: 事件ID, customer: 会员编号, name: 事件, occurred_at: 时间,
            properties: 属性}
"""
HEADER = "会员编号,姓名,手机号,营销同意,城市,生日,时区\n"
GOOD = [
    "C001,王小明,13812345678,是,上海,1990-05-01,Asia/Shanghai\n",
    "C002,李雷,13900001111,否,杭州,,\n",
    "C003,韩梅梅,13700002222,是,北京,,\n",
]
MOBILE = re.compile(r"1[3-9]\d{9}")


def invoke(
    url: str, tmp: Path, kind: str, body: str | bytes, mapping: str = MAPPING, **env: str
) -> Result:
    (tmp / "m.yaml").write_text(mapping, encoding="utf-8")
    data = body.encode("utf-8") if isinstance(body, str) else body
    (tmp / f"{kind}.csv").write_bytes(data)
    return CliRunner().invoke(
        app,
        ["import", kind, str(tmp / f"{kind}.csv"), "--mapping", str(tmp / "m.yaml"), "--show", "0"],
        env={"SIYU_DATABASE_URL": url, **env},
    )


def bad_lines(result: Result, tmp: Path, kind: str) -> list[str]:
    prefix = f"{tmp / kind}.csv:"
    return [
        line.removeprefix(str(tmp) + "/")
        for line in result.output.splitlines()
        if line.startswith(prefix)
    ]


def names(sessions: sessionmaker[Session]) -> dict[str, str]:
    with sessions() as session:
        return dict(session.execute(select(Customer.external_id, Customer.name)).tuples().all())  # type: ignore[arg-type]


def count(sessions: sessionmaker[Session], model: type) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def url_of(sessions: sessionmaker[Session]) -> str:
    return sessions.kw["bind"].url.render_as_string(hide_password=False)


def load_customers(sessions: sessionmaker[Session], tmp: Path) -> None:
    result = invoke(url_of(sessions), tmp, "customers", HEADER + "".join(GOOD))
    assert result.exit_code == 0, result.output


# --- structure ------------------------------------------------------------------------


def test_an_unclosed_quote_is_one_bad_row_and_never_swallows_the_rows_after_it(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    broken = 'C009,"赵六,13600003333,是,成都,,\n'
    result = invoke(
        url_of(sessions), tmp_path, "customers", HEADER + GOOD[0] + broken + "".join(GOOD[1:])
    )
    assert result.exit_code == 2, result.output
    assert bad_lines(result, tmp_path, "customers") == [
        'customers.csv:3: a quoted field is not closed on its line (an unclosed "?); '
        "the following lines are read as rows of their own"
    ]
    loaded = names(sessions)
    assert loaded == {"C001": "王小明", "C002": "李雷", "C003": "韩梅梅"}
    assert "4 rows read, 3 added, 0 updated, 0 unchanged, 1 bad" in result.output
    assert not MOBILE.search(result.output)
    # the rejects file is the header and the bad line, byte for byte: fix it, import it
    rejects = (tmp_path / "customers.rejects.csv").read_text(encoding="utf-8")
    assert rejects == HEADER + broken


def test_an_unclosed_quote_on_the_last_line_is_reported(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    result = invoke(url_of(sessions), tmp_path, "customers", HEADER + GOOD[0] + 'C9,"赵六')
    assert result.exit_code == 2, result.output
    assert bad_lines(result, tmp_path, "customers")[0].startswith(
        "customers.csv:3: a quoted field is not closed"
    )
    assert (tmp_path / "customers.rejects.csv").read_text(encoding="utf-8").endswith('C9,"赵六\n')


def test_short_and_long_rows_are_errors_not_padded_or_cut(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    rows = [GOOD[0], "C002,李雷,13900001111\n", "C003,韩梅梅,13700002222,是,北京,,,extra\n"]
    result = invoke(url_of(sessions), tmp_path, "customers", HEADER + "".join(rows))
    assert result.exit_code == 2, result.output
    assert bad_lines(result, tmp_path, "customers") == [
        "customers.csv:3: 3 fields, the header has 7 (a missing or extra comma, or an unquoted "
        "comma in a value?)",
        "customers.csv:4: 8 fields, the header has 7 (a missing or extra comma, or an unquoted "
        "comma in a value?)",
    ]
    assert names(sessions) == {"C001": "王小明"}


def test_text_after_a_closing_quote_is_broken_csv(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    result = invoke(
        url_of(sessions), tmp_path, "customers", HEADER + 'C002,"李"雷,1,是,,,\n' + GOOD[0]
    )
    assert result.exit_code == 2
    assert bad_lines(result, tmp_path, "customers") == [
        "customers.csv:2: broken CSV (',' expected after '\"')"
    ]
    assert names(sessions) == {"C001": "王小明"}


def test_multiline_records_only_when_the_mapping_allows_them(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    header = HEADER.rstrip("\n") + ",地址\n"
    body = header + 'C001,王小明,13812345678,是,上海,,,"浦东\n张江路 1 号"\nC002,李雷,,否,,,,\n'
    refused = invoke(url_of(sessions), tmp_path, "customers", body)
    assert bad_lines(refused, tmp_path, "customers")[0].startswith(
        "customers.csv:2: a quoted field is not closed on its line"
    )
    # line 3 (`张江路 1 号"`) is then a broken row of its own; line 4 loads
    assert names(sessions) == {"C002": "李雷"}
    allowed = invoke(
        url_of(sessions),
        tmp_path,
        "customers",
        body,
        MAPPING.replace("customers:\n", "customers:\n  multiline: true\n"),
    )
    assert allowed.exit_code == 0, allowed.output
    assert names(sessions) == {"C001": "王小明", "C002": "李雷"}
    # a line break inside a mapped column is still refused, with line and column
    mapped = header + 'C003,"韩\n梅梅",,是,,,,\n'
    result = invoke(
        url_of(sessions),
        tmp_path,
        "customers",
        mapped,
        MAPPING.replace("customers:\n", "customers:\n  multiline: true\n"),
    )
    assert bad_lines(result, tmp_path, "customers") == [
        "customers.csv:2-3: 姓名: control character U+000A at character 2 (not allowed in "
        "imported text)"
    ]


def test_an_undecodable_line_is_one_bad_row_kept_byte_for_byte(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    broken = "C009,赵六,,是,,,\n".encode("gbk")
    body = (HEADER + GOOD[0]).encode("utf-8") + broken + GOOD[1].encode("utf-8")
    result = invoke(url_of(sessions), tmp_path, "customers", body)
    assert result.exit_code == 2, result.output
    assert bad_lines(result, tmp_path, "customers") == [
        "customers.csv:3: not utf-8-sig text (set `encoding:` in the mapping)"
    ]
    assert names(sessions) == {"C001": "王小明", "C002": "李雷"}
    assert (tmp_path / "customers.rejects.csv").read_bytes() == HEADER.encode() + broken


def test_an_over_long_record_is_refused_and_the_next_row_loads(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    long_row = "C009,赵六,,是," + "x" * 5000 + ",,\n"
    result = invoke(
        url_of(sessions),
        tmp_path,
        "customers",
        HEADER + long_row + GOOD[0],
        SIYU_IMPORT_MAX_RECORD_CHARS="1000",
    )
    assert result.exit_code == 2, result.output
    assert bad_lines(result, tmp_path, "customers")[0].startswith(
        "customers.csv:2: the row is longer than 1000 characters"
    )
    assert names(sessions) == {"C001": "王小明"}


# --- values ---------------------------------------------------------------------------


def test_every_problem_of_a_row_is_reported_by_column_with_personal_data_masked(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    load_customers(sessions, tmp_path)
    # the mobile belongs to C001, the consent is not a yes/no, the birthday is no date, the
    # zone does not exist, the city holds an escape character
    row = "C010,赵\x00六,13812345678,也许,上\x1b海,1990-13-01,Mars/Olympus\n"
    result = invoke(url_of(sessions), tmp_path, "customers", HEADER + row)
    assert result.exit_code == 2, result.output
    [line] = bad_lines(result, tmp_path, "customers")
    assert line == (
        "customers.csv:2: 姓名: control character U+0000 at character 2 (not allowed in "
        "imported text); 营销同意: '也许' is not a yes/no (是/否, 1/0, yes/no); "
        "城市: control character U+001B at character 2 (not allowed in imported text); "
        "生日: '1990-13-01' is not a date/time in the format ISO 8601, e.g. 2026-09-01 10:00:00; "
        "时区: 'Mars/Olympus' is not a time zone (e.g. Asia/Shanghai); "
        "mobile 138****5678 already belongs to another customer"
    )
    assert "13812345678" not in result.output and "赵" not in result.output
    assert "C010" not in names(sessions)


def test_a_tab_in_free_text_is_kept(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    result = invoke(url_of(sessions), tmp_path, "customers", HEADER + "C001,王\t小明,,是,,,\n")
    assert result.exit_code == 0, result.output
    assert names(sessions) == {"C001": "王\t小明"}


def test_values_longer_than_their_column_are_refused(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    rows = ["C001," + "王" * 65 + ",,是,,,\n", "C002,李雷,,是," + "杭" * 20 + ",,\n"]
    result = invoke(
        url_of(sessions),
        tmp_path,
        "customers",
        HEADER + "".join(rows),
        SIYU_IMPORT_MAX_FIELD_CHARS="16",
    )
    assert bad_lines(result, tmp_path, "customers") == [
        "customers.csv:2: 姓名: 65 characters, at most 16",
        "customers.csv:3: 城市: 20 characters, at most 16",
    ]
    assert "王王" not in result.output
    assert count(sessions, Customer) == 0


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        ("NaN", "'NaN' is not an amount (e.g. 199.00)"),
        ("Infinity", "'Infinity' is not an amount (e.g. 199.00)"),
        ("-sNaN", "'-sNaN' is not an amount (e.g. 199.00)"),
        ("-5", "amount '-5' is negative"),
        ("1e20", "amount '1e20' is larger than 9999999999.99"),
        ("12.345", "amount '12.345' has more than 2 decimal places"),
    ],
)
def test_impossible_amounts_are_refused(
    sessions: sessionmaker[Session], tmp_path: Path, amount: str, reason: str
) -> None:
    load_customers(sessions, tmp_path)
    body = (
        "订单号,会员编号,支付时间,实付金额\n"
        f"O1,C001,2026-09-01 10:00,{amount}\nO2,C001,2026-09-02 10:00,12.50\n"
    )
    result = invoke(url_of(sessions), tmp_path, "orders", body)
    assert result.exit_code == 2, result.output
    assert bad_lines(result, tmp_path, "orders") == [f"orders.csv:2: 实付金额: {reason}"]
    assert count(sessions, Order) == 1


@pytest.mark.parametrize("when", ["0001-01-01 00:00", "9999-12-31 23:59", "1800-01-01 00:00"])
def test_out_of_range_dates_are_refused(
    sessions: sessionmaker[Session], tmp_path: Path, when: str
) -> None:
    load_customers(sessions, tmp_path)
    body = f"订单号,会员编号,支付时间,实付金额\nO1,C001,{when},1\nO2,C001,2026-09-02 10:00,2\n"
    result = invoke(url_of(sessions), tmp_path, "orders", body)
    assert result.exit_code == 2, result.output
    assert bad_lines(result, tmp_path, "orders") == [
        f"orders.csv:2: 支付时间: '{when}' is outside the years 1900-2100 "
        "(SIYU_IMPORT_MIN_YEAR/MAX_YEAR)"
    ]
    assert count(sessions, Order) == 1


def test_deep_oversized_or_odd_json_is_refused(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    load_customers(sessions, tmp_path)

    def cell(value: str) -> str:
        return '"' + value.replace('"', '""') + '"'

    deep9 = '{"a":' * 9 + "1" + "}" * 9
    very_deep = '{"a":' + "[" * 50_000 + "]" * 50_000 + "}"
    values = [deep9, very_deep, '{"x": NaN}', '{"x": "a\\u0000b"}', '{"x": 1e999}', '{"sku": "A1"}']
    rows = [f"E{i},C001,browse,2026-09-01T10:00:00,{cell(v)}\n" for i, v in enumerate(values, 1)]
    body = "事件ID,会员编号,事件,时间,属性\n" + "".join(rows)
    result = invoke(
        url_of(sessions),
        tmp_path,
        "events",
        body,
        SIYU_IMPORT_MAX_JSON_CHARS="200000",
        SIYU_IMPORT_MAX_RECORD_CHARS="300000",
    )
    assert result.exit_code == 2, result.output
    assert bad_lines(result, tmp_path, "events") == [
        "events.csv:2: 属性: JSON nested deeper than 8 levels (SIYU_IMPORT_MAX_JSON_DEPTH)",
        "events.csv:3: 属性: JSON nested deeper than 8 levels (SIYU_IMPORT_MAX_JSON_DEPTH)",
        "events.csv:4: 属性: NaN is not a JSON number",
        "events.csv:5: 属性: JSON text holds control character U+0000",
        "events.csv:6: 属性: 1e999 is too large a number",
    ]
    assert count(sessions, Event) == 1
    sized = invoke(
        url_of(sessions), tmp_path, "events", body, SIYU_IMPORT_MAX_RECORD_CHARS="300000"
    )
    assert bad_lines(sized, tmp_path, "events")[1] == (
        "events.csv:3: 属性: 100006 characters of JSON, at most 4096 (SIYU_IMPORT_MAX_JSON_CHARS)"
    )


def test_a_zone_not_in_the_zone_database_is_refused_at_import(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    rows = ["C001,王小明,,是,,,Mars/Olympus\n", "C002,李雷,,是,,,../../etc/passwd\n", GOOD[2]]
    result = invoke(url_of(sessions), tmp_path, "customers", HEADER + "".join(rows))
    assert bad_lines(result, tmp_path, "customers") == [
        "customers.csv:2: 时区: 'Mars/Olympus' is not a time zone (e.g. Asia/Shanghai)",
        "customers.csv:3: 时区: '../../etc/passwd' is not a time zone (e.g. Asia/Shanghai)",
    ]
    assert names(sessions) == {"C003": "韩梅梅"}


# --- mapping --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        (
            MAPPING.replace("customers:\n", "customers:\n  encoding: gbk2\n"),
            "m.yaml:2:13: unknown encoding 'gbk2'; e.g. utf-8 or gbk",
        ),
        (
            MAPPING.replace("customers:\n", "customers:\n  encoding: utf-16\n"),
            "m.yaml:2:13: encoding 'utf-16' is not supported (export the CSV as UTF-8 or GBK)",
        ),
        (
            MAPPING.replace("customers:\n", "customers:\n  encoding: rot13\n"),
            "m.yaml:2:13: unknown encoding 'rot13'; e.g. utf-8 or gbk",
        ),
        (MAPPING.replace("城市,", "城市, [a,"), "m.yaml:3:"),
        (
            MAPPING.replace("customers:\n", "customers:\n  timezone: Mars/Olympus\n"),
            "m.yaml:2:13: 'Mars/Olympus' is not a time zone; e.g. Asia/Shanghai",
        ),
        (
            MAPPING.replace("customers:\n", "customers:\n  date_format: '%Q'\n"),
            "m.yaml:2:16: date_format '%Q' cannot read dates back",
        ),
        (
            MAPPING.replace("customers:\n", "customers:\n  enconding: gbk\n"),
            "m.yaml:2:3: unknown key 'customers.enconding' — did you mean 'encoding'?",
        ),
        (
            MAPPING.replace("city: 城市", "city: [1, 2]"),
            "m.yaml:2:70: 'customers.columns.city' must be a CSV column name",
        ),
        ("\t customers: {", "m.yaml:1:1: not valid YAML"),
        ("customers: " + "[" * 20_000 + "]" * 20_000, "m.yaml:1:28: nested deeper than 16 levels"),
        (MAPPING + "customers: {}\n", "m.yaml:9:1: not valid YAML (found duplicate key"),
    ],
)
def test_a_mapping_error_is_one_line_naming_the_mapping_file(
    sessions: sessionmaker[Session], tmp_path: Path, mapping: str, message: str
) -> None:
    result = invoke(url_of(sessions), tmp_path, "customers", HEADER + GOOD[0], mapping)
    assert result.exit_code == 1, result.output
    assert (
        "Traceback" not in result.output
        and result.exception is None
        or isinstance(result.exception, SystemExit)
    )
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"{tmp_path}/{message}"), line
    assert count(sessions, Customer) == 0


def test_a_mapped_column_missing_from_the_header_names_both_files(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    result = invoke(
        url_of(sessions), tmp_path, "customers", HEADER.replace("城市", "城巿") + GOOD[0]
    )
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith(
        f"{tmp_path}/customers.csv:1: column '城市' (for city) is not in the header"
    )
    column = MAPPING.splitlines()[1].index("城市") + 1
    assert line.endswith(f"mapping: {tmp_path}/m.yaml:2:{column})")


# --- the file as a whole ----------------------------------------------------------------


def test_too_many_rows_or_bytes_import_nothing(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    body = HEADER + "".join(GOOD)
    rows = invoke(url_of(sessions), tmp_path, "customers", body, SIYU_IMPORT_MAX_ROWS="2")
    assert rows.exit_code == 1
    assert rows.output.strip() == (
        f"{tmp_path}/customers.csv:4: more than 2 rows (SIYU_IMPORT_MAX_ROWS); nothing from this "
        "file was imported"
    )
    size = invoke(url_of(sessions), tmp_path, "customers", body, SIYU_IMPORT_MAX_FILE_BYTES="100")
    assert size.exit_code == 1
    assert "(SIYU_IMPORT_MAX_FILE_BYTES); split the export" in size.output
    assert count(sessions, Customer) == 0
    assert not list(tmp_path.glob("*rejects*"))


def test_a_device_is_not_read(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(MAPPING, encoding="utf-8")
    result = CliRunner().invoke(
        app,
        [
            "import",
            "customers",
            "/dev/zero",
            "--mapping",
            str(tmp_path / "m.yaml"),
            "--rejects",
            str(tmp_path / "r.csv"),
        ],
        env={"SIYU_DATABASE_URL": url_of(sessions)},
    )
    assert result.exit_code == 1
    assert result.output.strip() == "/dev/zero: not a regular file"


def test_a_database_error_midway_rolls_the_whole_file_back(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    load_customers(sessions, tmp_path)
    with sessions() as session, session.begin():
        if session.get_bind().dialect.name == "sqlite":
            session.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON orders WHEN NEW.order_no = 'O3' "
                    "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
                )
            )
        else:
            session.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    "IF NEW.order_no = 'O3' THEN RAISE EXCEPTION 'refused by a trigger'; END IF; "
                    "RETURN NEW; END $$"
                )
            )
            session.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON orders FOR EACH ROW "
                    "EXECUTE FUNCTION refuse()"
                )
            )
    body = (
        "订单号,会员编号,支付时间,实付金额\n"
        + "".join(f"O{i},C001,2026-09-0{i} 10:00,{i}\n" for i in range(1, 6))
        + "O9,C001,2026-09-09 10:00,NaN\n"
    )
    result = invoke(url_of(sessions), tmp_path, "orders", body)
    assert result.exit_code == 1, result.output
    [line] = result.output.strip().splitlines()
    # rows are written in batches: the message names the lines of the batch the database
    # refused (here the whole file)
    assert line.startswith(f"{tmp_path}/orders.csv:2-7: the database refused the import of ")
    assert "refused by a trigger" in line
    assert line.endswith("nothing from this file was imported")
    assert count(sessions, Order) == 0
    assert not list(tmp_path.glob("*rejects*"))


def test_importing_into_a_database_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "var" / "siyu.db"
    result = invoke(f"sqlite:///{target}", tmp_path, "customers", HEADER + GOOD[0])
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()  # the CLI's convention (siyu/cli/conventions.py)
    assert line.startswith(f"no database at {target}: run `siyu db upgrade`")
    assert not (tmp_path / "var").exists()
    assert not list(tmp_path.glob("*rejects*"))


def test_importing_into_a_database_that_is_not_migrated_says_so(
    database_url: str, tmp_path: Path
) -> None:
    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).touch()
    result = invoke(database_url, tmp_path, "customers", HEADER + GOOD[0])
    assert result.exit_code == 1, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith("the database ") and "run `siyu db upgrade` first" in line
    assert "Traceback" not in result.output


def test_gbk_with_windows_line_ends_loads_and_a_bare_carriage_return_is_one_bad_row(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    rows = [GOOD[0], "C002,李\r雷,,否,,,\n", GOOD[2]]
    body = (HEADER + "".join(rows)).replace("\n", "\r\n").encode("gbk")
    result = invoke(
        url_of(sessions),
        tmp_path,
        "customers",
        body,
        MAPPING.replace("customers:\n", "customers:\n  encoding: gbk\n"),
    )
    assert result.exit_code == 2, result.output
    assert bad_lines(result, tmp_path, "customers") == [
        "customers.csv:3: broken CSV (a carriage return inside an unquoted value)"
    ]
    assert names(sessions) == {"C001": "王小明", "C003": "韩梅梅"}
    assert (tmp_path / "customers.rejects.csv").read_bytes() == (
        HEADER.replace("\n", "\r\n") + "C002,李\r雷,,否,,,\r\n"
    ).encode("gbk")


def test_a_database_migrated_to_the_latest_revision_imports(
    database_url: str, tmp_path: Path
) -> None:
    from siyu.storage.migrate import upgrade

    upgrade(database_url)
    result = invoke(database_url, tmp_path, "customers", HEADER + "".join(GOOD))
    assert result.exit_code == 0, result.output
    assert "3 rows read, 3 added, 0 updated, 0 unchanged, 0 bad" in result.output
    assert not list(tmp_path.glob("*rejects*"))


def test_a_mobile_number_in_the_wrong_column_is_not_echoed(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    row = "C001,王小明,13812345678,13900001111,上海,13700002222,+8613600003333\n"
    result = invoke(url_of(sessions), tmp_path, "customers", HEADER + row)
    assert result.exit_code == 2, result.output
    [line] = bad_lines(result, tmp_path, "customers")
    assert "'139****1111' is not a yes/no" in line and "'137****2222' is not a date" in line
    assert "'+86136****3333' is not a time zone" in line
    assert not MOBILE.search(result.output)
