// How kysely sees the catalog's column kinds: what a select returns, and what an insert and an
// update take.
import type { ColumnType } from 'kysely';

export type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
export type NullableTimestamp = ColumnType<
  Date | null,
  Date | string | null | undefined,
  Date | string | null
>;
export type Nullable<T> = ColumnType<T | null, T | null | undefined, T | null>;
/** numeric columns come back from pg as strings; written as numbers. */
export type Numeric = ColumnType<string | null, number | null | undefined, number | null>;
