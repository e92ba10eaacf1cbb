// The ordered list of database-service catalog migrations. Listed explicitly (not read from the
// file system) so every runner — CLI, tests, services, bundles — sees the same set.
import type { Migration } from 'kysely/migration';
import * as m0001 from './0001_db_servers';
import * as m0002 from './0002_plans';
import * as m0003 from './0003_tenant_databases';
import * as m0004 from './0004_audit_events';
import * as m0005 from './0005_server_database_drift';
import * as m0006 from './0006_placement_indexes';
import * as m0007 from './0007_server_slot_drift';
import * as m0008 from './0008_warm_ready_index';
import * as m0009 from './0009_customer_limits';
import * as m0010 from './0010_pending_password';
import * as m0011 from './0011_fleet_tls';
import * as m0012 from './0012_api_keys';
import * as m0013 from './0013_secrets_bound_to_rows';
import * as m0014 from './0014_plan_quotas';
import * as m0015 from './0015_tenant_usage';
import * as m0016 from './0016_server_major';
import * as m0017 from './0017_tenant_moves';
import * as m0018 from './0018_server_drain';
import * as m0019 from './0019_plan_change_moves';
import * as m0020 from './0020_backups';
import * as m0021 from './0021_tenant_events';

export const migrations: Record<string, Migration> = {
  '0001_db_servers': m0001,
  '0002_plans': m0002,
  '0003_tenant_databases': m0003,
  '0004_audit_events': m0004,
  '0005_server_database_drift': m0005,
  '0006_placement_indexes': m0006,
  '0007_server_slot_drift': m0007,
  '0008_warm_ready_index': m0008,
  '0009_customer_limits': m0009,
  '0010_pending_password': m0010,
  '0011_fleet_tls': m0011,
  '0012_api_keys': m0012,
  '0013_secrets_bound_to_rows': m0013,
  '0014_plan_quotas': m0014,
  '0015_tenant_usage': m0015,
  '0016_server_major': m0016,
  '0017_tenant_moves': m0017,
  '0018_server_drain': m0018,
  '0019_plan_change_moves': m0019,
  '0020_backups': m0020,
  '0021_tenant_events': m0021,
};
