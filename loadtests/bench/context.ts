// What a scenario gets: the running stack, the run's settings, and state earlier scenarios left
// for later ones (the RAW-TX rate is the baseline of the API scenarios; S1's allocations are
// what the catalog-only paths read; the warm fleet is what S3-warm and S1-warm run on).
import type { AdminTarget } from './catalog';
import type { LoadResult } from './load';
import type { ResultRow, ScenarioResult, Verdict } from './report';
import type { Stack, WorkerProcess } from './stack';

export interface BenchSettings {
  quick: boolean;
  /** Concurrent clients of every throughput scenario. */
  concurrency: number;
  /** Measured duration of a fixed-duration scenario. */
  durationMs: number;
  warmupMs: number;
  /** S1 bounds: whichever comes first. */
  allocateRequests: number;
  allocateMaxMs: number;
  /** RAW-CREATE ×N bounds: its rate is steady well before S1's count. */
  rawCreateRequests: number;
  rawCreateMaxMs: number;
  /** Sequential latency samples (after the warm-up ones). */
  samples: number;
  warmupSamples: number;
  /** S5: sequential provision-server samples (after one warm-up round). */
  provisionSamples: number;
  /** Warm fleet: local shared pools, their max_instances, and warm databases kept on each. */
  warmPools: number;
  warmPoolCapacity: number;
  warmPerPool: number;
  /** S1-warm: measured duration (no warm-up: it would spend the warm databases). */
  warmAllocateMs: number;
}

export interface AllocatedTenant {
  instance_id: string;
  customer_id: string;
  db_server_id: string;
  db_host: string;
  db_port: number;
  db_name: string;
  db_user: string;
  db_password: string;
}

export interface BenchState {
  /** RAW-TX transactions per second; the baseline of the catalog paths. */
  rawTxPerSec?: number;
  /** Concurrent CREATE ROLE + CREATE DATABASE per second straight on the pools: S1's bound. */
  rawCreatePerSec?: number;
  /** The read path's queries straight through pg per second: the yardstick of service overhead. */
  rawReadPerSec?: number;
  /** Allocations made by S1, reused by the idempotent-repeat and read scenarios. */
  allocated: AllocatedTenant[];
  /** S3's RAW-CREATE + login p50 (ms): the create-path baseline S3-warm is also shown against. */
  rawCreateLoginP50?: number;
  /** One SCRAM-SHA-256 verifier computed in Node (ms): the service computes one per allocation. */
  scramVerifierMs?: number;
  /** ALTER ROLE … PASSWORD + ALTER DATABASE on warm roles, 16 clients, per second: S1-warm's raw bound. */
  rawClaimPerSec?: number;
  /** The local pools the warm scenarios run on, and the worker keeping them warm. */
  fleet?: WarmFleet;
}

export interface WarmFleet {
  pools: AdminTarget[];
  warmPerPool: number;
  worker: WorkerProcess;
  /** Warm databases the worker made per second while filling the fleet (4 pools in parallel). */
  refillPerSec: number;
}

export interface BenchContext {
  stack: Stack;
  settings: BenchSettings;
  state: BenchState;
  log(line: string): void;
}

export interface Scenario {
  id: string;
  /** Ids of the earlier scenarios whose results (ctx.state) this one reads: `--only` runs them too. */
  needs?: string[];
  run(ctx: BenchContext): Promise<ScenarioResult>;
}

/** A row from a load result, with the comparison filled in by the caller. */
export function rowFrom(
  name: string,
  r: LoadResult,
  extra: Partial<ResultRow> & { verdict: Verdict },
): ResultRow {
  return {
    name,
    requests: r.requests,
    throughput: r.throughput,
    p50Ms: r.latency.p50,
    p95Ms: r.latency.p95,
    p99Ms: r.latency.p99,
    errors: r.errors,
    ...extra,
  };
}

export function errorNotes(r: LoadResult): string[] {
  return r.errorSamples.map((e) => `error ×${e.count}: ${e.detail}`);
}
