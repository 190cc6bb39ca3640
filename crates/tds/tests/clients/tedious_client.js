// Exercises tedious against the test server. usage: node tedious_client.js <port> <encrypt:0|1>
const path = require('path');
const { Connection, Request, TYPES } = require(path.join(process.env.NODE_MODULES_DIR, 'tedious'));
const assert = require('assert');

const port = Number(process.argv[2]);
const encrypt = process.argv[3] === '1';
const BIG = 'abcdefghij'.repeat(500);

function connect(password) {
  return new Promise((resolve, reject) => {
    const c = new Connection({
      server: '127.0.0.1',
      authentication: { type: 'default', options: { userName: 'sa', password } },
      options: { port, database: 'testdb', encrypt, trustServerCertificate: true, requestTimeout: 1500, connectTimeout: 10000 },
    });
    c.on('connect', (err) => (err ? reject(err) : resolve(c)));
    c.connect();
  });
}

function query(c, sql, params = [], rpc = true) {
  return new Promise((resolve, reject) => {
    const rows = [];
    const req = new Request(sql, (err) => (err ? reject(err) : resolve(rows)));
    for (const [name, type, value, opts] of params) req.addParameter(name, type, value, opts);
    req.on('row', (cols) => { const r = {}; cols.forEach((col, i) => { r[col.metadata.colName || `c${i}`] = col.value; }); rows.push(r); });
    if (rpc) c.execSql(req); else c.execSqlBatch(req);
  });
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
  const c = await connect('Secret123!');

  for (const rpc of [false, true]) {
    const [r] = await query(c, 'select types', [], rpc);
    assert.strictEqual(r.c_int, -123456);
    assert.strictEqual(String(r.c_bigint), '1234567890123');
    assert.strictEqual(r.c_bit, true);
    assert.strictEqual(r.c_decimal, 12345.6789);
    assert.strictEqual(r.c_float, 3.5);
    assert.strictEqual(r.c_nvarchar, 'héllo wörld ✓ 日本');
    assert.strictEqual(r.c_nvarcharmax, BIG);
    assert.deepStrictEqual([...r.c_varbinary], [0xde, 0xad, 0xbe, 0xef, 0]);
    assert.strictEqual(r.c_guid.toUpperCase(), '6F9619FF-8B86-D011-B42D-00C04FC964FF');
    assert.strictEqual(r.c_datetime2.toISOString(), '2024-02-29T13:45:07.123Z');
    assert.strictEqual(r.c_date.toISOString().slice(0, 10), '2024-02-29');
    assert.strictEqual(r.c_null, null);
    assert.strictEqual(r.c_nullstr, null);
  }
  pass('types');

  const [e] = await query(c, 'select echo @a, @b, @c, @d, @e, @f', [
    ['a', TYPES.Int, 42], ['b', TYPES.NVarChar, 'ünïcode ✓'], ['c', TYPES.NVarChar, BIG],
    ['d', TYPES.Decimal, 12.5, { precision: 10, scale: 2 }], ['e', TYPES.UniqueIdentifier, '6F9619FF-8B86-D011-B42D-00C04FC964FF'],
    ['f', TYPES.Bit, null],
  ]);
  assert.strictEqual(e.a, 42);
  assert.strictEqual(e.b, 'ünïcode ✓');
  assert.strictEqual(e.c, BIG);
  assert.strictEqual(e.d, 12.5);
  assert.strictEqual(e.e.toUpperCase(), '6F9619FF-8B86-D011-B42D-00C04FC964FF');
  assert.strictEqual(e.f, null);
  pass('params');

  try {
    await query(c, 'raiserror');
    throw new Error('no error');
  } catch (err) {
    assert.strictEqual(err.number, 50000);
    assert.strictEqual(err.class, 16);
    assert.strictEqual(err.state, 3);
    pass('error');
  }

  // ATTENTION: the request times out, tedious sends ATTENTION and waits for DONE(ATTN).
  try {
    await query(c, 'waitfor delay', [], false);
    throw new Error('no timeout');
  } catch (err) {
    assert.strictEqual(err.code, 'ETIMEOUT', String(err));
    pass('timeout_attention');
  }
  const [one] = await query(c, 'select 1');
  assert.strictEqual(Object.values(one)[0], 1);
  pass('usable_after_attention');

  // transactions: tedious uses Transaction Manager requests
  await new Promise((res, rej) => c.beginTransaction((err) => (err ? rej(err) : res())));
  await query(c, 'insert 1');
  await new Promise((res, rej) => c.rollbackTransaction((err) => (err ? rej(err) : res())));
  await new Promise((res, rej) => c.beginTransaction((err) => (err ? rej(err) : res())));
  await query(c, 'insert 2');
  await new Promise((res, rej) => c.commitTransaction((err) => (err ? rej(err) : res())));
  const rows = await query(c, 'select rows');
  assert.deepStrictEqual(rows.map((r) => String(r.v)), ['2']);
  pass('transaction');
  c.close();
  console.log('ALL OK');
})().catch((e) => { console.error('FAIL', e); process.exit(1); });
