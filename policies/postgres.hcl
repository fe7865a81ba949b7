# The application database: read-only for agents, dangerous functions banned
# whatever the verb, and a human-approved write path for agents that hold the
# read-write placeholder.

endpoint "postgres" "app-db" {
  description = "application database (PostgreSQL 15)"
  host        = "db.internal:5432"
  sslmode     = "prefer"
  listen      = "127.0.0.1:15432" # local agents: psql "host=127.0.0.1 port=15432 user=PH_app_ro"
}

credential "postgres_credential" "app-ro" {
  endpoint = postgres.app-db
  user     = "app_ro"
  env      = "PGUSER"
}

credential "postgres_credential" "app-rw" {
  endpoint = postgres.app-db
  user     = "app_rw"
}

approver "human_approver" "dba" {
  channel           = "#db-approvals"
  timeout           = "15m"
  require_approvers = 1
}

# Functions that read or write the server's files, run programs, reach other
# servers or change the session's identity — denied in any statement.
rule "app-db-banned-functions" {
  endpoint  = postgres.app-db
  priority  = 100
  condition = <<-EOT
    sql.copy_program ||
    sets.intersects(sql.functions, [
      'pg_read_file', 'pg_read_binary_file', 'pg_ls_dir', 'pg_stat_file',
      'lo_import', 'lo_export', 'lo_from_bytea', 'lo_put',
      'dblink', 'dblink_exec', 'dblink_connect',
      'set_config', 'pg_reload_conf', 'pg_terminate_backend', 'pg_cancel_backend'
    ])
  EOT
  verdict   = "deny"
  reason    = "this function is not available to agents"
}

# Reads: every statement of the message is a read (writes hidden in CTEs,
# EXPLAIN ANALYZE or DO bodies show up in sql.verbs and fall through).
# Logging in is not a statement: rules never see it, so the default deny
# below refuses statements, not sessions.
rule "app-db-reads" {
  endpoint  = postgres.app-db
  priority  = 10
  condition = "sets.contains(['select', 'show', 'explain', 'begin', 'commit', 'rollback'], sql.verbs)"
  verdict   = "allow"
}

# Writes with the read-write credential go to a DBA.
rule "app-db-writes" {
  endpoint   = postgres.app-db
  priority   = 5
  credential = postgres_credential.app-rw
  condition  = "sets.contains(['select', 'insert', 'update', 'delete', 'begin', 'commit', 'rollback'], sql.verbs)"
  approve    = [human_approver.dba]
  reason     = "writes to the application database need a DBA's approval"
}

# Everything else (DDL, GRANT, COPY, SET — including SET ROLE and startup
# `options` —, writes with the read-only credential, …) is denied.
rule "app-db-default-deny" {
  endpoint = postgres.app-db
  priority = -100
  verdict  = "deny"
  reason   = "the application database is read-only for agents"
}

# The analytics replica: read-only by construction (a hot standby refuses
# writes), so the only rule is which database agents may use. A statement the
# gateway cannot parse matches no rule and is denied by the SQL backstop.
endpoint "postgres" "analytics" {
  description = "analytics read replica"
  host        = "analytics.internal:5432"
  database    = "reporting"
}

credential "postgres_credential" "analytics" {
  endpoint = postgres.analytics
  user     = "analyst"
  database = "reporting"
}

rule "analytics-reporting-only" {
  endpoint  = postgres.analytics
  condition = "sql.database != 'reporting'"
  verdict   = "deny"
  reason    = "agents may only use the reporting database on the replica"
}
