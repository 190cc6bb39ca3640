"""Exercises one Python SQL Server client against a real `milink serve`.

usage: py_endpoint.py <pytds|pymssql|mssql_python> <host> <port>
Prints "PASS <check>" lines and "ALL OK" at the end; exits non-zero on the first failure.
"""
import datetime
import decimal
import sys
import time
import uuid

DRIVER, HOST, PORT = sys.argv[1], sys.argv[2], int(sys.argv[3])
USER, PASSWORD = "sa", "Secret123!"
DB = "db_" + DRIVER
TEXT = "héllo wörld ✓ 日本"
BIG = "ünïcode ✓ " * 700
GUID = uuid.UUID("6F9619FF-8B86-D011-B42D-00C04FC964FF")
BIN = b"\xde\xad\xbe\xef\x00\x01"


def ok(name):
    print("PASS", name, flush=True)


def connect(password=PASSWORD, autocommit=True, timeout=10, database="master"):
    if DRIVER == "pytds":
        import pytds
        return pytds.connect(HOST, database, USER, password, port=PORT, autocommit=autocommit,
                             login_timeout=10, timeout=timeout)
    if DRIVER == "pymssql":
        import pymssql
        return pymssql.connect(server=HOST, port=str(PORT), user=USER, password=password,
                               database=database, tds_version="7.4", autocommit=autocommit,
                               login_timeout=10, timeout=timeout)
    import mssql_python
    c = mssql_python.connect(
        f"Server={HOST},{PORT};UID={USER};PWD={password};Database={database};"
        "Encrypt=yes;TrustServerCertificate=yes")
    c.autocommit = autocommit
    if timeout != 10:
        c.timeout = timeout
    return c


def err_number(e):
    """The SQL Server error number as far as the driver exposes it (mssql-python: from the text)."""
    if DRIVER == "pytds":
        return getattr(e, "msg_no", None) or getattr(e, "number", None)
    if DRIVER == "pymssql":
        return e.args[0] if e.args and isinstance(e.args[0], int) else None
    return None


def expect_error(cur, sql, number, text):
    try:
        cur.execute(sql)
        if DRIVER == "mssql_python":
            while cur.nextset():
                pass
    except Exception as e:  # noqa: BLE001 - each driver has its own class
        msg = str(e)
        print(f"  error {number} as seen by the client: {msg[:160]!r}", flush=True)
        n = err_number(e)
        if n is not None:
            assert n == number, (n, number, msg)
        assert text in msg, (text, msg)
        return
    raise AssertionError(f"no error from {sql!r}")


def check_login_failure():
    try:
        connect(password="wrong")
    except Exception as e:  # noqa: BLE001
        text = str(e)
        n = err_number(e)
        assert n == 18456 or "18456" in text or "Login failed" in text, repr(e)
        ok("login_failure")
        return
    raise AssertionError("login with a wrong password succeeded")


def one(cur, sql, args=None):
    if args is None:
        cur.execute(sql)
    else:
        cur.execute(sql, args)
    return cur.fetchone()


def check_setup(cur):
    cur.execute(f"IF DB_ID('{DB}') IS NULL CREATE DATABASE {DB}")
    cur.execute(f"USE {DB}")
    assert one(cur, "SELECT DB_NAME()")[0] == DB
    cur.execute("""CREATE TABLE t (
        id INT IDENTITY(1,1) PRIMARY KEY,
        name NVARCHAR(50) NOT NULL,
        amount DECIMAL(10,2),
        flag BIT,
        at DATETIME2,
        g UNIQUEIDENTIFIER,
        b VARBINARY(MAX),
        txt NVARCHAR(MAX))""")
    cur.execute(
        "INSERT INTO t (name, amount, flag, at, g, b, txt) VALUES "
        f"(N'{TEXT}', 12345678.91, 1, '2024-02-29 13:45:07.1234567', "
        f"'{GUID}', 0x{BIN.hex()}, N'{BIG}'), "
        "(N'nulls', NULL, NULL, NULL, NULL, NULL, NULL), "
        "(N'third', -0.05, 0, '1999-12-31 23:59:59', NEWID(), 0x, N'')")
    if DRIVER != "mssql_python" or cur.rowcount != -1:
        assert cur.rowcount == 3, cur.rowcount
    ok("create_database_table_insert")


def check_select(cur):
    cur.execute("SELECT id, name, amount, flag, at, g, b, txt FROM t ORDER BY id")
    cols = [d[0] for d in cur.description]
    assert cols == ["id", "name", "amount", "flag", "at", "g", "b", "txt"], cols
    rows = cur.fetchall()
    assert len(rows) == 3, rows
    r = rows[0]
    assert r[0] == 1, r[0]
    assert r[1] == TEXT, r[1]
    assert isinstance(r[2], decimal.Decimal) and r[2] == decimal.Decimal("12345678.91"), repr(r[2])
    assert r[3] in (True, 1) and r[3] is not None, r[3]
    at = r[4]
    assert isinstance(at, datetime.datetime), repr(at)
    assert abs((at - datetime.datetime(2024, 2, 29, 13, 45, 7, 123457)).total_seconds()) < 2e-6, at
    g = r[5] if isinstance(r[5], uuid.UUID) else uuid.UUID(str(r[5]))
    assert g == GUID, r[5]
    assert bytes(r[6]) == BIN, r[6]
    assert r[7] == BIG, (len(r[7]), r[7][:20])
    r = rows[1]
    assert r[0] == 2 and r[1] == "nulls", r
    assert all(v is None for v in r[2:]), r
    r = rows[2]
    assert r[2] == decimal.Decimal("-0.05"), repr(r[2])
    assert r[3] in (False, 0) and r[3] is not None, r[3]
    assert bytes(r[6]) == b"" and r[7] == "", r
    # aggregate and expression typing
    r = one(cur, "SELECT COUNT(*), SUM(amount), MAX(name), CAST(NULL AS INT) FROM t")
    assert r[0] == 3 and r[1] == decimal.Decimal("12345678.86") and r[2] == "third" and r[3] is None, r
    ok("select_types")


