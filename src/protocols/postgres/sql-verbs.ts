/**
 * The SQL verb vocabulary policies see in `sql.verb` / `sql.verbs`, its
 * danger ranking, and the mapping from PostgreSQL parse-tree statement
 * nodes to verbs.
 *
 * The ranking is a strict total order so that `verb` (the most dangerous
 * verb of a message) never depends on statement order. Its shape follows
 * one rule: ranking X above Y means "a policy that allows X has accepted
 * everything Y can do". Hence reads and session bookkeeping sit at the
 * bottom, row writes above them, DDL above writes, privilege changes above
 * DDL, and code execution we cannot see into (LOAD, a wire FunctionCall by
 * OID, DO, COPY … PROGRAM, anything unmapped) at the top.
 */

/** Every verb, least dangerous first. `docs/sql-facts.md` prints this table. */
export const SQL_VERBS: readonly string[] = Object.freeze([
  // transaction and cursor bookkeeping, prepared-statement references
  'begin',
  'savepoint',
  'release',
  'commit',
  'rollback',
  'close',
  'deallocate',
  'unlisten',
  'listen',
  'prepare',
  // EXECUTE ranks below select: the engine merges the prepared body in, so an
  // EXECUTE of a SELECT reports `select` and an EXECUTE of a DELETE `delete`.
  'execute',
  'fetch',
  'move',
  'show',
  'explain',
  'declare',
  'select',
  // session state and maintenance: side effects, but no row changes
  'discard',
  'reset',
  'set',
  'notify',
  'checkpoint',
  'analyze',
  'vacuum',
  'reindex',
  'cluster',
  'refresh',
  'lock',
  // row writes
  'insert',
  'update',
  'delete',
  'merge',
  'copy',
  'call',
  // schema changes
  'comment',
  'security_label',
  'create',
  'import',
  'alter',
  'truncate',
  'drop',
  // privilege changes
  'grant',
  'revoke',
  'reassign',
  // code execution the gateway cannot see into
  'load',
  'function_call',
  'do',
  'unknown',
]);

const RANK = new Map<string, number>(SQL_VERBS.map((verb, i) => [verb, i + 1]));
const TOP = RANK.get('unknown')!;

/**
 * COPY … TO/FROM PROGRAM runs a shell command on the database host. The
 * verb stays `copy` (with `copy_program` set), but it ranks between `do`
 * and `unknown`.
 */
export const COPY_PROGRAM_RANK = RANK.get('do')! + 0.5;

/**
 * Danger of a verb: a positive number, higher is more dangerous. Any string
 * outside the vocabulary (including '') ranks like `unknown` — fail safe.
 */
export function verbDanger(verb: string): number {
  return RANK.get(verb.toLowerCase()) ?? TOP;
}

/** Rank used for picking `verb`: `copy` counts as COPY … PROGRAM when the message has one. */
export function effectiveRank(verb: string, copyProgram: boolean): number {
  return copyProgram && verb === 'copy' ? COPY_PROGRAM_RANK : verbDanger(verb);
}

/** The most dangerous of `verbs` ('' for an empty list). */
export function mostDangerous(verbs: Iterable<string>, copyProgram: boolean): string {
  let best = '';
  let bestRank = -Infinity;
  for (const verb of verbs) {
    const rank = effectiveRank(verb, copyProgram);
    if (rank > bestRank) {
      best = verb;
      bestRank = rank;
    }
  }
  return best;
}

type Node = Record<string, unknown>;

const STATIC_VERBS: Record<string, string> = {
  InsertStmt: 'insert',
  UpdateStmt: 'update',
  DeleteStmt: 'delete',
  MergeStmt: 'merge',
  SelectStmt: 'select',
  CopyStmt: 'copy',
  TruncateStmt: 'truncate',
  CommentStmt: 'comment',
  SecLabelStmt: 'security_label',
  DeclareCursorStmt: 'declare',
  ClosePortalStmt: 'close',
  DoStmt: 'do',
  CallStmt: 'call',
  NotifyStmt: 'notify',
  ListenStmt: 'listen',
  UnlistenStmt: 'unlisten',
  LoadStmt: 'load',
  ClusterStmt: 'cluster',
  ExplainStmt: 'explain',
  RefreshMatViewStmt: 'refresh',
  CheckPointStmt: 'checkpoint',
  DiscardStmt: 'discard',
  LockStmt: 'lock',
  ConstraintsSetStmt: 'set',
  VariableShowStmt: 'show',
  ReindexStmt: 'reindex',
  PrepareStmt: 'prepare',
  ExecuteStmt: 'execute',
  DeallocateStmt: 'deallocate',
  ImportForeignSchemaStmt: 'import',
  ReassignOwnedStmt: 'reassign',
};

