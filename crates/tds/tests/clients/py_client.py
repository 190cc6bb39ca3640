"""Exercises one Python SQL Server client against the test server.

usage: py_client.py <pytds|pymssql|mssql_python> <host> <port> <tls:0|1>
Prints "PASS <check>" lines; exits non-zero on the first failure.
"""
import datetime
import os
import decimal
import sys
import uuid

DRIVER, HOST, PORT, TLS = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] != "0"
USER, PASSWORD = "sa", "Secret123!"
NVARCHAR_TEXT = "héllo wörld ✓ 日本"
BIG = "abcdefghij" * 500
GUID = uuid.UUID("6F9619FF-8B86-D011-B42D-00C04FC964FF")


def ok(name):
    print("PASS", name, flush=True)


def connect(password=PASSWORD, autocommit=True, timeout=10):
    if DRIVER == "pytds":
        import pytds
        return pytds.connect(HOST, "testdb", USER, password, port=PORT, autocommit=autocommit,
                             login_timeout=10, timeout=timeout)
    if DRIVER == "pymssql":
        import pymssql
        return pymssql.connect(server=HOST, port=str(PORT), user=USER, password=password,
                               database="testdb", tds_version="7.4", autocommit=autocommit,
                               login_timeout=10, timeout=timeout)
    import mssql_python
    enc = {"0": "Encrypt=no", "1": "Encrypt=yes;TrustServerCertificate=yes",
           "strict": "Encrypt=strict;ServerCertificate=" + os.environ.get("TDS_CERT", "")}[sys.argv[4]]
    c = mssql_python.connect(f"Server={HOST},{PORT};UID={USER};PWD={password};Database=testdb;{enc}")
    c.autocommit = autocommit
    if timeout != 10:
        c.timeout = timeout
    return c


def err_info(e):
    """(number, severity, state) as far as the driver exposes them; text."""
    text = str(e)
    num = sev = state = None
    if DRIVER == "pytds":
        num, sev, state = getattr(e, "msg_no", None), getattr(e, "severity", None), getattr(e, "state", None)
    elif DRIVER == "pymssql":
        num = e.args[0] if e.args and isinstance(e.args[0], int) else None
    return num, sev, state, text


def check_login_failure():
    try:
        connect(password="wrong")
    except Exception as e:  # noqa: BLE001 - each driver has its own class
        num, sev, _, text = err_info(e)
        assert "18456" in text or num == 18456 or "Login failed" in text, repr(e)
        if DRIVER == "pytds":
            assert (num, sev) == (18456, 14), (num, sev)
        ok("login_failure")
        return
    raise AssertionError("login with a wrong password succeeded")


def approx_dt(a, b):
    return abs((a - b).total_seconds()) < 2e-6


def check_types(cur):
    cur.execute("select types")
    cols = [d[0] for d in cur.description]
    row = dict(zip(cols, cur.fetchone()))
    assert row["c_int"] == -123456, row["c_int"]
    assert row["c_bigint"] == 1234567890123, row["c_bigint"]
    assert row["c_bit"] in (True, 1), row["c_bit"]
    assert decimal.Decimal(row["c_decimal"]) == decimal.Decimal("12345.6789"), row["c_decimal"]
    assert row["c_float"] == 3.5, row["c_float"]
    assert row["c_nvarchar"] == NVARCHAR_TEXT, row["c_nvarchar"]
    assert row["c_nvarcharmax"] == BIG, len(row["c_nvarcharmax"])
    assert bytes(row["c_varbinary"]) == b"\xde\xad\xbe\xef\x00", row["c_varbinary"]
    g = row["c_guid"]
    g = g if isinstance(g, uuid.UUID) else uuid.UUID(str(g))
    assert g == GUID, g
    dt = row["c_datetime2"]
    if isinstance(dt, str):
        dt = datetime.datetime.fromisoformat(dt[:26])
    assert approx_dt(dt, datetime.datetime(2024, 2, 29, 13, 45, 7, 123457)), dt
    d = row["c_date"]
    if isinstance(d, str):
        d = datetime.date.fromisoformat(d)
    assert d == datetime.date(2024, 2, 29), d
    assert row["c_null"] is None and row["c_nullstr"] is None
    ok("types")


