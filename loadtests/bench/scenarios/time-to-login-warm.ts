// S3-warm: allocate → tenant login when the pool holds a warm database, so the service claims it
// (ALTER ROLE … PASSWORD, ALTER DATABASE … CONNECTION LIMIT) instead of creating one. Against
// RAW-CLAIM: the same two statements on a warm role + database of the bench's own on the same
// server, then the same login. One client, sequential; S3-warm and RAW samples alternate (and
// alternate which goes first). Between rounds, outside the clocks, the pool is refilled to its
// full warm stock, so every sample finds one and no refill runs while a clock does.
import { randomUUID } from 'node:crypto';
import type { Allocated } from '@tenantdb/contracts';
import { claimWarmBatch, createWarmStatements } from '@tenantdb/pool-server';
import { generatePassword, scramSha256Verifier } from '@tenantdb/secrets';
import { tenantSsl } from '@tenantdb/testkit';
import type pg from 'pg';
import { httpError } from '../api';
import { type AdminTarget, connectCatalog, readyWarm, waitFor } from '../catalog';
import type { BenchContext, Scenario, WarmFleet } from '../context';
import { describeError, summarize } from '../load';
import { connectPg, endAll } from '../pg';
import { fmtMs, type ResultRow } from '../report';
import { adminClient, rawNames } from './allocate';

const TARGET_P50_MS = 15;
const TARGET_P99_MS = 40;

interface Timing {
  total: number;
  /** allocate answer (S3-warm) or the two ALTER statements (RAW). */
  claim: number;
  login: number;
}

/** Logs in and runs SELECT 1, like S3. */
async function login(c: pg.ClientConfig): Promise<void> {
  const client = await connectPg(c);
  try {
    await client.query('SELECT 1');
  } finally {
    await client.end().catch(() => {});
  }
}

export async function requireFleet(ctx: BenchContext): Promise<WarmFleet> {
  const fleet = ctx.state.fleet;
  if (!fleet) throw new Error('no warm fleet: the warm-fleet scenario did not complete');
  if (!fleet.worker.alive()) throw new Error('the warm fleet’s database-worker has exited');
  return fleet;
}

/** The connection limit of the plan the scenarios allocate with ("standard"). */
export async function standardConnectionLimit(catalog: pg.Client): Promise<number> {
  const { rows } = await catalog.query<{ connection_limit: number }>(
    `SELECT connection_limit FROM plans WHERE plan_tier = 'standard'`,
  );
  if (!rows[0]) throw new Error('plan "standard" is missing from the catalog');
  return rows[0].connection_limit;
}

/** A warm role + database of the bench's own, made with the worker's statements (NOLOGIN role). */
export async function makeRawWarm(admin: pg.Client): Promise<{ role: string; db: string }> {
  const n = rawNames();
  const passwordVerifier = await scramSha256Verifier(generatePassword());
  for (const statement of createWarmStatements({ dbName: n.db, dbUser: n.role, passwordVerifier }))
    await admin.query(statement);
  return { role: n.role, db: n.db };
}

/**
 * The service's claim statements with a plaintext password: Postgres derives the SCRAM verifier
 * itself (password_encryption = scram-sha-256), the hashing the service does in Node instead.
 */
export function rawClaimBatch(warm: { role: string; db: string }, password: string, limit: number) {
  return claimWarmBatch({
    dbName: warm.db,
    dbUser: warm.role,
    passwordVerifier: password,
    connectionLimit: limit,
  });
}

