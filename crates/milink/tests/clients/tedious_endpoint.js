// Exercises tedious against a real `milink serve`: encrypt true (trustServerCertificate true), or false with
// TEDIOUS_ENCRYPT=false.
// usage: node tedious_endpoint.js <port>   (NODE_MODULES_DIR points at the folder holding tedious)
const path = require('path');
const { Connection, Request, TYPES } = require(path.join(process.env.NODE_MODULES_DIR, 'tedious'));
const assert = require('assert');

const port = Number(process.argv[2]);
const DB = 'db_tedious';
const TEXT = 'héllo wörld ✓ 日本';
const BIG = 'ünïcode ✓ '.repeat(700);
const ENCRYPT = process.env.TEDIOUS_ENCRYPT !== 'false';

function connect(password, database = 'master', requestTimeout = 15000) {
  return new Promise((resolve, reject) => {
    const c = new Connection({
      server: '127.0.0.1',
      authentication: { type: 'default', options: { userName: 'sa', password } },
      options: { port, database, encrypt: ENCRYPT, trustServerCertificate: true, requestTimeout, connectTimeout: 10000 },
    });
    c.on('connect', (err) => (err ? reject(err) : resolve(c)));
    c.connect();
  });
}

// Runs one request; resolves { rows, rowCount, meta }. rpc=false uses a SQL batch.
function query(c, sql, params = [], rpc = true) {
  return new Promise((resolve, reject) => {
    const rows = [];
    let meta = [];
    const req = new Request(sql, (err, rowCount) => (err ? reject(err) : resolve({ rows, rowCount, meta })));
    for (const [name, type, value, opts] of params) req.addParameter(name, type, value, opts);
    req.on('columnMetadata', (cols) => { meta = cols; });
    req.on('row', (cols) => { const r = {}; cols.forEach((col, i) => { r[col.metadata.colName || `c${i}`] = col.value; }); rows.push(r); });
    if (rpc) c.execSql(req); else c.execSqlBatch(req);
  });
}

function tran(c, what) {
  return new Promise((res, rej) => c[what]((err) => (err ? rej(err) : res())));
}

async function expectError(c, sql, number, text) {
  try {
    await query(c, sql);
  } catch (e) {
    console.log(`  error ${number} as seen by the client: ${e.message}`);
    assert.strictEqual(e.number, number, String(e));
    assert.ok(String(e.message).includes(text), String(e.message));
    return;
  }
  throw new Error('no error from ' + sql);
}

function pass(n) { console.log('PASS ' + n); }

