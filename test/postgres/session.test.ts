/**
 * The sans-I/O session with byte fixtures: frontend bytes in, policy
 * decisions through the real enforcer, scripted server bytes back, and
 * exact assertions on what each side receives.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { serialize } from 'pg-protocol';
import { Parser } from 'pg-protocol/dist/parser.js';
import { PostgresSession } from '../../src/protocols/postgres/session.js';
import { errorResponse, readyForQuery, parameterStatus } from '../../src/protocols/postgres/backend-messages.js';
import { initSqlParser } from '../../src/protocols/postgres/sql.js';
import { StatementMemory } from '../../src/protocols/postgres/statements.js';
import { scrubberFor } from '../../src/vault/scrub.js';
import { makeHarness, oneCredentialPolicy, settle, type Harness } from './support/harness.js';

const POLICY = oneCredentialPolicy({
  host: 'db.test:5432',
  credential: 'db',
  user: 'app',
  bodyBuffer: '1KiB',
  rules: `
rule "no-drop" {
  endpoint  = postgres.db
  condition = "sql.verb == 'drop'"
  verdict   = "deny"
  reason    = "DROP is not for agents"
}
rule "no-delete" {
  endpoint  = postgres.db
  condition = "sql.verb == 'delete'"
  verdict   = "deny"
  reason    = "DELETE is not for agents"
}
rule "fastpath-ok" {
  endpoint  = postgres.db
  condition = "sql.verb == 'function_call' && sql.user == 'fastpath'"
  verdict   = "allow"
}
`,
});

// ── backend message builders (what a PostgreSQL server sends) ──
function msg(type: string, body: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(5 + body.length);
  b.write(type, 0, 'latin1');
  b.writeInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
}
const be = {
  parseComplete: () => msg('1'),
  bindComplete: () => msg('2'),
  noData: () => msg('n'),
  complete: (tag: string) => msg('C', Buffer.from(tag + '\0')),
  dataRow: (v: string) => {
    const val = Buffer.from(v);
    const body = Buffer.alloc(2 + 4 + val.length);
    body.writeInt16BE(1, 0);
    body.writeInt32BE(val.length, 2);
    val.copy(body, 6);
    return msg('D', body);
  },
  copyIn: () => msg('G', Buffer.from([0, 0, 1, 0, 0])),
  error: (code: string, text: string) => errorResponse({ severity: 'ERROR', code, message: text }),
  ready: (s: 'I' | 'T' | 'E' = 'I') => readyForQuery(s),
};

interface Parsed {
  name: string;
  code?: string;
  message?: string;
  status?: string;
  text?: string;
}
function parseBackend(bytes: Buffer): Parsed[] {
  const out: Parsed[] = [];
  new Parser().parse(bytes, (m) => out.push(m as unknown as Parsed));
  return out;
}

/** Split frontend bytes back into messages: [type, sql-or-name]. */
function frontendTypes(bytes: Buffer): string {
  let s = '';
  for (let i = 0; i < bytes.length; ) {
    s += String.fromCharCode(bytes[i]!);
    i += 1 + bytes.readInt32BE(i + 1);
  }
  return s;
}

const PROBE = serialize.query('clawpatrol: statement denied by policy');