def check_params(cur):
    if DRIVER == "pymssql":
        # pymssql substitutes parameters client-side: the batch arrives as text.
        r = one(cur, "SELECT name, amount FROM t WHERE id = %s AND name = %s", (1, TEXT))
        assert r[0] == TEXT and r[1] == decimal.Decimal("12345678.91"), r
        cur.execute("INSERT INTO t (name, amount, b) VALUES (%s, %s, %s)",
                    ("p ✓", decimal.Decimal("1.25"), None))
        assert cur.rowcount == 1
        r = one(cur, "SELECT amount, b FROM t WHERE name = %s", ("p ✓",))
        assert r[0] == decimal.Decimal("1.25") and r[1] is None, r
        ok("params(client-side)")
        return
    ph = "?" if DRIVER == "mssql_python" else "%s"
    r = one(cur, f"SELECT name, amount FROM t WHERE id = {ph} AND name = {ph}", (1, TEXT))
    assert r is not None and r[0] == TEXT and r[1] == decimal.Decimal("12345678.91"), r
    # re-executed with other values (mssql-python: sp_execute on the prepared handle)
    r = one(cur, f"SELECT name, amount FROM t WHERE id = {ph} AND name = {ph}", (3, "third"))
    assert r is not None and r[0] == "third", r
    binval = b"\x00\xff"
    if DRIVER == "pytds":
        import pytds
        binval = pytds.Binary(binval)
    cur.execute(f"INSERT INTO t (name, amount, flag, at, g, b) VALUES ({ph}, {ph}, {ph}, {ph}, {ph}, {ph})",
                ("p ✓", decimal.Decimal("1.25"), True, datetime.datetime(2020, 1, 2, 3, 4, 5), GUID, binval))
    assert cur.rowcount == 1, cur.rowcount
    # a NULL parameter (mssql-python asks sp_describe_undeclared_parameters for its type)
    cur.execute(f"INSERT INTO t (name, amount, txt, b, at) VALUES ({ph}, {ph}, {ph}, {ph}, {ph})",
                ("p null", None, None, None, None))
    assert cur.rowcount == 1, cur.rowcount
    r = one(cur, f"SELECT amount, flag, at, g, b FROM t WHERE name = {ph}", ("p ✓",))
    assert r[0] == decimal.Decimal("1.25") and r[1] in (True, 1), r
    assert r[2] == datetime.datetime(2020, 1, 2, 3, 4, 5), r[2]
    g = r[3] if isinstance(r[3], uuid.UUID) else uuid.UUID(str(r[3]))
    assert g == GUID and bytes(r[4]) == b"\x00\xff", r
    r = one(cur, f"SELECT amount, txt, b, at FROM t WHERE name = {ph}", ("p null",))
    assert all(v is None for v in r), r
    ok("params")


def check_errors(cur):
    cur.execute("CREATE TABLE u (k INT PRIMARY KEY)")
    cur.execute("INSERT INTO u VALUES (1)")
    expect_error(cur, "INSERT INTO u VALUES (1)", 2627, "Violation of PRIMARY KEY constraint")
    expect_error(cur, "SELECT 1/0", 8134, "Divide by zero")
    expect_error(cur, "SELECT * FROM no_such_table", 208, "Invalid object name 'no_such_table'")
    assert one(cur, "SELECT COUNT(*) FROM u")[0] == 1
    ok("errors")


def check_transactions():
    conn = connect(autocommit=False, database=DB)
    cur = conn.cursor()
    cur.execute("INSERT INTO u VALUES (10)")
    assert one(cur, "SELECT @@TRANCOUNT")[0] >= 1
    conn.rollback()
    cur.execute("INSERT INTO u VALUES (20)")
    conn.commit()
    cur.execute("INSERT INTO u VALUES (30)")
    conn.rollback()
    conn.close()
    conn = connect(database=DB)
    cur = conn.cursor()
    cur.execute("SELECT k FROM u ORDER BY k")
    vals = [r[0] for r in cur.fetchall()]
    assert vals == [1, 20], vals
    conn.close()
    ok("transactions")


def check_timeout():
    conn = connect(timeout=1, database=DB)
    cur = conn.cursor()
    start = time.time()
    try:
        cur.execute("WAITFOR DELAY '00:00:05'")
        if DRIVER == "mssql_python":
            cur.fetchall()
        raise AssertionError("no timeout")
    except AssertionError:
        raise
    except Exception as e:  # noqa: BLE001
        print("  timeout as seen by the client:", repr(e)[:160], flush=True)
    assert time.time() - start < 4, "server did not stop on ATTENTION"
    cur = conn.cursor()
    assert one(cur, "SELECT COUNT(*) FROM u")[0] == 2
    conn.close()
    ok("timeout_then_reuse")


def main():
    check_login_failure()
    conn = connect()
    cur = conn.cursor()
    check_setup(cur)
    check_select(cur)
    check_params(cur)
    check_errors(cur)
    conn.close()
    check_transactions()
    if DRIVER != "pymssql":  # db-lib marks the connection dead after a timeout
        check_timeout()
    print("ALL OK", flush=True)


main()