const CREATE_STATEMENTS = [
  'CreateStmt', 'CreateSchemaStmt', 'CreateTableSpaceStmt', 'CreateExtensionStmt', 'CreateFdwStmt',
  'CreateForeignServerStmt', 'CreateForeignTableStmt', 'CreateUserMappingStmt', 'CreatePolicyStmt',
  'CreateAmStmt', 'CreateTrigStmt', 'CreateEventTrigStmt', 'CreatePLangStmt', 'CreateRoleStmt',
  'CreateSeqStmt', 'DefineStmt', 'CreateDomainStmt', 'CreateOpClassStmt', 'CreateOpFamilyStmt',
  'IndexStmt', 'CreateStatsStmt', 'CreateFunctionStmt', 'RuleStmt', 'CompositeTypeStmt',
  'CreateEnumStmt', 'CreateRangeStmt', 'ViewStmt', 'CreatedbStmt', 'CreateTableAsStmt',
  'CreateConversionStmt', 'CreateCastStmt', 'CreateTransformStmt', 'CreatePublicationStmt',
  'CreateSubscriptionStmt',
];
const ALTER_STATEMENTS = [
  'AlterTableStmt', 'AlterCollationStmt', 'AlterDomainStmt', 'AlterDefaultPrivilegesStmt',
  'AlterTableSpaceOptionsStmt', 'AlterTableMoveAllStmt', 'AlterExtensionStmt',
  'AlterExtensionContentsStmt', 'AlterFdwStmt', 'AlterForeignServerStmt', 'AlterUserMappingStmt',
  'AlterPolicyStmt', 'AlterEventTrigStmt', 'AlterRoleStmt', 'AlterRoleSetStmt', 'AlterSeqStmt',
  'AlterOpFamilyStmt', 'AlterStatsStmt', 'AlterFunctionStmt', 'RenameStmt', 'AlterObjectDependsStmt',
  'AlterObjectSchemaStmt', 'AlterOwnerStmt', 'AlterOperatorStmt', 'AlterTypeStmt', 'AlterEnumStmt',
  'AlterDatabaseStmt', 'AlterDatabaseRefreshCollStmt', 'AlterDatabaseSetStmt', 'AlterSystemStmt',
  'AlterTSDictionaryStmt', 'AlterTSConfigurationStmt', 'AlterPublicationStmt', 'AlterSubscriptionStmt',
];
const DROP_STATEMENTS = [
  'DropStmt', 'DropTableSpaceStmt', 'DropUserMappingStmt', 'DropRoleStmt', 'DropdbStmt',
  'DropSubscriptionStmt', 'DropOwnedStmt',
];
for (const tag of CREATE_STATEMENTS) STATIC_VERBS[tag] = 'create';
for (const tag of ALTER_STATEMENTS) STATIC_VERBS[tag] = 'alter';
for (const tag of DROP_STATEMENTS) STATIC_VERBS[tag] = 'drop';

/**
 * Node tags named `…Stmt` that are parts of other statements rather than
 * statements of their own (ALTER TABLE's REPLICA IDENTITY, a SQL function's
 * RETURN, PL/pgSQL's assignment, the analyser's set operation).
 */
const NOT_STATEMENTS = new Set(['ReplicaIdentityStmt', 'ReturnStmt', 'PLAssignStmt', 'SetOperationStmt', 'RawStmt']);

const TRANSACTION_VERBS: Record<string, string> = {
  TRANS_STMT_BEGIN: 'begin',
  TRANS_STMT_START: 'begin',
  TRANS_STMT_COMMIT: 'commit',
  // PREPARE TRANSACTION is the first phase of a two-phase commit.
  TRANS_STMT_PREPARE: 'commit',
  TRANS_STMT_COMMIT_PREPARED: 'commit',
  TRANS_STMT_ROLLBACK: 'rollback',
  TRANS_STMT_ROLLBACK_TO: 'rollback',
  TRANS_STMT_ROLLBACK_PREPARED: 'rollback',
  TRANS_STMT_SAVEPOINT: 'savepoint',
  TRANS_STMT_RELEASE: 'release',
};

/**
 * The verb of a parse-tree node, `null` when the node is not a statement,
 * `unknown` for a statement kind this table does not know (fail safe: a
 * new PostgreSQL statement ranks at the top until someone maps it).
 */
export function statementVerb(tag: string, node: Node): string | null {
  switch (tag) {
    case 'TransactionStmt':
      return TRANSACTION_VERBS[String(node.kind)] ?? 'unknown';
    case 'VariableSetStmt':
      return node.kind === 'VAR_RESET' || node.kind === 'VAR_RESET_ALL' ? 'reset' : 'set';
    case 'FetchStmt':
      return node.ismove === true ? 'move' : 'fetch';
    case 'VacuumStmt':
      return node.is_vacuumcmd === true ? 'vacuum' : 'analyze';
    case 'GrantStmt':
    case 'GrantRoleStmt':
      return node.is_grant === true ? 'grant' : 'revoke';
  }
  const verb = STATIC_VERBS[tag];
  if (verb !== undefined) return verb;
  if (tag.endsWith('Stmt') && !NOT_STATEMENTS.has(tag)) return 'unknown';
  return null;
}
