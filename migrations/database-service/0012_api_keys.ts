// Named API keys: created, listed and revoked through the admin API without a restart. Only a
// SHA-256 digest of each key is kept (a key is 256 random bits, so a fast digest is as good as a
// slow one); `lookup_id` is the key's public part, shown in lists and logs, and finds its row.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE api_keys (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      name text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
      lookup_id text NOT NULL UNIQUE CHECK (lookup_id ~ '^[a-z2-7]{16}$'),
      secret_digest bytea NOT NULL CHECK (length(secret_digest) = 32),
      scopes text[] NOT NULL CHECK (
        cardinality(scopes) > 0 AND scopes <@ ARRAY['allocate', 'admin', 'admin:read', 'portal']::text[]
      ),
      created_by text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      expires_at timestamptz,
      last_used_at timestamptz,
      revoked_at timestamptz,
      revoked_by text
    )`.execute(db);
  // Two live keys may share a name only to rotate: the name is not unique, the list shows both.
  await sql`CREATE INDEX api_keys_name ON api_keys (name, created_at)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE api_keys`.execute(db);
}
