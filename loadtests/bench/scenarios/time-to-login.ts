// S3: how long a caller waits from sending allocate until the tenant can log in, against doing
// the same by hand (RAW-CREATE: CREATE ROLE + CREATE DATABASE as admin, then the login). One
// client, sequential; S3 and RAW samples alternate (and alternate which goes first) on the
// server S3 landed on, so drift on the server (WAL, checkpoints, catalog size) hits both alike.
import { randomUUID } from 'node:crypto';
import type { Allocated } from '@tenantdb/contracts';
import { tenantSsl } from '@tenantdb/testkit';
import type pg from 'pg';
import { httpError } from '../api';
import type { BenchContext, Scenario } from '../context';
import { describeError, summarize } from '../load';
import { connectPg, endAll } from '../pg';
import { fmtMs, type ResultRow } from '../report';
import type { PoolServer } from '../stack';
import { adminClient, dropRaw, rawNames } from './allocate';

const TARGET_MS = 15;

interface Timing {
  total: number;
  /** allocate answer (S3) or the two CREATE statements (RAW). */
  create: number;
  login: number;
}

/** Logs in and runs SELECT 1; the caller stops its clock, then closes the returned client. */
async function loginAndSelect(c: pg.ClientConfig): Promise<pg.Client> {
  const client = await connectPg(c);
  try {
    await client.query('SELECT 1');
    return client;
  } catch (err) {
    await client.end().catch(() => {});
    throw err;
  }
}