(async () => {
  try {
    await connect('wrong');
    throw new Error('wrong password accepted');
  } catch (e) {
    assert.match(String(e.message), /Login failed/);
    pass('login_failure');
  }

  let c = await connect('Secret123!');
  await query(c, `CREATE DATABASE ${DB}`, [], false);
  await query(c, `USE ${DB}`, [], false);
  assert.strictEqual((await query(c, 'SELECT DB_NAME() AS d')).rows[0].d, DB);
  await query(c, `CREATE TABLE t (
      id INT IDENTITY(1,1) PRIMARY KEY, name NVARCHAR(50) NOT NULL, amount DECIMAL(10,2), flag BIT,
      at DATETIME2, g UNIQUEIDENTIFIER, b VARBINARY(MAX), txt NVARCHAR(MAX))`, [], false);
  const ins = await query(c, `INSERT INTO t (name, amount, flag, at, g, b, txt) VALUES
      (N'${TEXT}', 12345678.91, 1, '2024-02-29 13:45:07.1234567', '6F9619FF-8B86-D011-B42D-00C04FC964FF', 0xDEADBEEF0001, N'${BIG}'),
      (N'nulls', NULL, NULL, NULL, NULL, NULL, NULL),
      (N'third', -0.05, 0, '1999-12-31 23:59:59', NEWID(), 0x, N'')`, [], false);
  assert.strictEqual(ins.rowCount, 3);
  pass('create_database_table_insert');

  for (const rpc of [false, true]) {
    const { rows, meta } = await query(c, 'SELECT id, name, amount, flag, at, g, b, txt FROM t ORDER BY id', [], rpc);
    assert.deepStrictEqual(meta.map((m) => m.colName), ['id', 'name', 'amount', 'flag', 'at', 'g', 'b', 'txt']);
    assert.deepStrictEqual(meta.map((m) => m.type.name),
      ['IntN', 'NVarChar', 'DecimalN', 'BitN', 'DateTime2', 'UniqueIdentifier', 'VarBinary', 'NVarChar']);
    assert.strictEqual(meta[2].precision, 10);
    assert.strictEqual(meta[2].scale, 2);
    assert.strictEqual(rows.length, 3);
    const r = rows[0];
    assert.strictEqual(r.id, 1);
    assert.strictEqual(r.name, TEXT);
    assert.strictEqual(r.amount, 12345678.91);
    assert.strictEqual(r.flag, true);
    assert.strictEqual(r.at.toISOString(), '2024-02-29T13:45:07.123Z');
    assert.strictEqual(r.g.toUpperCase(), '6F9619FF-8B86-D011-B42D-00C04FC964FF');
    assert.deepStrictEqual([...r.b], [0xde, 0xad, 0xbe, 0xef, 0, 1]);
    assert.strictEqual(r.txt, BIG);
    const n = rows[1];
    for (const k of ['amount', 'flag', 'at', 'g', 'b', 'txt']) assert.strictEqual(n[k], null, k);
    assert.strictEqual(rows[2].amount, -0.05);
    assert.strictEqual(rows[2].flag, false);
    assert.strictEqual(rows[2].txt, '');
  }
  pass('select_types');

  // parameters: sp_executesql with typed, named parameters
  const p = await query(c, 'SELECT name, amount FROM t WHERE id = @id AND name = @name', [
    ['id', TYPES.Int, 1], ['name', TYPES.NVarChar, TEXT]]);
  assert.strictEqual(p.rows.length, 1);
  assert.strictEqual(p.rows[0].amount, 12345678.91);
  const pi = await query(c, 'INSERT INTO t (name, amount, flag, g, txt) VALUES (@n, @a, @f, @g, @t)', [
    ['n', TYPES.NVarChar, 'p ✓'], ['a', TYPES.Decimal, 1.25, { precision: 10, scale: 2 }], ['f', TYPES.Bit, null],
    ['g', TYPES.UniqueIdentifier, '6F9619FF-8B86-D011-B42D-00C04FC964FF'], ['t', TYPES.NVarChar, BIG]]);
  assert.strictEqual(pi.rowCount, 1);
  const pr = (await query(c, 'SELECT amount, flag, txt, SCOPE_IDENTITY() AS si FROM t WHERE name = @n', [['n', TYPES.NVarChar, 'p ✓']])).rows[0];
  assert.strictEqual(pr.amount, 1.25);
  assert.strictEqual(pr.flag, null);
  assert.strictEqual(pr.txt, BIG);
  // an OUTPUT parameter comes back as RETURNVALUE
  const outs = {};
  await new Promise((resolve, reject) => {
    const r = new Request('SET @doubled = @in * 2; SET @name = (SELECT name FROM t WHERE id = 1)', (err) => (err ? reject(err) : resolve()));
    r.addParameter('in', TYPES.Int, 21);
    r.addOutputParameter('doubled', TYPES.Int);
    r.addOutputParameter('name', TYPES.NVarChar, null, { length: 50 });
    r.on('returnValue', (n, v) => { outs[n] = v; });
    c.execSql(r);
  });
  assert.deepStrictEqual(outs, { doubled: 42, name: TEXT });
  pass('params');

  await query(c, 'CREATE TABLE u (k INT PRIMARY KEY)', [], false);
  await query(c, 'INSERT INTO u VALUES (1)');
  await expectError(c, 'INSERT INTO u VALUES (1)', 2627, 'Violation of PRIMARY KEY constraint');
  await expectError(c, 'SELECT 1/0', 8134, 'Divide by zero');
  await expectError(c, 'SELECT * FROM no_such_table', 208, "Invalid object name 'no_such_table'");
  assert.strictEqual(Object.values((await query(c, 'SELECT COUNT(*) FROM u')).rows[0])[0], 1);
  pass('errors');

  // PRINT and RAISERROR(…, 10, …) arrive as informational messages with their line numbers
  const infos = [];
  const onInfo = (m) => infos.push(m);
  c.on('infoMessage', onInfo);
  await query(c, "SELECT 1 AS one\nPRINT N'printed ✓'\nRAISERROR('warned %d', 10, 2, 7)", [], false);
  c.removeListener('infoMessage', onInfo);
  const pm = infos.find((m) => m.message === 'printed ✓');
  assert.ok(pm, JSON.stringify(infos));
  assert.deepStrictEqual([pm.number, pm.class, pm.lineNumber], [0, 0, 2]);
  const rw = infos.find((m) => m.message === 'warned 7');
  assert.ok(rw, JSON.stringify(infos));
  assert.deepStrictEqual([rw.number, rw.class, rw.state, rw.lineNumber], [50000, 10, 2, 3]);
  pass('info_messages');

  // transactions: tedious uses Transaction Manager requests
  await tran(c, 'beginTransaction');
  await query(c, 'INSERT INTO u VALUES (10)');
  assert.strictEqual(Object.values((await query(c, 'SELECT @@TRANCOUNT')).rows[0])[0], 1);
  await tran(c, 'rollbackTransaction');
  await tran(c, 'beginTransaction');
  await query(c, 'INSERT INTO u VALUES (20)');
  await tran(c, 'commitTransaction');
  const ks = (await query(c, 'SELECT k FROM u ORDER BY k')).rows.map((r) => r.k);
  assert.deepStrictEqual(ks, [1, 20]);
  pass('transactions');
  c.close();

  // cancel: a 1 s request timeout sends ATTENTION; the connection is reused afterwards
  c = await connect('Secret123!', DB, 1000);
  const start = Date.now();
  try {
    await query(c, "WAITFOR DELAY '00:00:05'", [], false);
    throw new Error('no timeout');
  } catch (err) {
    assert.strictEqual(err.code, 'ETIMEOUT', String(err));
  }
  assert.ok(Date.now() - start < 4000, 'server did not stop on ATTENTION');
  assert.strictEqual(Object.values((await query(c, 'SELECT COUNT(*) FROM u')).rows[0])[0], 2);
  pass('timeout_then_reuse');
  c.close();
  console.log('ALL OK');
})().catch((e) => { console.error('FAIL', e); process.exit(1); });
