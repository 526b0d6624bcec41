// node-postgres ("pg") in its default configuration through pgswitch.
// Output and environment as tests/drivers/common.py describes. Defaults that
// matter to a proxy: query(text) is a simple Query; query(text, values) is an
// unnamed Parse/Bind/Describe/Execute/Sync; query({name, text, values}) parses
// the named statement in the same request as its first Bind, then only Binds.
'use strict'
const path = require('path')
const { Client } = require(path.join(process.env.NODE_MODULES_DIR || path.join(__dirname, 'node', 'node_modules'), 'pg'))
const fs = require('fs')

const env = process.env
const HOST = env.PGSW_HOST || '127.0.0.1'
const proxy = { host: HOST, port: +(env.PGSW_PORT || 6432), user: env.PGSW_USER || 'app', password: env.PGSW_PASSWORD || 'app', database: env.PGSW_DB || 'app' }
const direct = { host: HOST, port: +env.PRIMARY_PORT, user: env.SUPERUSER || 'postgres', password: env.SUPERPASS || 'postgres', database: env.PGSW_DB || 'app' }
const PRIMARY = +env.PRIMARY_PORT
const REPLICAS = new Set((env.REPLICA_PORTS || '').split(',').filter(Boolean).map(Number))
const WANTED = new Set((env.SCENARIOS || '').split(',').filter(Boolean))
const TABLE = 'drv_node'

class Failed extends Error {}
const check = (cond, why) => { if (!cond) throw new Failed(why) }
const name = (p) => (p === PRIMARY ? 'primary' : REPLICAS.has(p) ? `replica:${p}` : `unknown:${p}`)
const tally = (ports) => {
  const m = {}
  for (const p of ports) m[name(p)] = (m[name(p)] || 0) + 1
  return Object.keys(m).sort().map((k) => `${k}=${m[k]}`).join(' ')
}
const allOnReplicas = (ports, what) => {
  check(ports.length > 0, `${what}: nothing ran`)
  const onPrimary = ports.filter((p) => p === PRIMARY).length
  check(onPrimary === 0, `${what}: ${onPrimary} of ${ports.length} on the primary (${tally(ports)})`)
  check(ports.every((p) => REPLICAS.has(p)), `${what}: ran on an unknown server (${tally(ports)})`)
  if (REPLICAS.size > 1 && ports.length >= 4) check(new Set(ports).size > 1, `${what}: one replica only (${tally(ports)})`)
}
const percentile = (v, q) => { const s = [...v].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(s.length * q))] }
const metric = (k, v) => console.log(`metric ${k} ${v}`)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

async function connect(config = proxy) {
  const c = new Client(config)
  c.on('error', () => {}) // reported where a test looks for it
  await c.connect()
  return c
}
const port = async (c, q, values) => (await c.query(q, values)).rows[0].p

async function setup() {
  const d = await connect(direct)
  await d.query(`DROP TABLE IF EXISTS ${TABLE}; CREATE TABLE ${TABLE} (id int PRIMARY KEY, v text); GRANT ALL ON ${TABLE} TO PUBLIC`)
  await d.end()
}

async function reads() {
  const c = await connect()
  const simple = []; const unnamed = []; const named = []
  for (let i = 0; i < 10; i++) simple.push(await port(c, 'SELECT inet_server_port() AS p'))
  for (let i = 0; i < 10; i++) unnamed.push(await port(c, 'SELECT inet_server_port() AS p, $1::int AS i', [i]))
  for (let i = 0; i < 10; i++) named.push(await port(c, { name: 'drv_read', text: 'SELECT inet_server_port() AS p, $1::int AS i', values: [i] }))
  await c.end()
  allOnReplicas(simple, 'simple query')
  allOnReplicas(unnamed, 'query with values (unnamed statement)')
  allOnReplicas(named, 'named query (first run parses it with its Bind)')
  return `simple ${tally(simple)}; unnamed ${tally(unnamed)}; named ${tally(named)}`
}

async function writes() {
  const c = await connect()
  const ports = []
  for (let i = 0; i < 10; i++) ports.push(await port(c, { name: 'drv_write', text: `INSERT INTO ${TABLE} VALUES ($1, 'w') RETURNING inet_server_port() AS p`, values: [100000 + i] }))
  await c.end()
  check(ports.every((p) => p === PRIMARY), `writes not on the primary: ${tally(ports)}`)
  return tally(ports)
}

async function readAfterWrite() {
  const n = 200
  const c = await connect()
  let onReplica = 0; let stale = 0; const lat = []
  for (let i = 0; i < n; i++) {
    await c.query(`INSERT INTO ${TABLE} VALUES ($1, 'x')`, [i])
    const t = process.hrtime.bigint()
    const r = await c.query({ name: 'drv_ryw', text: `SELECT inet_server_port() AS p, count(*)::int AS n FROM ${TABLE} WHERE id = $1`, values: [i] })
    lat.push(Number(process.hrtime.bigint() - t) / 1000)
    stale += r.rows[0].n !== 1
    onReplica += REPLICAS.has(r.rows[0].p)
  }
  await c.end()
  metric('ryw_replica_share', (onReplica / n).toFixed(3))
  metric('ryw_read_p50_us', percentile(lat, 0.5).toFixed(0))
  metric('ryw_read_p99_us', percentile(lat, 0.99).toFixed(0))
  check(stale === 0, `${stale} of ${n} reads did not see the session's own insert`)
  check(onReplica >= n / 2, `only ${onReplica} of ${n} reads after a write ran on a replica`)
  return `${onReplica}/${n} on replicas, none stale`
}