export const timeToLogin: Scenario = {
  id: 's3-time-to-login',
  async run(ctx: BenchContext) {
    const { stack, settings } = ctx;
    const admins = new Map<string, pg.Client>();
    const created: { server: PoolServer; role: string; db: string }[] = [];
    const s3: Timing[] = [];
    const raw: Timing[] = [];
    const errors = { s3: new Map<string, number>(), raw: new Map<string, number>() };
    const count = (m: Map<string, number>, e: unknown) => {
      const d = describeError(e);
      m.set(d, (m.get(d) ?? 0) + 1);
    };
    let server: PoolServer | undefined;

    const sampleS3 = async (): Promise<Timing> => {
      const t0 = performance.now();
      const res = await stack.api.post<Allocated>('/api/database/allocate', {
        instance_id: randomUUID(),
        customer_id: randomUUID(),
        plan_tier: 'standard',
      });
      if (res.status !== 200) throw new Error(httpError(res));
      const t1 = performance.now();
      const tenant = await loginAndSelect({
        host: res.body.db_host,
        port: res.body.db_port,
        database: res.body.db_name,
        user: res.body.db_user,
        password: res.body.db_password,
        ssl: tenantSsl(res.body),
      });
      const t2 = performance.now();
      await tenant.end();
      server = stack.pools.find((p) => p.id === res.body.db_server_id);
      return { total: t2 - t0, create: t1 - t0, login: t2 - t1 };
    };

    const sampleRaw = async (): Promise<Timing> => {
      const target = server ?? stack.pools[0]!;
      let admin = admins.get(target.id);
      if (!admin) {
        // A warm admin session, as the service keeps a warm pool per server.
        admin = await adminClient(target);
        admins.set(target.id, admin);
      }
      const n = rawNames();
      const t0 = performance.now();
      await admin.query(`CREATE ROLE "${n.role}" LOGIN PASSWORD '${n.password}'`);
      created.push({ server: target, role: n.role, db: n.db });
      await admin.query(`CREATE DATABASE "${n.db}" OWNER "${n.role}"`);
      const t1 = performance.now();
      const tenant = await loginAndSelect({
        host: target.host,
        port: target.port,
        database: n.db,
        user: n.role,
        password: n.password,
      });
      const t2 = performance.now();
      await tenant.end();
      return { total: t2 - t0, create: t1 - t0, login: t2 - t1 };
    };

    try {
      const rounds = settings.warmupSamples + settings.samples;
      for (let i = 0; i < rounds; i++) {
        const record = i >= settings.warmupSamples;
        const runS3 = async () => {
          try {
            const t = await sampleS3();
            if (record) s3.push(t);
          } catch (err) {
            if (record) count(errors.s3, err);
          }
        };
        const runRaw = async () => {
          try {
            const t = await sampleRaw();
            if (record) raw.push(t);
          } catch (err) {
            if (record) count(errors.raw, err);
          }
        };
        if (i % 2 === 0) {
          await runS3();
          await runRaw();
        } else {
          await runRaw();
          await runS3();
        }
      }
    } finally {
      await endAll(admins.values());
      await dropRaw(created);
    }

    const total = (ts: Timing[]) => summarize(ts.map((t) => t.total));
    const part = (ts: Timing[], k: 'create' | 'login') => summarize(ts.map((t) => t[k])).p50;
    const s3Sum = total(s3);
    const rawSum = total(raw);
    const errorsOf = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
    const delta = s3Sum.p50 - rawSum.p50;
    ctx.state.rawCreateLoginP50 = rawSum.p50;
    const rows: ResultRow[] = [
      {
        name: 'RAW-CREATE role + db + login (pg)',
        requests: raw.length,
        p50Ms: rawSum.p50,
        p95Ms: rawSum.p95,
        p99Ms: rawSum.p99,
        errors: errorsOf(errors.raw),
        verdict: 'info',
      },
      {
        name: 'S3 allocate → tenant login',
        requests: s3.length,
        p50Ms: s3Sum.p50,
        p95Ms: s3Sum.p95,
        p99Ms: s3Sum.p99,
        errors: errorsOf(errors.s3),
        baseline: `RAW-CREATE p50 ${fmtMs(rawSum.p50)}`,
        comparison: `Δp50 ${delta >= 0 ? '+' : ''}${delta.toFixed(1)} ms; Δp99 ${(s3Sum.p99 - rawSum.p99).toFixed(1)} ms`,
        target: `Δp50 ≤ ${TARGET_MS} ms, no errors`,
        verdict: delta <= TARGET_MS && errorsOf(errors.s3) === 0 && s3.length > 0 ? 'PASS' : 'FAIL',
      },
    ];
    const fmt = (m: Map<string, number>, what: string) => [...m].map(([d, n]) => `${what} error ×${n}: ${d}`);
    return {
      id: 's3-time-to-login',
      title: 'S3: time from allocate to a working tenant login',
      rows,
      notes: [
        `One client, sequential: ${settings.warmupSamples} unrecorded warm-up rounds, then ${settings.samples} ` +
          'rounds of one S3 and one RAW sample each, alternating which goes first, both on the pool server S3 placed on.',
        'S3: POST /api/database/allocate (new instance, plan "standard") until a tenant pg.Client with the returned ' +
          'credentials has connected and `SELECT 1` answered. RAW: on a warm admin session, CREATE ROLE … LOGIN ' +
          'PASSWORD, CREATE DATABASE … OWNER, then the same login + `SELECT 1`. RAW databases are dropped afterwards.',
        `Split of the p50s — S3: allocate answer ${fmtMs(part(s3, 'create'))}, login ${fmtMs(part(s3, 'login'))}; ` +
          `RAW: DDL ${fmtMs(part(raw, 'create'))}, login ${fmtMs(part(raw, 'login'))}.`,
        `S3 mean ${fmtMs(s3Sum.mean)}, p90 ${fmtMs(s3Sum.p90)}; RAW mean ${fmtMs(rawSum.mean)}, p90 ${fmtMs(rawSum.p90)}. ` +
          `With ${settings.samples} samples p99 is the slowest sample.`,
        'The service does more than RAW by design (§5): the catalog reservation transaction, a SCRAM verifier ' +
          'computed in Node, the database created closed, REVOKE/GRANT, reopening it, and marking the row ready.',
        ...fmt(errors.s3, 'S3'),
        ...fmt(errors.raw, 'RAW'),
      ],
    };
  },
};
