/**
 * Policy files → PolicyModel: read a file or a directory, parse every file
 * with hcl2json, check every block against the schema, resolve references,
 * and compile rule conditions. All problems are collected as diagnostics
 * with file:line:col; nothing is silently ignored.
 */
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { isUtf8 } from 'node:buffer';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import type {
  Approver,
  Credential,
  CredentialType,
  Defaults,
  Diagnostic,
  Endpoint,
  EndpointType,
  Family,
  GatewayConfig,
  HostPattern,
  PolicyModel,
  Profile,
  ProfileEntry,
  Rule,
  SourcePos,
} from './types.js';
import { caretExcerpt, didYouMean, sortDiagnostics } from './diagnostics.js';
import { parseHclFile, type ParsedFile } from './hcl.js';
import { stringOffsetPos, type SrcBlock } from './hcl-source.js';
import { parseHostPattern, patternKey } from './hosts.js';
import { compileCondition, FAMILY_VARIABLES, type CompiledCondition } from './cel.js';
import { DURATION_HINT, parseDuration } from './units.js';
import {
  APPROVER_ATTRIBUTES,
  APPROVER_TYPES,
  BUILTIN_APPROVERS,
  CREDENTIAL_ATTRIBUTES,
  CREDENTIAL_ENDPOINTS,
  CREDENTIAL_REQUIRED,
  CREDENTIAL_TYPES,
  DEFAULT_ENV,
  DEFAULTS_ATTRIBUTES,
  ENDPOINT_ATTRIBUTES,
  ENDPOINT_FAMILY,
  ENDPOINT_TYPES,
  GATEWAY_ATTRIBUTES,
  GATEWAY_BLOCK_ATTRIBUTES,
  GATEWAY_BLOCKS,
  kindOfType,
  LABELS,
  POLICY_TEXT_ATTRIBUTES,
  PROFILE_ATTRIBUTES,
  PROFILE_ENTRY_KEYS,
  REFERENCE_TYPES,
  RULE_ATTRIBUTES,
  SCHEMA_VERSION,
  TOP_LEVEL_ATTRIBUTES,
  TOP_LEVEL_BLOCKS,
  type Kind,
} from './schema.js';
import { slotSpec } from '../vault/slots.js';
import { Body, fmtPos, Reporter, Values, type RefVal, type Val } from './values.js';

export interface LoadedDocument {
  model: PolicyModel;
  /** Compiled conditions by rule name (rules without a condition are absent). */
  conditions: Map<string, CompiledCondition>;
}

export type DocumentResult =
  | { ok: true; document: LoadedDocument; warnings: Diagnostic[] }
  | { ok: false; diagnostics: Diagnostic[] };

const KIND_WORD: Record<Kind, string> = { endpoint: 'endpoint', credential: 'credential', approver: 'approver', policy: 'policy' };

interface Decl {
  kind: Kind;
  type: string;
  name: string;
  id: string;
  pos: SourcePos;
  namePos: SourcePos;
  file: ParsedFile;
  src: SrcBlock;
  body: Body;
}

/** Files that make up a policy path: the file itself, or `*.hcl` directly in the directory (sorted, no dotfiles). */
export async function policyFiles(path: string): Promise<{ files: string[] } | { error: Diagnostic }> {
  const at: SourcePos = { file: path, line: 1, col: 1 };
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return {
      error: {
        severity: 'error',
        pos: at,
        summary: 'Cannot read policy',
        hint: code === 'ENOENT' ? 'no such file or directory' : String((err as Error).message),
      },
    };
  }
  if (!st.isDirectory()) return { files: [path] };
  const names = (await readdir(path)).filter((n) => n.endsWith('.hcl') && !n.startsWith('.')).sort();
  const files: string[] = [];
  for (const n of names) {
    const full = join(path, n);
    try {
      if ((await stat(full)).isFile()) files.push(full);
    } catch {
      /* vanished between readdir and stat: skip */
    }
  }
  if (files.length === 0) {
    return { error: { severity: 'error', pos: at, summary: 'No policy files', hint: 'the directory holds no *.hcl files' } };
  }
  return { files };
}

/**
 * The file's text, or an error at the first byte that is not UTF-8. Decoding
 * leniently would turn those bytes into U+FFFD, and a condition literal the
 * author wrote would silently compare against something else.
 */
function decodeUtf8(file: string, bytes: Buffer): string | Diagnostic {
  if (isUtf8(bytes)) return bytes.toString('utf8');
  const lines = bytes.toString('utf8').split('\n');
  const line = lines.findIndex((l) => l.includes('\uFFFD'));
  const col = line < 0 ? 1 : lines[line]!.indexOf('\uFFFD') + 1;
  return {
    severity: 'error',
    pos: { file, line: line < 0 ? 1 : line + 1, col },
    summary: 'Invalid UTF-8',
    hint: 'a policy file must be UTF-8 text; this byte is not — re-save the file as UTF-8',
  };
}

