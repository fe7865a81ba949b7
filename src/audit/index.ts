export { AuditLog, AuditClosedError, AuditBacklogFullError, type AuditLogOptions, type AuditStats, type RetentionPolicy } from './log.js';
export { StoreAuditWriter, type AuditWriter } from './writer.js';
export { WorkerAuditWriter, AuditWriterError } from './worker-writer.js';
export { writerThreadEntry, WriterEntryError, type WriterThreadEntry } from './worker-entry.js';
export { verifyChain, linkBatch, chainHash, GENESIS_HASH, type VerifyResult, type ChainProblem } from './chain.js';
export { canonicalJson } from './canonical.js';
export { auditRows, verifyStore, exportLine, parseExportLine, readRecord, rowsFromLines } from './reader.js';
export { redactFacts, createFactsRedactor, credentialHeaders, SENSITIVE_HEADERS, REDACTED } from './redact.js';
/** The purpose string for `vault.subkey()` that keys the audit head and checkpoints. */
export const AUDIT_KEY_PURPOSE = 'clawpatrol audit chain v1';