def check_params(cur):
    if DRIVER == "pymssql":
        # pymssql substitutes parameters client-side: the batch arrives as text.
        cur.execute("select 1 where 1 = %s", (1,))
        ok("params(client-side)")
        return
    ph = "?" if DRIVER == "mssql_python" else "%s"
    binval = b"\x00\x01\xff"
    if DRIVER == "pytds":
        import pytds  # plain bytes are taken as text by python-tds
        binval = pytds.Binary(binval)
    args = (42, -7, "ünïcode ✓", BIG, decimal.Decimal("-12.345"), GUID, 2.5, binval,
            datetime.datetime(2021, 3, 4, 5, 6, 7, 890000), datetime.date(1999, 12, 31))
    cur.execute("select echo " + ", ".join([ph] * len(args)), args)
    row = cur.fetchone()
    assert row[0] == 42 and row[1] == -7, row[:2]
    assert row[2] == "ünïcode ✓", row[2]
    assert row[3] == BIG, len(row[3])
    assert decimal.Decimal(row[4]) == decimal.Decimal("-12.345"), row[4]
    g = row[5] if isinstance(row[5], uuid.UUID) else uuid.UUID(str(row[5]))
    assert g == GUID, row[5]
    assert row[6] == 2.5, row[6]
    assert bytes(row[7]) == b"\x00\x01\xff", row[7]
    assert approx_dt(row[8], datetime.datetime(2021, 3, 4, 5, 6, 7, 890000)), row[8]
    assert row[9] in (datetime.date(1999, 12, 31), datetime.datetime(1999, 12, 31)), row[9]
    # a NULL parameter and a second execution (re-uses a prepared handle on ODBC)
    cur.execute(f"select echo {ph}, {ph}", (None, 5))
    row = cur.fetchone()
    # python-tds inlines None as a NULL literal, so only one parameter arrives there
    assert row[-1] == 5 and (len(row) == 1 or row[0] is None), row
    cur.execute(f"select echo {ph}, {ph}", (6, 7))
    row = cur.fetchone()
    assert tuple(row) == (6, 7), row
    ok("params")


def check_error(cur):
    try:
        cur.execute("raiserror")
        if DRIVER == "mssql_python":
            cur.fetchall()
    except Exception as e:  # noqa: BLE001
        num, sev, state, text = err_info(e)
        print("error as seen by the client:", text.replace("\n", " "), flush=True)
        assert "boom" in text, text
        if DRIVER == "pytds":
            assert (num, sev, state) == (50000, 16, 3), (num, sev, state)
        if DRIVER == "pymssql":
            assert num == 50000, e.args
        ok("error")
        return
    raise AssertionError("no error raised")


def check_after_error(cur):
    cur.execute("select 1")
    assert cur.fetchone()[0] == 1
    ok("usable_after_error")


def check_transaction():
    conn = connect(autocommit=False)
    cur = conn.cursor()
    cur.execute("insert 1")
    conn.rollback()
    cur.execute("insert 2")
    conn.commit()
    cur.execute("select rows")
    vals = [r[0] for r in cur.fetchall()]
    conn.commit()
    conn.close()
    # python-tds and mssql-python use Transaction Manager requests, pymssql BEGIN/COMMIT TRAN
    assert vals == [2], vals
    ok("transaction")


def check_timeout():
    """A query timeout makes the client send ATTENTION; the server must acknowledge it
    and the connection must stay usable."""
    import time
    conn = connect(timeout=1)
    cur = conn.cursor()
    start = time.time()
    try:
        cur.execute("waitfor delay")
        cur.fetchall()
        raise AssertionError("no timeout")
    except AssertionError:
        raise
    except Exception as e:  # noqa: BLE001
        print("timeout as seen by the client:", repr(e)[:200], flush=True)
    assert time.time() - start < 8, "server did not stop on ATTENTION"
    if DRIVER == "pymssql":
        # db-lib marks the DBPROCESS dead after a timeout: nothing to reuse
        ok("timeout(client closes)")
        return
    cur = conn.cursor()
    cur.execute("select 1")
    assert cur.fetchone()[0] == 1
    conn.close()
    ok("timeout_attention")


def main():
    check_login_failure()
    conn = connect()
    cur = conn.cursor()
    check_types(cur)
    check_params(cur)
    check_error(cur)
    check_after_error(cur)
    conn.close()
    check_transaction()
    if os.environ.get("CHECK_TIMEOUT", "1") == "1":
        check_timeout()
    print("ALL OK")


main()