export async function loadDocument(path: string): Promise<DocumentResult> {
  const listed = await policyFiles(path);
  if ('error' in listed) return { ok: false, diagnostics: [listed.error] };
  const parsed: ParsedFile[] = [];
  const syntax: Diagnostic[] = [];
  for (const file of listed.files) {
    let text: string;
    try {
      const bytes = await readFile(file);
      const decoded = decodeUtf8(file, bytes);
      if (typeof decoded !== 'string') {
        syntax.push(decoded);
        continue;
      }
      text = decoded;
    } catch (err) {
      syntax.push({
        severity: 'error',
        pos: { file, line: 1, col: 1 },
        summary: 'Cannot read policy',
        hint: (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : String((err as Error).message),
      });
      continue;
    }
    const out = await parseHclFile(file, text);
    if (out.ok) parsed.push(out.file);
    else syntax.push(...out.diagnostics);
  }
  if (syntax.length > 0) return { ok: false, diagnostics: sortDiagnostics(syntax) };
  return new Builder(parsed).build();
}

class Builder {
  private readonly r = new Reporter();
  private readonly v = new Values(this.r);
  private readonly decls: Record<Kind, Map<string, Decl>> = {
    endpoint: new Map(),
    credential: new Map(),
    approver: new Map(),
    policy: new Map(),
  };
  private readonly rules: Decl[] = [];
  private readonly profiles: Decl[] = [];
  private gatewayBlock: { body: Body; file: ParsedFile } | undefined;
  private defaultsBlock: { body: Body; file: ParsedFile } | undefined;
  private readonly ruleNames = new Map<string, SourcePos>();
  private readonly profileNames = new Map<string, SourcePos>();

  constructor(private readonly files: ParsedFile[]) {}

  build(): DocumentResult {
    const version = this.schemaVersion();
    if (version === 'upgrade') return { ok: false, diagnostics: this.r.diagnostics.filter((d) => d.severity === 'error') };
    for (const f of this.files) this.collect(f);

    const defaults = this.buildDefaults();
    const gateway = this.buildGateway();
    const endpoints = new Map<string, Endpoint>();
    for (const d of this.decls.endpoint.values()) {
      const e = this.buildEndpoint(d);
      if (e) endpoints.set(e.id, e);
    }
    const credentials = new Map<string, Credential>();
    for (const d of this.decls.credential.values()) {
      const c = this.buildCredential(d, endpoints);
      if (c) credentials.set(c.id, c);
    }
    const policyTexts = new Map<string, string>();
    for (const d of this.decls.policy.values()) {
      d.body.checkShape(this.r, 'a policy block', POLICY_TEXT_ATTRIBUTES);
      const text = this.required(d, 'text', 'a policy block');
      const s = text && this.v.string(text, '"text"');
      if (s !== undefined) policyTexts.set(d.id, s);
    }
    const approvers = new Map<string, Approver>();
    approvers.set('builtin.dashboard', {
      id: 'builtin.dashboard',
      type: 'builtin',
      name: 'dashboard',
      timeoutSec: defaults.humanTimeoutSec,
      onTimeout: defaults.humanOnTimeout,
    });
    for (const d of this.decls.approver.values()) {
      const a = this.buildApprover(d, defaults, credentials, policyTexts);
      if (a) approvers.set(a.id, a);
    }
    const profiles = new Map<string, Profile>();
    for (const d of this.profiles) {
      const p = this.buildProfile(d, credentials, endpoints);
      if (p) profiles.set(p.name, p);
    }
    const rules: Rule[] = [];
    const conditions = new Map<string, CompiledCondition>();
    for (const d of this.rules) {
      const built = this.buildRule(d, rules.length, endpoints, credentials);
      if (!built) continue;
      rules.push(built.rule);
      if (built.condition) conditions.set(built.rule.name, built.condition);
    }

    this.checkWaysIn(gateway, endpoints, profiles);
    if (version === 'absent') {
      const first = this.files[0];
      this.r.warn(
        { file: first?.src.file ?? '', line: 1, col: 1 },
        'Missing schema_version',
        `add schema_version = ${SCHEMA_VERSION} at the top of one file; the document is read as version ${SCHEMA_VERSION}`,
      );
    }

    const diagnostics = sortDiagnostics(this.r.diagnostics);
    if (this.r.errorCount > 0) return { ok: false, diagnostics };
    const warnings = diagnostics.filter((d) => d.severity === 'warning');
    const model: PolicyModel = {
      files: this.files.map((f) => f.src.file),
      schemaVersion: SCHEMA_VERSION,
      gateway,
      hasGatewayBlock: this.gatewayBlock !== undefined,
      defaults,
      endpoints,
      credentials,
      approvers,
      profiles,
      rules,
      warnings,
    };
    return { ok: true, document: { model, conditions }, warnings };
  }

  // ───────────────────────────── document level ──────────────────────────────

  private schemaVersion(): 'ok' | 'absent' | 'upgrade' {
    let seen = false;
    for (const f of this.files) {
      const a = f.src.body.attributes.find((x) => x.name === 'schema_version');
      if (!a) continue;
      seen = true;
      const val: Val = { json: f.json['schema_version'], src: a.value, pos: a.value.start };
      const n = this.v.int(val, 'schema_version', 1);
      if (n !== undefined && n > SCHEMA_VERSION) {
        this.r.diagnostics.length = 0;
        this.r.error(
          val.pos,
          'Unsupported schema version',
          `this policy is schema_version ${n}, but this clawpatrol understands up to ${SCHEMA_VERSION}; upgrade clawpatrol to load it`,
        );
        return 'upgrade';
      }
    }
    return seen ? 'ok' : 'absent';
  }

  private collect(f: ParsedFile): void {
    const top = new Body(f.src, f.src.body, f.json, { file: f.src.file, line: 1, col: 1 });
    for (const name of top.attributeNames()) {
      if ((TOP_LEVEL_ATTRIBUTES as readonly string[]).includes(name)) continue;
      const near = didYouMean(name, [...TOP_LEVEL_ATTRIBUTES, ...TOP_LEVEL_BLOCKS]);
      this.r.error(top.namePos(name), 'Unsupported argument', `"${name}" is not a top-level attribute${near}`);
    }
    for (const { src, body } of top.blocks) {
      const type = src.type;
      if (!(TOP_LEVEL_BLOCKS as readonly string[]).includes(type)) {
        const near = didYouMean(type, TOP_LEVEL_BLOCKS);
        this.r.error(
          src.pos,
          'Unsupported block type',
          `"${type}" is not a block type${near}; supported block types: ${TOP_LEVEL_BLOCKS.join(', ')}`,
        );
        continue;
      }
      const want = LABELS[type]!;
      if (src.labels.length !== want.length) {
        const at = src.labels[want.length]?.pos ?? src.pos;
        const shape = [type, ...want.map((l) => `"<${l}>"`)].join(' ');
        this.r.error(
          at,
          want.length === 0 ? 'Extraneous label' : 'Wrong number of labels',
          `a ${type} block takes ${want.length === 0 ? 'no labels' : `${want.length} label${want.length > 1 ? 's' : ''}`}: write ${shape} { … }`,
        );
        continue;
      }
      switch (type) {
        case 'gateway':
        case 'defaults': {
          const slot = type === 'gateway' ? 'gatewayBlock' : 'defaultsBlock';
          const prev = this[slot];
          if (prev) {
            this.r.error(src.pos, 'Duplicate block', `only one ${type} block is allowed in a document (the first is at ${fmtPos(prev.body.pos)})`);
          } else {
            this[slot] = { body, file: f };
          }
          break;
        }
        case 'rule':
        case 'profile': {
          const name = src.labels[0]!;
          const names = type === 'rule' ? this.ruleNames : this.profileNames;
          const prev = names.get(name.value);
          if (prev) {
            this.r.error(name.pos, `Duplicate ${type}`, `${type} "${name.value}" is already declared at ${fmtPos(prev)}; names are unique across files`);
            break;
          }
          if (!this.validName(name.value, name.pos, type)) break;
          names.set(name.value, name.pos);
          const decl: Decl = { kind: 'policy', type, name: name.value, id: name.value, pos: src.pos, namePos: name.pos, file: f, src, body };
          (type === 'rule' ? this.rules : this.profiles).push(decl);
          break;
        }
        case 'policy':
          this.declare('policy', 'policy', src.labels[0]!, f, src, body);
          break;
        default:
          this.collectTyped(type as 'endpoint' | 'credential' | 'approver', f, src, body);
      }
    }
  }

  private validName(name: string, pos: SourcePos, what: string): boolean {
    if (/^[\p{L}_][\p{L}\p{N}_-]*$/u.test(name)) return true;
    this.r.error(pos, 'Invalid name', `"${name}" cannot be used as a ${what} name: use letters, digits, "_" and "-", starting with a letter`);
    return false;
  }

  private collectTyped(kind: 'endpoint' | 'credential' | 'approver', f: ParsedFile, src: SrcBlock, body: Body): void {
    const typeLabel = src.labels[0]!;
    const supported: readonly string[] = kind === 'endpoint' ? ENDPOINT_TYPES : kind === 'credential' ? CREDENTIAL_TYPES : APPROVER_TYPES;
    if (!supported.includes(typeLabel.value)) {
      this.r.error(
        typeLabel.pos,
        `Unsupported ${kind} type`,
        `"${typeLabel.value}" is not supported${didYouMean(typeLabel.value, supported)}; supported ${kind} types: ${supported.join(', ')}`,
      );
      return;
    }
    this.declare(kind, typeLabel.value, src.labels[1]!, f, src, body);
  }

  private declare(kind: Kind, type: string, name: { value: string; pos: SourcePos }, f: ParsedFile, src: SrcBlock, body: Body): void {
    const table = this.decls[kind];
    const prev = table.get(name.value);
    if (prev) {
      this.r.error(
        name.pos,
        `Duplicate ${KIND_WORD[kind]}`,
        `${KIND_WORD[kind]} "${name.value}" is already declared as ${prev.id} at ${fmtPos(prev.namePos)}; names are unique per kind across files`,
      );
      return;
    }
    if (!this.validName(name.value, name.pos, KIND_WORD[kind])) return;
    table.set(name.value, { kind, type, name: name.value, id: `${type}.${name.value}`, pos: src.pos, namePos: name.pos, file: f, src, body });
  }

  // ───────────────────────────── helpers ─────────────────────────────────────

  private required(d: { body: Body; pos: SourcePos }, name: string, what: string): Val | undefined {
    const v = d.body.get(name);
    if (!v) this.r.error(d.pos, 'Missing required argument', `${what} needs "${name}"`);
    return v;
  }

  /** Resolve a reference to a declaration of one of `kinds` (or a builtin approver). */
  private resolve(ref: RefVal, kinds: readonly (Kind | 'builtin')[], what: string): Decl | 'builtin.dashboard' | undefined {
    const kind = kindOfType(ref.type);
    if (kind === undefined) {
      const near = didYouMean(ref.type, REFERENCE_TYPES);
      return this.r.error(ref.pos, 'Unknown variable', `there is no block type "${ref.type}"${near || ` (references look like https.github)`}`);
    }
    if (!kinds.includes(kind)) {
      const wanted = kinds.map((k) => (k === 'builtin' ? 'builtin.dashboard' : `${k === 'approver' ? 'an' : 'a'} ${k}`)).join(' or ');
      return this.r.error(ref.pos, 'Wrong kind of reference', `${what} must name ${wanted}, but ${ref.type}.${ref.name} is ${kind === 'approver' ? 'an' : 'a'} ${kind}`);
    }
    if (kind === 'builtin') {
      if (BUILTIN_APPROVERS.includes(ref.name)) return 'builtin.dashboard';
      return this.r.error(ref.pos, 'Unknown variable', `there is no builtin named "${ref.name}"; the built-in approver is builtin.dashboard`);
    }
    const table = this.decls[kind];
    const found = table.get(ref.name);
    if (found && found.type === ref.type) return found;
    if (found) {
      return this.r.error(
        ref.pos,
        'Unknown variable',
        `there is no ${ref.type} ${KIND_WORD[kind]} named "${ref.name}"; "${ref.name}" is ${found.id} — write ${found.id}`,
      );
    }
    const sameType = [...table.values()].filter((x) => x.type === ref.type).map((x) => x.name);
    const near = didYouMean(ref.name, sameType) || didYouMean(ref.name, table.keys());
    return this.r.error(ref.pos, 'Unknown variable', `there is no ${KIND_WORD[kind]} named "${ref.name}"${near}`);
  }

  /** `endpoint = x` or `endpoints = [x, y]` (exactly one). */
  private endpointRefs(d: Decl, what: string, endpoints: Map<string, Endpoint>, required: boolean): Array<{ id: string; pos: SourcePos }> | undefined {
    const one = d.body.get('endpoint');
    const many = d.body.get('endpoints');
    if (one && many) {
      return this.r.error(d.body.namePos('endpoints'), 'Conflicting arguments', `give either "endpoint" or "endpoints", not both`);
    }
    let vals: Val[] = [];
    if (one) vals = [one];
    else if (many) {
      const items = this.v.list(many, '"endpoints"');
      if (!items) return undefined;
      if (items.length === 0 && required) return this.r.error(many.pos, 'Invalid value', `"endpoints" must name at least one endpoint`);
      vals = items;
    } else if (required) {
      return this.r.error(d.pos, 'Missing required argument', `${what} needs "endpoint" or "endpoints"`);
    }
    const out: Array<{ id: string; pos: SourcePos }> = [];
    let ok = true;
    for (const v of vals) {
      const ref = this.v.ref(v, one ? '"endpoint"' : 'each element of "endpoints"');
      const decl = ref && this.resolve(ref, ['endpoint'], one ? '"endpoint"' : '"endpoints"');
      if (!decl || decl === 'builtin.dashboard') {
        ok = false;
        continue;
      }
      if (!endpoints.has(decl.id)) {
        ok = false; // the endpoint itself had errors, already reported
        continue;
      }
      if (out.some((o) => o.id === decl.id)) {
        this.r.error(v.pos, 'Duplicate reference', `${decl.id} is listed twice`);
        ok = false;
        continue;
      }
      out.push({ id: decl.id, pos: v.pos });
    }
    return ok ? out : undefined;
  }

  private seconds(v: Val, what: string): number | undefined {
    if (typeof v.json === 'number') return this.v.int(v, what, 0);
    const s = this.v.string(v, what);
    if (s === undefined) return undefined;
    const n = parseDuration(s);
    if (n === undefined) return this.r.error(v.pos, 'Invalid duration', `${what}: "${s}" is not a duration; ${DURATION_HINT}, or a number of seconds`);
    return n;
  }

  private listenAddress(v: Val, what: string): string | undefined {
    const s = this.v.string(v, what);
    if (s === undefined) return undefined;
    const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s[\]]+):(\d+)$/.exec(s);
    if (!m || Number(m[2]) > 65535) {
      return this.r.error(v.pos, 'Invalid listen address', `${what} must be "host:port" (e.g. "127.0.0.1:15432"), not "${s}"`);
    }
    return s;
  }

  private baseDir(file: ParsedFile): string {
    return dirname(resolve(file.src.file));
  }

  // ───────────────────────────── gateway / defaults ─────────────────────────

  private buildDefaults(): Defaults {
    const out: Defaults = {
      unknownHost: 'passthrough',
      llmFailMode: 'closed',
      llmCacheTtlSec: 300,
      humanTimeoutSec: 600,
      humanOnTimeout: 'deny',
      mode: 'enforce',
    };
    const b = this.defaultsBlock?.body;
    if (!b) return out;
    b.checkShape(this.r, 'the defaults block', DEFAULTS_ATTRIBUTES);
    const get = (n: string): Val | undefined => b.get(n);
    let v: Val | undefined;
    if ((v = get('unknown_host'))) out.unknownHost = this.v.oneOf(v, '"unknown_host"', ['passthrough', 'deny']) ?? out.unknownHost;
    if ((v = get('llm_fail_mode'))) out.llmFailMode = this.v.oneOf(v, '"llm_fail_mode"', ['closed', 'open']) ?? out.llmFailMode;
    if ((v = get('llm_cache_ttl'))) out.llmCacheTtlSec = this.seconds(v, '"llm_cache_ttl"') ?? out.llmCacheTtlSec;
    if ((v = get('human_timeout'))) {
      const n = this.seconds(v, '"human_timeout"');
      if (n === 0) this.r.error(v.pos, 'Invalid value', '"human_timeout" must be more than 0 seconds');
      else if (n !== undefined) out.humanTimeoutSec = n;
    }
    if ((v = get('human_on_timeout'))) out.humanOnTimeout = this.v.oneOf(v, '"human_on_timeout"', ['deny', 'allow']) ?? out.humanOnTimeout;
    if ((v = get('mode'))) out.mode = this.v.oneOf(v, '"mode"', ['enforce', 'observe']) ?? out.mode;
    return out;
  }

  private buildGateway(): GatewayConfig {
    const out: GatewayConfig = {
      dashboardListen: '127.0.0.1:8080',
      stateDir: join(homedir(), '.clawpatrol'),
      limits: { bodyBuffer: 1024 * 1024 },
      localProfile: 'default',
    };
    const g = this.gatewayBlock;
    if (!g) return out;
    const b = g.body;
    b.checkShape(this.r, 'the gateway block', GATEWAY_ATTRIBUTES, GATEWAY_BLOCKS);
    let v: Val | undefined;
    if ((v = b.get('dashboard_listen'))) out.dashboardListen = this.listenAddress(v, '"dashboard_listen"') ?? out.dashboardListen;
    if ((v = b.get('public_url'))) {
      const s = this.v.string(v, '"public_url"');
      if (s !== undefined) {
        if (/^https?:\/\/[^\s/]+/.test(s)) out.publicUrl = s.replace(/\/+$/, '');
        else this.r.error(v.pos, 'Invalid value', `"public_url" must be an http:// or https:// URL, not "${s}"`);
      }
    }
    if ((v = b.get('state_dir'))) {
      const s = this.v.nonEmptyString(v, '"state_dir"');
      if (s !== undefined) {
        const expanded = s === '~' ? homedir() : s.startsWith('~/') ? join(homedir(), s.slice(2)) : s;
        out.stateDir = isAbsolute(expanded) ? expanded : resolve(this.baseDir(g.file), expanded);
      }
    }
    if ((v = b.get('local_profile'))) out.localProfile = this.v.nonEmptyString(v, '"local_profile"') ?? out.localProfile;
    if ((v = b.get('actions_keep'))) {
      if (typeof v.json === 'number') {
        const n = this.v.int(v, '"actions_keep"', 1);
        if (n !== undefined) out.actionsKeep = { maxRecords: n };
      } else {
        const s = this.v.string(v, '"actions_keep"');
        if (s !== undefined) {
          const sec = parseDuration(s);
          if (sec === undefined || sec === 0) {
            this.r.error(v.pos, 'Invalid duration', `"actions_keep": "${s}" is neither a duration nor a record count; ${DURATION_HINT}, or a whole number of records`);
          } else out.actionsKeep = { maxAgeSec: sec };
        }
      }
    }
    if ((v = b.get('audit_body_limit'))) {
      if (typeof v.json === 'number') {
        const n = this.v.int(v, '"audit_body_limit"', 0);
        if (n !== undefined) out.auditBodyLimit = n;
      } else {
        const n = this.v.size(v, '"audit_body_limit"', '0 to record no body');
        if (n !== undefined) out.auditBodyLimit = n;
      }
    }
    if ((v = b.get('audit_backlog'))) {
      const n = this.v.int(v, '"audit_backlog"', 1);
      if (n !== undefined) out.auditBacklog = n;
    }
    const limits = b.block('limits');
    if (limits) {
      limits.checkShape(this.r, 'the limits block', GATEWAY_BLOCK_ATTRIBUTES['limits']!);
      const bb = limits.get('body_buffer');
      if (bb) {
        const n = this.v.size(bb, '"body_buffer"');
        if (n !== undefined) out.limits.bodyBuffer = n;
      }
      const idle = limits.get('body_idle_timeout');
      if (idle) {
        const sec = this.seconds(idle, '"body_idle_timeout"');
        if (sec === 0) this.r.error(idle.pos, 'Invalid duration', '"body_idle_timeout" must be at least 1s: with 0 every request body would be refused');
        else if (sec !== undefined) out.limits.bodyIdleTimeoutSec = sec;
      }
      const perDevice = [
        ['connections_per_device', 'connectionsPerDevice'],
        ['wildcard_names_per_device', 'wildcardNamesPerDevice'],
      ] as const;
      for (const [attribute, field] of perDevice) {
        const v = limits.get(attribute);
        if (!v) continue;
        const n = this.v.int(v, `"${attribute}"`, 1);
        if (n !== undefined) out.limits[field] = n;
      }
    }
    const wg = b.block('wireguard');
    if (wg) {
      wg.checkShape(this.r, 'the wireguard block', GATEWAY_BLOCK_ATTRIBUTES['wireguard']!);
      const w: NonNullable<GatewayConfig['wireguard']> = { subnetCidr: '10.55.0.0/24', listenPort: 51820 };
      if ((v = wg.get('subnet_cidr'))) {
        const s = this.v.string(v, '"subnet_cidr"');
        if (s !== undefined) {
          if (validIpv4Cidr(s)) w.subnetCidr = s;
          else this.r.error(v.pos, 'Invalid value', `"subnet_cidr" must be an IPv4 network such as "10.55.0.0/24", not "${s}"`);
        }
      }
      if ((v = wg.get('listen_port'))) w.listenPort = this.v.int(v, '"listen_port"', 1, 65535) ?? w.listenPort;
      if ((v = wg.get('endpoint'))) {
        const s = this.listenAddress(v, '"endpoint"');
        if (s !== undefined) w.endpoint = s;
      }
      out.wireguard = w;
    }
    const proxy = b.block('proxy');
    if (proxy) {
      proxy.checkShape(this.r, 'the proxy block', GATEWAY_BLOCK_ATTRIBUTES['proxy']!);
      const l = this.required({ body: proxy, pos: proxy.pos }, 'listen', 'the proxy block');
      const s = l && this.listenAddress(l, '"listen"');
      if (s !== undefined) out.proxy = { listen: s };
    }
    const store = b.block('store');
    if (store) {
      store.checkShape(this.r, 'the store block', GATEWAY_BLOCK_ATTRIBUTES['store']!);
      out.store = {};
      if ((v = store.get('postgres'))) {
        const s = this.v.string(v, '"postgres"');
        if (s !== undefined) {
          if (/^postgres(ql)?:\/\//.test(s)) out.store.postgres = s;
          else this.r.error(v.pos, 'Invalid value', `"postgres" must be a connection URL starting with postgres://`);
        }
      }
    }
    return out;
  }

  private checkWaysIn(gateway: GatewayConfig, endpoints: Map<string, Endpoint>, profiles: Map<string, Profile>): void {
    const listeners = [...endpoints.values()].filter((e) => e.listen);
    const at = this.gatewayBlock?.body.pos ?? { file: this.files[0]?.src.file ?? '', line: 1, col: 1 };
    if (!gateway.wireguard && !gateway.proxy && listeners.length === 0) {
      this.r.warn(
        at,
        'No way in',
        'the gateway declares no wireguard {} or proxy {} block and no endpoint has "listen"; `clawpatrol gateway` needs one (validate and test work without)',
      );
    }
    if ((gateway.proxy || listeners.length > 0) && !profiles.has(gateway.localProfile)) {
      const explicit = this.gatewayBlock?.body.get('local_profile');
      const pos = explicit?.pos ?? at;
      const msg = `local listeners use profile "${gateway.localProfile}", which is not declared${didYouMean(gateway.localProfile, profiles.keys())}`;
      if (explicit) this.r.error(pos, 'Unknown profile', msg);
      else this.r.warn(pos, 'Unknown profile', `${msg}; agents on local listeners will be denied`);
    }
  }

  // ───────────────────────────── endpoints ───────────────────────────────────

  private buildEndpoint(d: Decl): Endpoint | undefined {
    const type = d.type as EndpointType;
    const what = `${type === 'https' ? 'an' : 'a'} ${type} endpoint`;
    const before = this.r.errorCount;
    d.body.checkShape(this.r, what, ENDPOINT_ATTRIBUTES[type]);
    const e: Endpoint = { id: d.id, type, name: d.name, family: ENDPOINT_FAMILY[type], hosts: [], pos: d.pos };
    let v: Val | undefined;
    if ((v = d.body.get('description'))) {
      const s = this.v.string(v, '"description"');
      if (s !== undefined) e.description = s;
    }
    if ((v = d.body.get('listen'))) {
      const s = this.listenAddress(v, '"listen"');
      if (s !== undefined) e.listen = s;
    }
    const addPatterns = (val: Val, defaultPort?: number): void => {
      const items = this.v.list(val, '"hosts"');
      if (!items) return;
      if (items.length === 0) this.r.error(val.pos, 'Invalid value', '"hosts" must list at least one host');
      for (const item of items) {
        const s = this.v.string(item, 'each element of "hosts"');
        if (s !== undefined) this.addPattern(e, s, item.pos, defaultPort);
      }
    };
    switch (type) {
      case 'https':
      case 'clickhouse_http': {
        const h = this.required(d, 'hosts', what);
        if (h) addPatterns(h);
        break;
      }
      case 'postgres': {
        const h = this.required(d, 'host', what);
        const s = h && this.v.nonEmptyString(h, '"host"');
        if (h && s !== undefined) this.addPattern(e, s, h.pos, 5432);
        e.sslmode = 'prefer';
        if ((v = d.body.get('sslmode'))) e.sslmode = this.v.oneOf(v, '"sslmode"', ['disable', 'prefer', 'require', 'verify-full']) ?? 'prefer';
        if ((v = d.body.get('database'))) {
          const db = this.v.nonEmptyString(v, '"database"');
          if (db !== undefined) e.database = db;
        }
        break;
      }
      case 'clickhouse_native': {
        if ((v = d.body.get('tls'))) e.tls = this.v.bool(v, '"tls"') ?? false;
        if ((v = d.body.get('accept_invalid_certificate'))) e.acceptInvalidCertificate = this.v.bool(v, '"accept_invalid_certificate"') ?? false;
        e.port = e.tls ? 9440 : 9000;
        if ((v = d.body.get('port'))) e.port = this.v.int(v, '"port"', 1, 65535) ?? e.port;
        const h = this.required(d, 'hosts', what);
        if (h) addPatterns(h, e.port);
        break;
      }
      case 'kubernetes': {
        const server = d.body.get('server');
        const hosts = d.body.get('hosts');
        if (!server && !hosts) this.r.error(d.pos, 'Missing required argument', `${what} needs "server" or "hosts"`);
        if (server) {
          const s = this.v.string(server, '"server"');
          if (s !== undefined) {
            let url: URL | undefined;
            try {
              url = new URL(s);
            } catch {
              url = undefined;
            }
            if (!url || url.protocol !== 'https:') {
              this.r.error(server.pos, 'Invalid value', `"server" must be an https:// URL such as "https://k8s.example.com:6443", not "${s}"`);
            } else {
              e.server = s;
              this.addPattern(e, url.hostname, server.pos, url.port ? Number(url.port) : 443);
            }
          }
        }
        if (hosts) addPatterns(hosts);
        break;
      }
    }
    if ((type === 'https' || type === 'kubernetes') && (v = d.body.get('ca_cert'))) {
      const pem = this.caCert(v, d.file);
      if (pem !== undefined) e.caCert = pem;
    }
    return this.r.errorCount === before ? e : undefined;
  }

  private addPattern(e: Endpoint, text: string, pos: SourcePos, defaultPort?: number): void {
    const p = parseHostPattern(text, defaultPort);
    if (!p.ok) {
      this.r.error(pos, p.message, p.hint);
      return;
    }
    if (e.hosts.some((h) => patternKey(h) === patternKey(p.pattern))) {
      this.r.error(pos, 'Duplicate host', `"${text}" is listed twice in ${e.id}`);
      return;
    }
    e.hosts.push(p.pattern);
  }

  private caCert(v: Val, file: ParsedFile): string | undefined {
    const s = this.v.string(v, '"ca_cert"');
    if (s === undefined) return undefined;
    let pem = s;
    const m = /^\s*<<file:(.+)>>\s*$/.exec(s);
    if (m) {
      const p = resolve(this.baseDir(file), m[1]!.trim());
      try {
        pem = readFileSync(p, 'utf8');
      } catch (err) {
        return this.r.error(v.pos, 'Cannot read file', `"ca_cert" refers to ${p}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
      }
    }
    const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    if (blocks.length === 0) {
      return this.r.error(v.pos, 'Invalid certificate', `"ca_cert" must be PEM text (-----BEGIN CERTIFICATE----- …) or <<file:path>>`);
    }
    for (const [i, block] of blocks.entries()) {
      try {
        new X509Certificate(block);
      } catch (err) {
        return this.r.error(v.pos, 'Invalid certificate', `"ca_cert": certificate ${i + 1} does not parse (${(err as Error).message})`);
      }
    }
    return pem;
  }

  // ───────────────────────────── credentials ─────────────────────────────────

  private buildCredential(d: Decl, endpoints: Map<string, Endpoint>): Credential | undefined {
    const type = d.type as CredentialType;
    const what = `a ${type} credential`;
    const before = this.r.errorCount;
    d.body.checkShape(this.r, what, CREDENTIAL_ATTRIBUTES[type]);
    for (const req of CREDENTIAL_REQUIRED[type] ?? []) this.required(d, req, what);
    const refs = this.endpointRefs(d, what, endpoints, type === 'passthrough') ?? [];
    for (const ref of refs) {
      const ep = endpoints.get(ref.id)!;
      if (!CREDENTIAL_ENDPOINTS[type].includes(ep.type)) {
        this.r.error(
          ref.pos,
          'Credential cannot authenticate this endpoint',
          `${d.id} is a ${type}, which works with ${CREDENTIAL_ENDPOINTS[type].join(', ')} endpoints; ${ep.id} is ${ep.type === 'https' ? 'an' : 'a'} ${ep.type} endpoint`,
        );
      }
    }
    const c: Credential = { id: d.id, type, name: d.name, endpoints: refs.map((r) => r.id), slots: [...slotSpec(type).slots], pos: d.pos };
    let v: Val | undefined;
    if ((v = d.body.get('header'))) {
      const s = this.v.nonEmptyString(v, '"header"');
      if (s !== undefined) {
        if (/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(s)) c.header = s.toLowerCase();
        else this.r.error(v.pos, 'Invalid value', `"header" must be an HTTP header name, not "${s}"`);
      }
    }
    if ((v = d.body.get('prefix'))) {
      const s = this.v.string(v, '"prefix"');
      if (s !== undefined) c.prefix = s;
    }
    if ((v = d.body.get('username'))) {
      const s = this.v.nonEmptyString(v, '"username"');
      if (s !== undefined) c.username = s;
    }
    if ((v = d.body.get('user'))) {
      const s = this.v.nonEmptyString(v, '"user"');
      if (s !== undefined) c.user = s;
    }
    if ((v = d.body.get('database'))) {
      const s = this.v.nonEmptyString(v, '"database"');
      if (s !== undefined) c.database = s;
    }
    const env = d.body.get('env');
    if (env) {
      const s = this.v.string(env, '"env"');
      if (s !== undefined) {
        if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(s)) c.env = s;
        else this.r.error(env.pos, 'Invalid value', `"env" must be an environment variable name such as "GITHUB_TOKEN", not "${s}"`);
      }
    } else if (DEFAULT_ENV[type]) {
      c.env = DEFAULT_ENV[type];
    }
    return this.r.errorCount === before ? c : undefined;
  }

  // ───────────────────────────── approvers ───────────────────────────────────

  private buildApprover(d: Decl, defaults: Defaults, credentials: Map<string, Credential>, policies: Map<string, string>): Approver | undefined {
    const type = d.type as (typeof APPROVER_TYPES)[number];
    const what = `${type === 'llm_approver' ? 'an' : 'a'} ${type}`;
    const before = this.r.errorCount;
    d.body.checkShape(this.r, what, APPROVER_ATTRIBUTES[type]);
    const credentialOf = (want: CredentialType): string | undefined => {
      const v = d.body.get('credential');
      if (!v) return undefined;
      const ref = this.v.ref(v, '"credential"');
      const decl = ref && this.resolve(ref, ['credential'], '"credential"');
      if (!decl || decl === 'builtin.dashboard') return undefined;
      if (decl.type !== want) {
        return this.r.error(v.pos, 'Wrong credential type', `${what} needs ${want === 'anthropic_manual_key' ? 'an' : 'a'} ${want} credential, but ${decl.id} is ${decl.type}`);
      }
      return credentials.has(decl.id) ? decl.id : undefined;
    };
    let v: Val | undefined;
    if (type === 'llm_approver') {
      const model = this.required(d, 'model', what);
      const modelName = model && this.v.nonEmptyString(model, '"model"');
      const credVal = this.required(d, 'credential', what);
      const credential = credVal ? credentialOf('anthropic_manual_key') : undefined;
      const pol = this.required(d, 'policy', what);
      let policy: string | undefined;
      if (pol) {
        if (typeof pol.json === 'string' && /^\$\{[\s\S]*\}$/.test(pol.json)) {
          const ref = this.v.ref(pol, '"policy"');
          const decl = ref && this.resolve(ref, ['policy'], '"policy"');
          if (decl && decl !== 'builtin.dashboard') policy = policies.get(decl.id);
        } else {
          policy = this.v.nonEmptyString(pol, '"policy"');
        }
      }
      const a: Approver = { id: d.id, type, name: d.name, model: modelName ?? '', credential: credential ?? '', policy: policy ?? '', pos: d.pos };
      if ((v = d.body.get('base_url'))) {
        const s = this.v.string(v, '"base_url"');
        if (s !== undefined) {
          if (/^https?:\/\//.test(s)) a.baseUrl = s;
          else this.r.error(v.pos, 'Invalid value', `"base_url" must be an http:// or https:// URL, not "${s}"`);
        }
      }
      if ((v = d.body.get('timeout'))) {
        const n = this.seconds(v, '"timeout"');
        if (n === 0) this.r.error(v.pos, 'Invalid value', '"timeout" must be more than 0 seconds');
        else if (n !== undefined) a.timeoutSec = n;
      }
      return this.r.errorCount === before ? a : undefined;
    }
    const a: Approver = {
      id: d.id,
      type,
      name: d.name,
      timeoutSec: defaults.humanTimeoutSec,
      interactive: true,
      approvers: [],
      requireApprovers: 1,
      onTimeout: defaults.humanOnTimeout,
      pos: d.pos,
    };
    if ((v = d.body.get('channel'))) {
      const s = this.v.nonEmptyString(v, '"channel"');
      if (s !== undefined) a.channel = s;
    }
    if (d.body.has('credential')) {
      const c = credentialOf('slack_tokens');
      if (c) a.credential = c;
    }
    if ((v = d.body.get('timeout'))) {
      const n = this.seconds(v, '"timeout"');
      if (n === 0) this.r.error(v.pos, 'Invalid value', '"timeout" must be more than 0 seconds');
      else if (n !== undefined) a.timeoutSec = n;
    }
    if ((v = d.body.get('interactive'))) a.interactive = this.v.bool(v, '"interactive"') ?? true;
    if ((v = d.body.get('approvers'))) a.approvers = this.v.stringList(v, '"approvers"') ?? [];
    if ((v = d.body.get('require_approvers'))) {
      const n = this.v.int(v, '"require_approvers"', 1);
      if (n !== undefined) {
        if (a.approvers.length > 0 && n > a.approvers.length) {
          this.r.error(v.pos, 'Invalid value', `"require_approvers" is ${n} but only ${a.approvers.length} approver${a.approvers.length > 1 ? 's are' : ' is'} listed`);
        } else a.requireApprovers = n;
      }
    }
    if ((v = d.body.get('on_timeout'))) a.onTimeout = this.v.oneOf(v, '"on_timeout"', ['deny', 'allow']) ?? a.onTimeout;
    return this.r.errorCount === before ? a : undefined;
  }

  // ───────────────────────────── profiles ────────────────────────────────────

  private buildProfile(d: Decl, credentials: Map<string, Credential>, endpoints: Map<string, Endpoint>): Profile | undefined {
    const before = this.r.errorCount;
    d.body.checkShape(this.r, 'a profile', PROFILE_ATTRIBUTES);
    const list = this.required(d, 'credentials', 'a profile');
    const items = list ? this.v.list(list, '"credentials"') : undefined;
    const entries: ProfileEntry[] = [];
    for (const item of items ?? []) {
      let refVal: Val = item;
      let placeholder: string | undefined;
      if (item.json !== null && typeof item.json === 'object' && !Array.isArray(item.json)) {
        const obj = this.v.object(item, 'a profile entry');
        if (!obj) continue;
        for (const [key, val] of obj) {
          if (!PROFILE_ENTRY_KEYS.includes(key)) {
            this.r.error(val.keyPos, 'Unsupported argument', `a profile entry has no attribute "${key}"${didYouMean(key, PROFILE_ENTRY_KEYS)}; it takes credential and placeholder`);
          }
        }
        const c = obj.get('credential');
        if (!c) {
          this.r.error(item.pos, 'Missing required argument', 'a profile entry { … } needs "credential"');
          continue;
        }
        refVal = c;
        const ph = obj.get('placeholder');
        if (ph) {
          const s = this.v.nonEmptyString(ph, '"placeholder"');
          if (s !== undefined && /\s/.test(s)) this.r.error(ph.pos, 'Invalid value', '"placeholder" must not contain whitespace');
          else placeholder = s;
        }
      }
      const ref = this.v.ref(refVal, 'a profile entry');
      const decl = ref && this.resolve(ref, ['credential'], 'a profile entry');
      if (!decl || decl === 'builtin.dashboard' || !credentials.has(decl.id)) continue;
      if (entries.some((e) => e.credential === decl.id)) {
        this.r.error(refVal.pos, 'Duplicate reference', `${decl.id} is listed twice in profile "${d.name}"`);
        continue;
      }
      entries.push(placeholder === undefined ? { credential: decl.id, pos: refVal.pos } : { credential: decl.id, placeholder, pos: refVal.pos });
    }
    if (this.r.errorCount !== before) return undefined;
    this.checkAmbiguity(d, entries, credentials, endpoints);
    const reach: string[] = [];
    for (const e of entries) for (const id of credentials.get(e.credential)!.endpoints) if (!reach.includes(id)) reach.push(id);
    this.checkHostClaims(d, reach, endpoints);
    return this.r.errorCount === before ? { name: d.name, entries, endpoints: reach, pos: d.pos } : undefined;
  }

  private checkAmbiguity(d: Decl, entries: ProfileEntry[], credentials: Map<string, Credential>, endpoints: Map<string, Endpoint>): void {
    const placeholders = new Map<string, ProfileEntry>();
    for (const e of entries) {
      if (e.placeholder === undefined) continue;
      const prev = placeholders.get(e.placeholder);
      if (prev) {
        this.r.error(
          e.pos,
          'Ambiguous profile credentials',
          `placeholder "${e.placeholder}" is used for both ${prev.credential} and ${e.credential} in profile "${d.name}"; give each entry its own placeholder`,
        );
      } else placeholders.set(e.placeholder, e);
    }
    for (const epId of endpoints.keys()) {
      const bare = entries.filter((e) => e.placeholder === undefined && credentials.get(e.credential)!.endpoints.includes(epId));
      for (let i = 1; i < bare.length; i++) {
        const b = credentials.get(bare[i]!.credential)!;
        for (let j = 0; j < i; j++) {
          const a = credentials.get(bare[j]!.credential)!;
          // SQL credentials are told apart by the startup user (and database) the agent sends.
          const sqlDistinct = a.user !== undefined && b.user !== undefined && (a.user !== b.user || (a.database ?? '') !== (b.database ?? ''));
          if (sqlDistinct) continue;
          this.r.error(
            bare[i]!.pos,
            'Ambiguous profile credentials',
            `${a.id} and ${b.id} both reach ${epId} in profile "${d.name}" without a placeholder; write { credential = ${b.id}, placeholder = "…" }`,
          );
          break;
        }
      }
    }
  }

  private checkHostClaims(d: Decl, reach: string[], endpoints: Map<string, Endpoint>): void {
    const claimed = new Map<string, string>();
    for (const id of reach) {
      const ep = endpoints.get(id)!;
      for (const h of ep.hosts) {
        const key = patternKey(h);
        const prev = claimed.get(key);
        if (prev && prev !== id) {
          this.r.error(
            d.namePos,
            'Host claimed twice',
            `"${key}" belongs to both ${prev} and ${id}, which are both in profile "${d.name}"; an agent's traffic must map to one endpoint`,
          );
        } else claimed.set(key, id);
      }
    }
  }

  // ───────────────────────────── rules ───────────────────────────────────────

  private buildRule(
    d: Decl,
    index: number,
    endpoints: Map<string, Endpoint>,
    credentials: Map<string, Credential>,
  ): { rule: Rule; condition?: CompiledCondition } | undefined {
    const before = this.r.errorCount;
    d.body.checkShape(this.r, 'a rule', RULE_ATTRIBUTES);
    const refs = this.endpointRefs(d, 'a rule', endpoints, true);
    let family: Family | undefined;
    if (refs && refs.length > 0) {
      const first = endpoints.get(refs[0]!.id)!;
      family = first.family;
      for (const ref of refs.slice(1)) {
        const ep = endpoints.get(ref.id)!;
        if (ep.family !== first.family) {
          family = undefined;
          this.r.error(
            ref.pos,
            'Mixed-family rule',
            `${first.id} is ${first.family} but ${ep.id} is ${ep.family}; one rule's conditions see one family's facts — write one rule per family`,
          );
        }
      }
    }
    let v: Val | undefined;
    const rule: Rule = {
      name: d.name,
      index,
      endpoints: refs?.map((r) => r.id) ?? [],
      family: family ?? 'http',
      priority: 0,
      condition: '',
      reason: '',
      disabled: false,
      pos: d.pos,
    };
    if ((v = d.body.get('priority'))) rule.priority = this.v.int(v, '"priority"') ?? 0;
    let condition: CompiledCondition | undefined;
    if ((v = d.body.get('condition'))) {
      const s = this.conditionText(v);
      if (s !== undefined) {
        rule.condition = s;
        rule.conditionPos = v.pos;
        // Checked whenever the family is known, so CEL errors show up with the rule's other errors.
        if (family) condition = this.compileRuleCondition(d, rule);
      }
    }
    if ((v = d.body.get('disabled'))) rule.disabled = this.v.bool(v, '"disabled"') ?? false;
    if ((v = d.body.get('reason'))) rule.reason = this.v.string(v, '"reason"') ?? '';
    if ((v = d.body.get('description'))) this.v.string(v, '"description"');
    if ((v = d.body.get('credential'))) {
      const ref = this.v.ref(v, '"credential"');
      const decl = ref && this.resolve(ref, ['credential'], '"credential"');
      if (decl && decl !== 'builtin.dashboard' && credentials.has(decl.id)) {
        const cred = credentials.get(decl.id)!;
        if (refs && !refs.some((r) => cred.endpoints.includes(r.id))) {
          this.r.error(v.pos, 'Credential never applies', `${decl.id} is not bound to any endpoint of rule "${d.name}", so the rule could never match`);
        } else rule.credential = decl.id;
      }
    }
    const verdict = d.body.get('verdict');
    const approve = d.body.get('approve');
    if (verdict && approve) {
      this.r.error(d.body.namePos('approve'), 'Conflicting arguments', 'a rule takes exactly one of "verdict" and "approve"');
    } else if (!verdict && !approve) {
      this.r.error(d.pos, 'Missing required argument', 'a rule needs "verdict" (allow/deny) or "approve" (an approver chain)');
    } else if (verdict) {
      const s = this.v.oneOf(verdict, '"verdict"', ['allow', 'deny']);
      if (s) rule.verdict = s;
    } else if (approve) {
      const items = this.v.list(approve, '"approve"');
      if (items && items.length === 0) this.r.error(approve.pos, 'Invalid value', '"approve" must name at least one approver');
      const chain: string[] = [];
      for (const item of items ?? []) {
        const ref = this.v.ref(item, 'each element of "approve"');
        const decl = ref && this.resolve(ref, ['approver', 'builtin'], '"approve"');
        if (!decl) continue;
        chain.push(decl === 'builtin.dashboard' ? decl : decl.id);
      }
      rule.approve = chain;
    }
    if (this.r.errorCount !== before) return undefined;
    return condition ? { rule, condition } : { rule };
  }

  /** Condition text: a string or heredoc; `${…}` would be HCL interpolation, which CEL never needs. */
  private conditionText(v: Val): string | undefined {
    if (typeof v.json !== 'string') {
      return this.r.error(v.pos, 'Incorrect attribute value type', `"condition" must be a CEL expression in a string or heredoc, not ${typeof v.json === 'boolean' ? 'a bool' : 'a ' + typeof v.json}`);
    }
    return this.v.string(v, '"condition"');
  }

  private compileRuleCondition(d: Decl, rule: Rule): CompiledCondition | undefined {
    if (rule.condition.trim() === '') return undefined;
    const v = d.body.get('condition')!;
    const result = compileCondition(rule.condition, rule.family);
    if (result.ok) {
      if ([...result.condition.reads].some((r) => r.startsWith('content.'))) {
        // Nothing produces content facts yet (no detector ships): live, such a condition is
        // unknown on every action it is asked about, so the rule denies them all (fail closed),
        // while a fixture that states `content` passes. Say so before it surprises in production.
        this.r.warn(
          v.pos,
          'No content detector',
          `rule "${rule.name}" reads content.*, which no engine produces yet: live, its condition is unknown and the rule denies every action it is asked about (fixtures that state content still pass)`,
        );
      }
      return result.condition;
    }
    // Map the CEL offset back into the file (through heredoc indentation and string escapes).
    const raw = typeof v.json === 'string' ? v.json : rule.condition;
    const pos = v.src ? stringOffsetPos(d.file.src, v.src, raw, result.error.offset) : v.pos;
    const detail = caretExcerpt(d.file.src.lineText(pos.line), pos.line, pos.col);
    const sees = FAMILY_VARIABLES[rule.family].join(', ');
    this.r.error(pos, 'Invalid condition', `${result.error.message}; rule "${rule.name}" is on ${rule.family} endpoints, whose conditions see ${sees}`, detail);
    return undefined;
  }
}

function validIpv4Cidr(s: string): boolean {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(s);
  if (!m) return false;
  const octets = m.slice(1, 5).map(Number);
  return octets.every((o) => o <= 255) && Number(m[5]) >= 8 && Number(m[5]) <= 30;
}