describe('PostgresSession', () => {
  let h: Harness;
  let session: PostgresSession;
  let toAgent: Buffer[];
  let toUpstream: Buffer[];
  let closed: string | null;
  let user = 'app';

  beforeAll(async () => {
    await initSqlParser();
    h = await makeHarness(POLICY, { 'postgres_credential.db': { password: 'vault-pw-0123' } });
  });
  afterAll(() => h.cleanup());

  function start(opts: { user?: string } = {}): void {
    toAgent = [];
    toUpstream = [];
    closed = null;
    user = opts.user ?? 'app';
    h.audit.length = 0;
    h.actions.length = 0;
    session = new PostgresSession(
      {
        endpointId: 'postgres.db',
        host: 'db.test',
        port: 5432,
        profile: 'default',
        peer: { id: 'test-peer' },
        user,
        database: 'app',
        maxBuffered: h.policy.model.gateway.limits.bodyBuffer,
        credentialId: 'postgres_credential.db',
        scrubber: scrubberFor(['vault-pw-0123']),
        probeName: () => 'probe',
      },
      {
        toAgent: (d) => toAgent.push(Buffer.from(d)),
        toUpstream: (d) => toUpstream.push(Buffer.from(d)),
        decide: (action) => {
          void h.enforcer.enforce(action).then((e) => session.decided(e));
        },
        close: (reason) => {
          closed = reason;
        },
      },
    );
  }
  const agentSends = async (...parts: Buffer[]): Promise<void> => {
    session.fromAgent(Buffer.concat(parts));
    await settle();
  };
  const serverSends = async (...parts: Buffer[]): Promise<void> => {
    session.fromUpstream(Buffer.concat(parts));
    await settle();
  };
  const upstreamBytes = (): Buffer => Buffer.concat(toUpstream.splice(0));
  const agentBytes = (): Buffer => Buffer.concat(toAgent.splice(0));

  beforeEach(() => start());

  it('forwards an allowed Query byte for byte and audits its command tag', async () => {
    const q = serialize.query('SELECT 1');
    await agentSends(q);
    expect(upstreamBytes().equals(q)).toBe(true);
    const reply = Buffer.concat([be.dataRow('1'), be.complete('SELECT 1'), be.ready()]);
    await serverSends(reply);
    expect(agentBytes().equals(reply)).toBe(true);
    expect(h.audit).toHaveLength(1);
    expect(h.audit[0]).toMatchObject({ outcome: 'allow', status: 'SELECT 1', bytesIn: q.length, bytesOut: reply.length });
  });

  it('replaces a denied Query by a failing probe and answers 42501 where the server reports the probe', async () => {
    await agentSends(serialize.query('SELECT 1; DROP TABLE users'));
    // The DROP never reaches the server; the probe does.
    expect(upstreamBytes().equals(PROBE)).toBe(true);
    await serverSends(be.error('42601', 'syntax error at or near "clawpatrol"'), be.ready('I'));
    const got = parseBackend(agentBytes());
    expect(got.map((m) => m.name)).toEqual(['error', 'readyForQuery']);
    expect(got[0]).toMatchObject({ code: '42501', message: 'DROP is not for agents' });
    expect(h.audit[0]).toMatchObject({ outcome: 'deny', rule: 'no-drop', status: '42501' });
  });

  it('inside a transaction the server aborts it (status E) exactly as for any failed statement', async () => {
    await agentSends(serialize.query('DELETE FROM t'));
    expect(upstreamBytes().equals(PROBE)).toBe(true);
    await serverSends(be.error('42601', 'syntax error'), be.ready('E'));
    const got = parseBackend(agentBytes());
    expect(got.map((m) => [m.name, m.code ?? m.status])).toEqual([
      ['error', '42501'],
      ['readyForQuery', 'E'],
    ]);
    expect(session.txStatus).toBe('E');
  });

  it('decides Parse once for P B D E S and forwards the batch unchanged', async () => {
    const batch = Buffer.concat([
      serialize.parse({ text: 'SELECT $1::int' }),
      serialize.bind({ values: ['5'] }),
      serialize.describe({ type: 'P' }),
      serialize.execute({}),
      serialize.sync(),
    ]);
    await agentSends(batch);
    expect(upstreamBytes().equals(batch)).toBe(true);
    expect(h.actions).toHaveLength(1);
    await serverSends(be.parseComplete(), be.bindComplete(), be.noData(), be.dataRow('5'), be.complete('SELECT 1'), be.ready());
    expect(h.audit).toHaveLength(1);
    expect(h.audit[0]).toMatchObject({ outcome: 'allow', status: 'SELECT 1' });
  });

  it('pipelining P B E P B E S with the middle statement denied: the later ones never reach the server', async () => {
    await agentSends(
      serialize.parse({ text: 'SELECT 1' }),
      serialize.bind({}),
      serialize.execute({}),
      serialize.parse({ text: 'DROP TABLE users' }),
      serialize.bind({}),
      serialize.execute({}),
      serialize.parse({ text: 'SELECT 3' }),
      serialize.bind({}),
      serialize.execute({}),
      serialize.sync(),
    );
    const up = upstreamBytes();
    // P B E, then the probe Execute in place of the denied Parse, then only the Sync.
    expect(frontendTypes(up)).toBe('PBEES');
    expect(up.includes(Buffer.from('DROP'))).toBe(false);
    expect(up.includes(Buffer.from('SELECT 3'))).toBe(false);
    await serverSends(
      be.parseComplete(),
      be.bindComplete(),
      be.dataRow('1'),
      be.complete('SELECT 1'),
      be.error('34000', 'portal "probe" does not exist'),
      be.ready('I'),
    );
    const got = parseBackend(agentBytes());
    expect(got.map((m) => m.name)).toEqual(['parseComplete', 'bindComplete', 'dataRow', 'commandComplete', 'error', 'readyForQuery']);
    expect(got[4]).toMatchObject({ code: '42501', message: 'DROP is not for agents' });
    // The denial is audited at once; the allowed statement when its batch completes.
    expect(h.audit.map((a) => a.outcome)).toEqual(['deny', 'allow']);
  });

  it('after a server error in the batch, the rest up to Sync is not decided and not sent', async () => {
    await agentSends(serialize.parse({ text: 'SELECT nope' }), serialize.bind({}), serialize.execute({}));
    expect(frontendTypes(upstreamBytes())).toBe('PBE');
    await serverSends(be.error('42703', 'column "nope" does not exist'));
    await agentSends(serialize.parse({ text: 'SELECT 2' }), serialize.bind({}), serialize.execute({}), serialize.sync());
    expect(frontendTypes(upstreamBytes())).toBe('S');
    expect(h.actions).toHaveLength(1);
    await serverSends(be.ready());
    expect(parseBackend(agentBytes()).map((m) => m.name)).toEqual(['error', 'readyForQuery']);
  });

  it('holds a Query until every earlier ReadyForQuery has arrived (settings barrier)', async () => {
    await agentSends(serialize.query('SELECT 1'), serialize.query('SELECT 2'));
    expect(upstreamBytes().equals(serialize.query('SELECT 1'))).toBe(true);
    await serverSends(be.complete('SELECT 1'));
    expect(upstreamBytes().length).toBe(0);
    await serverSends(be.ready());
    expect(upstreamBytes().equals(serialize.query('SELECT 2'))).toBe(true);
  });

  it('ends the session when the server reports standard_conforming_strings off', async () => {
    await agentSends(serialize.query("SET standard_conforming_strings = off"), serialize.query("SELECT '\\' ; DROP TABLE t; --'"));
    expect(upstreamBytes().equals(serialize.query('SET standard_conforming_strings = off'))).toBe(true);
    await serverSends(be.complete('SET'), parameterStatus('standard_conforming_strings', 'off'), be.ready());
    const got = parseBackend(agentBytes());
    expect(got[got.length - 1]).toMatchObject({ name: 'error', code: '0A000' });
    expect(closed).toMatch(/standard_conforming_strings/);
    expect(upstreamBytes().length).toBe(0);
  });

  it('treats a backslash after an executed statement in the same pipeline as uninspectable', async () => {
    await agentSends(
      serialize.parse({ text: 'SET standard_conforming_strings = off' }),
      serialize.bind({}),
      serialize.execute({}),
      serialize.parse({ text: "SELECT 'a\\'\n' ; DROP TABLE t; --'" }),
    );
    const up = upstreamBytes();
    expect(frontendTypes(up)).toBe('PBEE'); // the second Parse became the probe
    expect(h.actions[1]!.facts.sql).toMatchObject({ inspected: false });
    expect(h.actions[1]!.facts.sql!.inspect_error).toMatch(/a backslash or non-ASCII text after an executed statement/);
    expect(h.audit.find((a) => a.outcome === 'deny')).toMatchObject({ failClosed: true });
  });

  it('SQL EXECUTE carries the verbs of the statement PREPARE defined', async () => {
    await agentSends(serialize.query('PREPARE p AS DELETE FROM users'));
    expect(upstreamBytes().equals(serialize.query('PREPARE p AS DELETE FROM users'))).toBe(true);
    await serverSends(be.complete('PREPARE'), be.ready());
    agentBytes();
    await agentSends(serialize.query('EXECUTE p'));
    expect(upstreamBytes().equals(PROBE)).toBe(true);
    expect(h.audit[1]).toMatchObject({ outcome: 'deny', rule: 'no-delete' });
    expect((h.actions[1]!.facts.sql!.verbs as string[]).includes('delete')).toBe(true);
  });

  it('an Execute in a later batch is decided with the verbs of the named statement', async () => {
    await agentSends(serialize.parse({ name: 's1', text: 'SELECT 42' }), serialize.sync());
    await serverSends(be.parseComplete(), be.ready());
    upstreamBytes();
    await agentSends(serialize.bind({ statement: 's1' }), serialize.execute({}), serialize.sync());
    expect(frontendTypes(upstreamBytes())).toBe('BES');
    expect(h.actions).toHaveLength(2);
    expect(h.actions[1]!.facts.sql).toMatchObject({ verb: 'select', statement: 'SELECT 42' });
  });

  it('an Execute of a portal the gateway never saw bound is uninspectable and denied', async () => {
    await agentSends(serialize.execute({ portal: 'cursor_from_elsewhere' }), serialize.sync());
    expect(frontendTypes(upstreamBytes())).toBe('ES');
    expect(h.audit[0]).toMatchObject({ outcome: 'deny', failClosed: true });
    expect(h.actions[0]!.facts.sql!.inspect_error).toMatch(/portal "cursor_from_elsewhere" whose statement the gateway has not seen/);
  });

  it('FunctionCall is denied unless a rule allows verb function_call', async () => {
    const fc = msg('F', Buffer.from([0, 0, 0x0a, 0x3b, 0, 0, 0, 0, 0, 0]));
    await agentSends(fc);
    expect(upstreamBytes().equals(PROBE)).toBe(true);
    expect(h.actions[0]!.facts.sql).toMatchObject({ verb: 'function_call' });
    await serverSends(be.error('42601', 'syntax error'), be.ready());
    const got = parseBackend(agentBytes());
    // The policy denied it (SQL backstop), so the audit record and the agent agree.
    expect(got[0]).toMatchObject({ name: 'error', code: '42501' });
    expect(got[0]!.message).toMatch(/FunctionCall \(verb function_call\)/);
    expect(h.audit).toEqual([expect.objectContaining({ outcome: 'deny', rule: '', failClosed: true, reason: got[0]!.message })]);
    start({ user: 'fastpath' });
    await agentSends(fc);
    expect(upstreamBytes().equals(fc)).toBe(true);
  });

  it('COPY FROM STDIN: data flows after the decision; Syncs the server ignores during COPY do not stall the session', async () => {
    await agentSends(
      serialize.parse({ text: 'COPY t FROM STDIN' }),
      serialize.bind({}),
      serialize.execute({}),
      serialize.sync(),
    );
    expect(frontendTypes(upstreamBytes())).toBe('PBES');
    await serverSends(be.parseComplete(), be.bindComplete(), be.copyIn());
    await agentSends(serialize.copyData(Buffer.from('1\n')), serialize.copyDone(), serialize.sync());
    expect(frontendTypes(upstreamBytes())).toBe('dcS');
    await serverSends(be.complete('COPY 1'), be.ready());
    // Nothing is outstanding: the next Query is decided at once.
    await agentSends(serialize.query('SELECT 1'));
    expect(upstreamBytes().equals(serialize.query('SELECT 1'))).toBe(true);
  });

  it('streams an oversized statement when no rule needs its text, denies it otherwise', async () => {
    const big = 'SELECT ' + Array.from({ length: 400 }, (_, i) => `${i}`).join('+');
    expect(big.length).toBeGreaterThan(1024);
    await agentSends(serialize.query(big));
    // The test policy reads sql.verb, so the text is needed: the first rule fails closed in decide, nothing is sent.
    expect(upstreamBytes().equals(PROBE)).toBe(true);
    expect(h.actions[0]!.facts.sql).toMatchObject({ inspected: false, statement: '', statement_truncated: true });
    expect(h.audit[0]).toMatchObject({ outcome: 'deny', rule: 'no-drop', failClosed: true });
    await serverSends(be.error('42601', 'syntax error'), be.ready());
    const got = parseBackend(agentBytes());
    expect(got[0]).toMatchObject({ name: 'error', code: '42501', message: h.audit[0]!.reason });
  });

  it('a malformed frame ends the session with 08P01 and nothing after it is forwarded', async () => {
    await agentSends(serialize.query('SELECT 1'), Buffer.from([0x51, 0, 0, 0, 9, 0x41, 0x42, 0x43, 0x44]), serialize.query('SELECT 2'));
    const got = parseBackend(agentBytes());
    expect(got).toEqual([expect.objectContaining({ name: 'error', code: '08P01' })]);
    expect(closed).toMatch(/missing its NUL/);
    expect(upstreamBytes().length).toBe(0);
  });

  it('redacts the vault password from server bytes, also split across chunks', async () => {
    await agentSends(serialize.query("SELECT secret FROM leaks"));
    upstreamBytes();
    const reply = Buffer.concat([be.dataRow('x vault-pw-0123 y'), be.complete('SELECT 1'), be.ready()]);
    const cut = reply.indexOf('pw-01');
    session.fromUpstream(reply.subarray(0, cut));
    session.fromUpstream(reply.subarray(cut));
    await settle();
    const got = agentBytes();
    expect(got.length).toBe(reply.length);
    expect(got.includes(Buffer.from('vault-pw-0123'))).toBe(false);
    expect(got.includes(Buffer.from('x ************* y'))).toBe(true);
  });

  it('Terminate is forwarded and ends the session', async () => {
    await agentSends(serialize.end());
    expect(upstreamBytes().equals(serialize.end())).toBe(true);
    expect(closed).toMatch(/terminated/);
  });
});

