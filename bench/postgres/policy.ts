/**
 * The benchmark's 20 rules, of the kinds operators write: banned functions,
 * no DDL, no DO/CALL, an append-only table, 14 per-tenant denials that read
 * the statement text, approval for writes, and the allow rule for reads.
 * A pgbench read falls through 19 of them to the allow rule.
 */
export function benchRules(endpoint: string): string {
  const denyFunctions = ['pg_read_file', 'pg_ls_dir', 'lo_export', 'lo_import', 'dblink_exec', 'set_config', 'pg_terminate_backend'];
  const rules: string[] = [
    `rule "banned-functions" {
  endpoint  = ${endpoint}
  priority  = 100
  condition = "sql.copy_program || sets.intersects(sql.functions, [${denyFunctions.map((f) => `'${f}'`).join(', ')}])"
  verdict   = "deny"
  reason    = "function not available"
}`,
    `rule "no-ddl" {
  endpoint  = ${endpoint}
  priority  = 90
  condition = "sets.intersects(sql.verbs, ['drop', 'truncate', 'alter', 'create', 'grant', 'revoke'])"
  verdict   = "deny"
}`,
    `rule "no-do" {
  endpoint  = ${endpoint}
  priority  = 89
  condition = "sql.verb == 'do' || sql.verb == 'call'"
  verdict   = "deny"
}`,
    `rule "history-append-only" {
  endpoint  = ${endpoint}
  priority  = 80
  condition = "'pgbench_history' in sql.tables && sql.verb in ['update', 'delete']"
  verdict   = "deny"
}`,
  ];
  for (let i = 0; i < 14; i++) {
    rules.push(`rule "tenant-${i}" {
  endpoint  = ${endpoint}
  priority  = ${70 - i}
  condition = "'tenant_${i}.ledger' in sql.tables || sql.statement.contains('/* tenant ${i} */')"
  verdict   = "deny"
  reason    = "tenant ${i} is off limits"
}`);
  }
  rules.push(`rule "writes-need-approval" {
  endpoint  = ${endpoint}
  priority  = 5
  condition = "sets.intersects(sql.verbs, ['insert', 'update', 'delete', 'merge', 'copy'])"
  approve   = [builtin.dashboard]
}`);
  rules.push(`rule "reads" {
  endpoint  = ${endpoint}
  priority  = 1
  condition = "sets.contains(['select', 'show', 'begin', 'commit', 'rollback', 'set'], sql.verbs)"
  verdict   = "allow"
}`);
  return rules.join('\n');
}