async function serializableReadOnly() {
  const c = await connect()
  await c.query('BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY')
  const p = await port(c, 'SELECT inet_server_port() AS p')
  await c.query('COMMIT')
  check(p === PRIMARY, `SERIALIZABLE READ ONLY ran on ${name(p)} (a standby refuses it)`)
  const ports = []
  for (let i = 0; i < 4; i++) {
    await c.query('BEGIN READ ONLY')
    ports.push(await port(c, 'SELECT inet_server_port() AS p'))
    await c.query('COMMIT')
  }
  await c.end()
  allOnReplicas(ports, 'READ ONLY (read committed) transactions')
  return `serializable on the primary; read only: ${tally(ports)}`
}

async function functionBehindBack() {
  const fn = `drv_node_fn_${Date.now() % 100000000}`
  const d = await connect(direct)
  await d.query(`CREATE FUNCTION ${fn}(x int) RETURNS int LANGUAGE sql VOLATILE AS 'INSERT INTO ${TABLE} VALUES (200000 + x, ''f'') RETURNING inet_server_port()'`)
  await d.end()
  const c = await connect()
  const ports = []
  for (let i = 0; i < 8; i++) ports.push((await c.query(`SELECT ${fn}($1) AS p`, [i])).rows[0].p)
  await c.end()
  check(ports.every((p) => p === PRIMARY), `calls ran on ${tally(ports)}`)
  return tally(ports)
}

async function namedParseError() {
  // node-postgres gh-issues/600: a named statement whose Parse fails leaves
  // the name free; the same name parses fine afterwards, also pipelined.
  const c = await connect()
  const bad = c.query({ name: 'drv_bad', text: 'SELEC 1 AS p' }).then(() => 'ok', (e) => e.code)
  const good = c.query({ name: 'drv_bad2', text: 'SELECT 2 AS p' }).then((r) => r.rows[0].p, (e) => e.code)
  check(await bad === '42601', `bad statement: ${await bad}`)
  check(await good === 2, `next statement: ${await good}`)
  const again = await c.query({ name: 'drv_bad', text: 'SELECT 3 AS p' })
  check(again.rows[0].p === 3, `re-prepared name: ${JSON.stringify(again.rows)}`)
  await c.end()
  return 'failed Parse freed its name'
}

async function backendPid() {
  const c = await connect()
  const seen = new Set()
  for (let i = 0; i < 4; i++) seen.add((await c.query('SELECT pg_backend_pid() AS p')).rows[0].p)
  await c.end()
  check(seen.size === 1 && seen.has(c.processID), `pg_backend_pid() ${[...seen]}, BackendKeyData ${c.processID}`)
  return `pid ${c.processID}`
}

async function terminateBackend() {
  // gh-issues/130: an idle client hears of its termination without asking.
  const c = new Client(proxy)
  const heard = new Promise((resolve) => { c.on('error', (e) => resolve(`error: ${e.message}`)); c.on('end', () => resolve('end')) })
  await c.connect()
  await c.query('SELECT 1')
  const d = await connect(direct)
  const done = (await d.query('SELECT pg_terminate_backend($1) AS t', [c.processID])).rows[0].t
  await d.end()
  check(done, `pid ${c.processID} is no backend of the primary`)
  const outcome = await Promise.race([heard, sleep(5000).then(() => null)])
  check(outcome !== null, 'an idle client did not hear within 5 s that its connection was terminated')
  return outcome
}

async function failoverLoop(role, stopFile, table) {
  let ok = 0; let errors = 0; let lastError = ''; const acknowledged = []
  let c = await connect()
  for (let i = 1; !fs.existsSync(stopFile); i++) {
    try {
      if (role === 'reader') await c.query('SELECT count(*) FROM pg_class')
      else { await c.query(`INSERT INTO ${table} VALUES ($1, 'f')`, [i]); acknowledged.push(i) }
      ok++
    } catch (e) {
      errors++
      lastError = e.message
      try { await c.end() } catch (_) {}
      try { c = await connect() } catch (_) { await sleep(50) }
    }
    await sleep(2)
  }
  metric('ok', ok)
  metric('errors', errors)
  metric('last_error', JSON.stringify(lastError))
  if (role === 'writer') metric('acknowledged', acknowledged.join(','))
  try { await c.end() } catch (_) {}
}

async function main() {
  if (process.argv[2] === '--failover') return failoverLoop(process.argv[3], process.argv[4], process.argv[5])
  await setup()
  let failures = 0
  for (const [scenario, fn] of [['reads', reads], ['writes', writes], ['read_after_write', readAfterWrite],
    ['serializable_read_only', serializableReadOnly], ['function_behind_back', functionBehindBack],
    ['named_parse_error', namedParseError], ['backend_pid', backendPid], ['terminate_backend', terminateBackend]]) {
    if (WANTED.size && !WANTED.has(scenario)) continue
    const started = Date.now()
    try {
      const detail = (await fn()) || ''
      console.log(`scenario ${scenario} ok ${detail} (${((Date.now() - started) / 1000).toFixed(2)}s)`)
    } catch (e) {
      failures++
      console.log(`scenario ${scenario} FAIL ${e instanceof Failed ? e.message : `${e.name}: ${e.message}`}`)
      if (!(e instanceof Failed)) console.log(e.stack)
    }
  }
  process.exitCode = failures ? 1 : 0
}
main().catch((e) => { console.log(`scenario main FAIL ${e.stack}`); process.exitCode = 1 })