describe('PostgresSession with decisions answered at once (Enforcer.enforceNow)', () => {
  let h: Harness;
  beforeAll(async () => {
    await initSqlParser();
    h = await makeHarness(POLICY, { 'postgres_credential.db': { password: 'vault-pw-0123' } });
  });
  afterAll(() => h.cleanup());

  function syncSession(): { session: PostgresSession; up: Buffer[]; agent: Buffer[] } {
    const up: Buffer[] = [];
    const agent: Buffer[] = [];
    const session: PostgresSession = new PostgresSession(
      {
        endpointId: 'postgres.db',
        host: 'db.test',
        port: 5432,
        profile: 'default',
        peer: { id: 'sync' },
        user: 'app',
        database: 'app',
        maxBuffered: h.policy.model.gateway.limits.bodyBuffer,
        credentialId: 'postgres_credential.db',
        scrubber: null,
        probeName: () => 'probe',
      },
      {
        toAgent: (d) => agent.push(Buffer.from(d)),
        toUpstream: (d) => up.push(Buffer.from(d)),
        decide: (action) => h.enforcer.enforceNow!(action) ?? void h.enforcer.enforce(action).then((e) => session.decided(e)),
        close: () => {},
      },
    );
    return { session, up, agent };
  }

  it('a long pipeline is decided and forwarded in one pass, with a denial in the middle handled like the server', () => {
    h.actions.length = 0;
    h.audit.length = 0;
    const { session, up } = syncSession();
    const pbe = (i: number): Buffer[] => [serialize.parse({ name: `s${i}`, text: `SELECT ${i}` }), serialize.bind({ statement: `s${i}` }), serialize.execute({})];
    const first = Array.from({ length: 3000 }, (_, i) => pbe(i)).flat();
    session.fromAgent(Buffer.concat([...first, serialize.sync()])); // no await: every decision came back at once
    expect(h.actions).toHaveLength(3000);
    expect(Buffer.concat(up.splice(0)).equals(Buffer.concat([...first, serialize.sync()]))).toBe(true);
    session.fromUpstream(Buffer.concat([...Array.from({ length: 3000 }, () => Buffer.concat([msg('1'), msg('2'), be.dataRow('1'), be.complete('SELECT 1')])), be.ready()]));
    // A denied Parse in the middle of a batch: the server skips to Sync, and so does the gateway.
    const before = Array.from({ length: 10 }, (_, i) => pbe(3000 + i)).flat();
    const after = Array.from({ length: 10 }, (_, i) => pbe(4000 + i)).flat();
    session.fromAgent(Buffer.concat([...before, serialize.parse({ text: 'DROP TABLE users' }), serialize.bind({}), serialize.execute({}), ...after, serialize.sync()]));
    expect(Buffer.concat(up).equals(Buffer.concat([...before, serialize.execute({ portal: 'probe', rows: 0 }), serialize.sync()]))).toBe(true);
    expect(h.actions).toHaveLength(3011);
    expect(h.audit.filter((a) => a.outcome === 'deny')).toEqual([expect.objectContaining({ rule: 'no-drop' })]);
  });

  it('an oversized Query decided at once is discarded when denied and streamed when allowed', async () => {
    h.actions.length = 0;
    const { session, up } = syncSession();
    const big = 'SELECT ' + Array.from({ length: 400 }, (_, i) => `${i}`).join('+');
    session.fromAgent(serialize.query(big));
    // POLICY reads sql.verb: the text is needed, so the first rule fails closed.
    expect(Buffer.concat(up).equals(PROBE)).toBe(true);
    expect(h.actions[0]!.facts.sql).toMatchObject({ statement_truncated: true });
  });
});