export const timeToLoginWarm: Scenario = {
  id: 's3-warm-time-to-login',
  needs: ['s3-time-to-login', 'warm-fleet'],
  async run(ctx: BenchContext) {
    const { stack, settings } = ctx;
    const fleet = await requireFleet(ctx);
    const catalog = await connectCatalog(stack);
    const admins = new Map<string, pg.Client>();
    const s3: Timing[] = [];
    const raw: Timing[] = [];
    const instances: string[] = [];
    const landed = new Map<string, number>();
    const errors = { s3: new Map<string, number>(), raw: new Map<string, number>() };
    const count = (m: Map<string, number>, e: unknown) => {
      const d = describeError(e);
      m.set(d, (m.get(d) ?? 0) + 1);
    };
    let server: AdminTarget | undefined;
    let refills = 0;

    const adminFor = async (target: AdminTarget) => {
      let admin = admins.get(target.id);
      if (!admin) {
        // A warm admin session, as the service keeps a warm pool per server.
        admin = await adminClient(target);
        admins.set(target.id, admin);
      }
      return admin;
    };

    /** Outside the clocks: the pool back at its full warm stock (the refill job, per pool). */
    const refill = async (target: AdminTarget) => {
      let enqueuedAt = 0;
      await waitFor(
        async () => {
          if ((await readyWarm(catalog, [target.id])).get(target.id)! >= fleet.warmPerPool) return true;
          // Re-enqueued now and then: an add lands as a no-op while the previous run is finishing.
          if (performance.now() - enqueuedAt > 500) {
            enqueuedAt = performance.now();
            await stack.queues.enqueue('refill-warm-databases', { server_id: target.id });
            refills++;
          }
          return false;
        },
        { timeoutMs: 30_000, what: `the warm stock of ${target.name}`, intervalMs: 10, worker: fleet.worker },
      );
    };

    const limit = await standardConnectionLimit(catalog);
    // What the service spends in Node per claim, on its own (outside the clocks).
    const v0 = performance.now();
    for (let i = 0; i < 10; i++) await scramSha256Verifier(generatePassword());
    const scramMs = (performance.now() - v0) / 10;
    ctx.state.scramVerifierMs = scramMs;

    const sampleS3 = async (): Promise<Timing> => {
      const instance = randomUUID();
      const t0 = performance.now();
      const res = await stack.api.post<Allocated>('/api/database/allocate', {
        instance_id: instance,
        customer_id: randomUUID(),
        plan_tier: 'standard',
      });
      if (res.status !== 200) throw new Error(httpError(res));
      const t1 = performance.now();
      await login({
        host: res.body.db_host,
        port: res.body.db_port,
        database: res.body.db_name,
        user: res.body.db_user,
        password: res.body.db_password,
        ssl: tenantSsl(res.body),
      });
      const t2 = performance.now();
      instances.push(instance);
      server = fleet.pools.find((p) => p.id === res.body.db_server_id);
      if (!server) throw new Error(`allocated on ${res.body.db_server_id}, not on a warm-fleet pool`);
      landed.set(server.name, (landed.get(server.name) ?? 0) + 1);
      return { total: t2 - t0, claim: t1 - t0, login: t2 - t1 };
    };

    const sampleRaw = async (): Promise<Timing> => {
      const target = server ?? fleet.pools[0]!;
      const admin = await adminFor(target);
      const warm = await makeRawWarm(admin);
      const password = generatePassword();
      const t0 = performance.now();
      await admin.query(rawClaimBatch(warm, password, limit));
      const t1 = performance.now();
      await login({ host: target.host, port: target.port, database: warm.db, user: warm.role, password });
      const t2 = performance.now();
      return { total: t2 - t0, claim: t1 - t0, login: t2 - t1 };
    };

    let warmClaims = 0;
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
          if (server) await refill(server);
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
      // Which allocations claimed a warm database, from the service's own audit trail.
      const recorded = s3.length ? instances.slice(-s3.length) : [];
      const { rows } = await catalog.query<{ warm: number }>(
        `SELECT count(*) FILTER (WHERE (details->>'warm')::boolean)::int AS warm
           FROM audit_events WHERE action = 'allocation.reserve' AND instance_id = ANY($1::uuid[])`,
        [recorded],
      );
      warmClaims = rows[0]!.warm;
    } finally {
      // The RAW roles and databases stay: the pools go at teardown, and dropping each would cost
      // a checkpoint (seconds each on this disk).
      await endAll(admins.values());
      await catalog.end();
    }

    const total = (ts: Timing[]) => summarize(ts.map((t) => t.total));
    const part = (ts: Timing[], k: 'claim' | 'login') => summarize(ts.map((t) => t[k])).p50;
    const s3Sum = total(s3);
    const rawSum = total(raw);
    const errorsOf = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
    const signed = (n: number) => `${n >= 0 ? '+' : ''}${n.toFixed(1)} ms`;
    const create = ctx.state.rawCreateLoginP50;
    const allWarm = warmClaims === s3.length && s3.length > 0;
    const rows: ResultRow[] = [
      {
        name: 'RAW-CLAIM role + db + login (pg)',
        requests: raw.length,
        p50Ms: rawSum.p50,
        p95Ms: rawSum.p95,
        p99Ms: rawSum.p99,
        errors: errorsOf(errors.raw),
        verdict: 'info',
      },
      {
        name: 'S3-warm allocate → tenant login',
        requests: s3.length,
        p50Ms: s3Sum.p50,
        p95Ms: s3Sum.p95,
        p99Ms: s3Sum.p99,
        errors: errorsOf(errors.s3),
        baseline:
          `RAW-CLAIM p50 ${fmtMs(rawSum.p50)}` +
          (create === undefined ? '' : `; RAW-CREATE + login p50 ${fmtMs(create)}`),
        comparison:
          `Δp50 ${signed(s3Sum.p50 - rawSum.p50)} vs RAW-CLAIM` +
          (create === undefined ? '' : `; ${signed(s3Sum.p50 - create)} vs RAW-CREATE`),
        target: `p50 ≤ ${TARGET_P50_MS} ms, p99 ≤ ${TARGET_P99_MS} ms, all warm, no errors`,
        verdict:
          s3Sum.p50 <= TARGET_P50_MS && s3Sum.p99 <= TARGET_P99_MS && errorsOf(errors.s3) === 0 && allWarm
            ? 'PASS'
            : 'FAIL',
      },
    ];
    const fmt = (m: Map<string, number>, what: string) => [...m].map(([d, n]) => `${what} error ×${n}: ${d}`);
    return {
      id: 's3-warm-time-to-login',
      title: 'S3-warm: time from allocate to a working tenant login, claiming a warm database',
      rows,
      notes: [
        `One client, sequential: ${settings.warmupSamples} unrecorded warm-up rounds, then ${settings.samples} ` +
          'rounds of one S3-warm and one RAW sample each, alternating which goes first, both on the warm-fleet ' +
          `pool S3-warm placed on (${[...landed].map(([n, c]) => `${n} ×${c}`).join(', ')}).`,
        'S3-warm: POST /api/database/allocate (new instance, plan "standard") until a tenant pg.Client with the ' +
          'returned credentials has connected and `SELECT 1` answered, as in S3. ' +
          `${warmClaims} of the ${s3.length} recorded allocations claimed a warm database (audit_events ` +
          '`allocation.reserve`, details.warm).',
        'RAW-CLAIM: on a warm admin session, the service’s own claim batch (`claimWarmBatch`, one round trip: ALTER ' +
          `ROLE … WITH LOGIN CONNECTION LIMIT ${limit} PASSWORD …; ALTER DATABASE … WITH CONNECTION LIMIT ${limit}; the ` +
          'service renames nothing) on a warm role + database the bench made beforehand with the worker’s ' +
          'statements, then the same login. The password is sent in plain text so that Postgres derives the SCRAM ' +
          'verifier itself: the same hashing the service does in Node before it sends a verifier.',
        `Split of the p50s — S3-warm: allocate answer ${fmtMs(part(s3, 'claim'))}, login ${fmtMs(part(s3, 'login'))}; ` +
          `RAW-CLAIM: ALTERs ${fmtMs(part(raw, 'claim'))}, login ${fmtMs(part(raw, 'login'))}.`,
        `The tenant login alone took ${fmtMs(part(s3, 'login'))} (p50; RAW ${fmtMs(part(raw, 'login'))}): a new ` +
          'backend plus the client’s SCRAM proof, which derives the salted password with 4,096 PBKDF2 iterations — ' +
          `the same derivation the service runs for each claim’s verifier, ${fmtMs(scramMs)} here in Node, one at a ` +
          `time. The login is ${part(s3, 'login') > TARGET_P50_MS ? 'by itself above' : 'within'} the ${TARGET_P50_MS} ms p50 target.`,
        `S3-warm mean ${fmtMs(s3Sum.mean)}, p90 ${fmtMs(s3Sum.p90)}; RAW mean ${fmtMs(rawSum.mean)}, p90 ` +
          `${fmtMs(rawSum.p90)}. With ${settings.samples} samples p99 is the slowest sample.`,
        'Outside the clocks, after every S3-warm sample: `refill-warm-databases` is enqueued for the pool and the ' +
          `bench waits until it holds ${fleet.warmPerPool} ready warm databases again (${refills} enqueues), so each ` +
          'sample finds a warm database and no refill competes with it. The RAW warm databases are left on the ' +
          'pool, which is removed at the end.',
        ...fmt(errors.s3, 'S3-warm'),
        ...fmt(errors.raw, 'RAW'),
      ],
    };
  },
};
