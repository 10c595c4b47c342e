"""The import benchmark: rows per second of `siyu import` (run on purpose; not part of the
test suite):

    python -m bench.imports --customers 100000 --orders 300000
    python -m bench.imports --database-url postgresql+psycopg://...   # a schema of its own

It writes a CRM export the way a brand's looks (Chinese headers, a mapping file with a date
format and a time zone, a mobile and a consent per member, two bad rows in each file), makes
a fresh migrated database, and runs the real command line, `siyu import customers` and then
`siyu import orders`, as a user would (a process each, the clock around the process). Then it
runs both again over the same database: a re-import, where every row is an update. Prints
rows/s for each import, the CPU seconds of the `siyu import` process (on a shared machine the
wall clock also counts other processes' turns; on PostgreSQL the server's work is not in it)
and its peak memory (ru_maxrss).

    python -m bench.imports --baseline /tmp/before   # /tmp/before: `git archive REV siyu`

runs a second version of siyu side by side (its `siyu` package put first on PYTHONPATH), each
on a database of its own, one import of each in turn, so that both meet the same load.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

from siyu.storage.migrate import upgrade

MAPPING = """\
customers:
  columns: {external_id: 会员编号, name: 姓名, mobile: 手机号, email: 邮箱, consent: 营销同意,
            city: 城市, member_level: 会员等级, created_at: 注册时间}
  date_format: "%Y/%m/%d %H:%M"
  timezone: Asia/Shanghai
orders:
  columns: {order_no: 订单号, customer: 会员编号, paid_at: 支付时间, amount: 实付金额,
            category: 品类, store: 门店}
  date_format: "%Y/%m/%d %H:%M"
  timezone: Asia/Shanghai
"""

CITIES = ("上海", "北京", "杭州", "成都", "广州", "深圳")
CATEGORIES = ("护肤", "彩妆", "香氛", "个护")


def write_export(
    directory: Path, customers: int, orders: int, in_time_order: bool, seed: int = 7
) -> None:
    """members.csv, orders.csv and mapping.yaml; row 3 of each file is bad. Orders in random
    order of payment, or in payment order (as a CRM's export usually is)."""
    rng = random.Random(seed)
    start = datetime(2025, 1, 1, 9, 0)
    with (directory / "members.csv").open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(
            ["会员编号", "姓名", "手机号", "邮箱", "营销同意", "城市", "会员等级", "注册时间"]
        )
        for n in range(customers):
            joined = start + timedelta(minutes=rng.randrange(500_000))
            out.writerow(
                [
                    f"M{n:08d}",
                    f"会员{n}",
                    f"13{n:09d}",
                    f"m{n}@example.com",
                    "是" if n % 5 else "否",
                    CITIES[n % len(CITIES)],
                    "金卡" if n % 7 == 0 else "普通",
                    "2025/13/45 25:00" if n == 1 else joined.strftime("%Y/%m/%d %H:%M"),
                ]
            )
    with (directory / "orders.csv").open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["订单号", "会员编号", "支付时间", "实付金额", "品类", "门店"])
        minutes = [rng.randrange(700_000) for _ in range(orders)]
        if in_time_order:
            minutes.sort()
        for n, minute in enumerate(minutes):
            paid = start + timedelta(minutes=minute)
            out.writerow(
                [
                    f"SO{n:010d}",
                    "M99999999" if n == 1 else f"M{rng.randrange(customers):08d}",
                    paid.strftime("%Y/%m/%d %H:%M"),
                    f"{rng.randrange(1000, 100000) / 100:.2f}",
                    CATEGORIES[n % len(CATEGORIES)],
                    f"门店{n % 40}",
                ]
            )
    (directory / "mapping.yaml").write_text(MAPPING, encoding="utf-8")


def run_import(
    kind: str, file: Path, mapping: Path, environment: dict[str, str]
) -> tuple[float, float, int]:
    """Seconds, CPU seconds and peak memory (bytes) of one `siyu import` process; exit 2 (bad
    rows listed) is what the file asks for."""
    siyu = Path(sys.executable).with_name("siyu")
    command = [str(siyu), "import", kind, str(file), "--mapping", str(mapping), "--show", "3"]
    with tempfile.TemporaryFile("w+") as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=environment, stdout=out, stderr=out, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read()
    if process.returncode != 2:
        raise SystemExit(f"siyu import {kind} exited {process.returncode}:\n{output[-2000:]}")
    print("   ", output.strip().splitlines()[-2])
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def fresh_database(url: str | None, workdir: Path) -> tuple[str, str | None]:
    """A migrated, empty database: a SQLite file, or a new schema on the PostgreSQL server
    (its name is returned to drop it afterwards)."""
    if url is None:
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / "import-bench.db"
        path.unlink(missing_ok=True)
        url = f"sqlite:///{path}"
        upgrade(url)
        return url, None
    schema = f"bench_import_{uuid.uuid4().hex[:8]}"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    separator = "&" if "?" in url else "?"
    url = f"{url}{separator}options=-csearch_path%3D{schema}"
    upgrade(url)
    return url, schema


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.imports")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--orders", type=int, default=300_000)
    parser.add_argument(
        "--in-time-order",
        action="store_true",
        help="orders in payment order, as a CRM's export usually is (default: random order)",
    )
    parser.add_argument("--database-url", help="default: a SQLite file in --workdir")
    parser.add_argument("--workdir", type=Path, default=Path("var/bench-imports"))
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a directory holding another version's siyu package, run side by side",
    )
    options = parser.parse_args(argv)
    options.workdir.mkdir(parents=True, exist_ok=True)
    write_export(options.workdir, options.customers, options.orders, options.in_time_order)
    versions = {"this": None, **({"baseline": options.baseline} if options.baseline else {})}
    mapping = options.workdir / "mapping.yaml"
    environments: dict[str, dict[str, str]] = {}
    schemas: list[str] = []
    for name, code in versions.items():
        url, schema = fresh_database(options.database_url, options.workdir / name)
        schemas += [schema] if schema else []
        environments[name] = {**os.environ, "SIYU_DATABASE_URL": url}
        if code is not None:
            path = os.environ.get("PYTHONPATH")
            environments[name]["PYTHONPATH"] = (
                f"{code.resolve()}{os.pathsep}{path}" if path else str(code.resolve())
            )
        print(f"{name}: database {url.split('@')[-1]}")
    try:
        for attempt in (
            "first import",
            "the same export again (rows matched; only changed rows are written)",
        ):
            print(attempt)
            for kind, file, rows in (
                ("customers", "members.csv", options.customers),
                ("orders", "orders.csv", options.orders),
            ):
                for name, environment in environments.items():
                    seconds, cpu, peak = run_import(
                        kind, options.workdir / file, mapping, environment
                    )
                    print(
                        f"  {name:8} {kind:9} {rows:>9,} rows in {seconds:6.1f} s: "
                        f"{rows / seconds:9,.0f} rows/s ({cpu:5.1f} s CPU: "
                        f"{rows / cpu:7,.0f} rows per CPU second), "
                        f"peak memory {peak / 2**20:.0f} MiB"
                    )
    finally:
        if schemas and options.database_url is not None:
            engine = create_engine(options.database_url)
            with engine.begin() as connection:
                for schema in schemas:
                    connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            engine.dispose()
        shutil.rmtree(options.workdir / "__pycache__", ignore_errors=True)


if __name__ == "__main__":
    main()