describe('StatementMemory', () => {
  beforeAll(() => initSqlParser());

  it('keys names as the server does: two names equal in their first 63 bytes are one statement', () => {
    const m = new StatementMemory();
    const a = 'x'.repeat(63) + 'A';
    const b = 'x'.repeat(63) + 'B';
    m.allowed({ kind: 'P', name: a, sql: 'DELETE FROM t' }, m.analyze('DELETE FROM t'), 'DELETE FROM t', 0);
    m.allowed({ kind: 'P', name: b, sql: 'SELECT 1' }, m.analyze('SELECT 1'), 'SELECT 1', 0);
    m.bind('', b, 1);
    // The server kept the DELETE under that key: the gateway must not believe it is only a SELECT.
    expect(m.decisionInput({ kind: 'E', portal: '' }).analysis.verbs).toContain('delete');
  });
});

describe('PostgresSession with a policy that never reads the statement text', () => {
  let h: Harness;
  beforeAll(async () => {
    await initSqlParser();
    h = await makeHarness(
      oneCredentialPolicy({
        host: 'db.test:5432',
        credential: 'db',
        user: 'loader',
        bodyBuffer: '1KiB',
        rules: `
rule "bulk-loader" {
  endpoint  = postgres.db
  condition = "sql.user == 'loader'"
  verdict   = "allow"
}
`,
      }),
      { 'postgres_credential.db': { password: 'loader-secret' } },
    );
  });
  afterAll(() => h.cleanup());

  it('streams an oversized Query to the server without buffering it, after the decision', async () => {
    const up: Buffer[] = [];
    let session!: PostgresSession;
    session = new PostgresSession(
      {
        endpointId: 'postgres.db',
        host: 'db.test',
        port: 5432,
        peer: { id: 'p' },
        user: 'loader',
        database: 'app',
        maxBuffered: 1024,
        credentialId: 'postgres_credential.db',
        scrubber: null,
      },
      {
        toAgent: () => {},
        toUpstream: (d) => up.push(Buffer.from(d)),
        decide: (a) => void h.enforcer.enforce(a).then((e) => session.decided(e)),
        close: () => {},
      },
    );
    const big = serialize.query("INSERT INTO t VALUES " + Array.from({ length: 2000 }, (_, i) => `(${i})`).join(','));
    expect(h.policy.needsFact('postgres.db', 'sql.statement')).toBe(false);
    // Arrives in pieces; the decision is made on the first piece, the rest is streamed as it comes.
    session.fromAgent(big.subarray(0, 2000));
    await settle();
    expect(h.actions).toHaveLength(1);
    expect(h.actions[0]!.facts.sql).toMatchObject({ inspected: false });
    session.fromAgent(big.subarray(2000, 9000));
    session.fromAgent(big.subarray(9000));
    await settle();
    expect(Buffer.concat(up).equals(big)).toBe(true);
  });
});
