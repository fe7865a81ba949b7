/**
 * The agent side of the startup phase, against the real listener and a real
 * PostgreSQL 15: encryption requests, protocol negotiation, refused
 * parameters, connections handed over by a transport (dialed host instead of
 * a known endpoint), and `raw` fixtures replayed through the same decoder.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:net';
import { serialize } from 'pg-protocol';
import { RawClient } from './support/raw-client.js';
import { PASSWORDS, startGatewayFixture, type GatewayFixture } from './support/gateway-fixture.js';
import { handlePostgresConnection } from '../../src/protocols/postgres/connection.js';
import { createPostgresEngine } from '../../src/protocols/postgres/index.js';
import { parsePostgresRaw } from '../../src/protocols/postgres/raw-fixture.js';
import { startPostgresListener } from '../../src/protocols/postgres/listener.js';
import { makeHarness, oneCredentialPolicy } from './support/harness.js';
import { actionsFromFixture, type Fixture } from '../../src/policy/fixtures.js';

function startupWithVersion(minor: number, params: Record<string, string>): Buffer {
  const body = Buffer.concat([...Object.entries(params).map(([k, v]) => Buffer.from(`${k}\0${v}\0`)), Buffer.from([0])]);
  const out = Buffer.alloc(8 + body.length);
  out.writeInt32BE(8 + body.length, 0);
  out.writeInt32BE((3 << 16) | minor, 4);
  body.copy(out, 8);
  return out;
}
const GSSENC = Buffer.from([0, 0, 0, 8, 4, 0xd2, 0x16, 0x30]);

describe('startup phase', () => {
  let f: GatewayFixture;
  beforeAll(async () => {
    f = await startGatewayFixture(`
rule "deny-drop" {
  endpoint  = postgres.db
  condition = "sql.verb == 'drop'"
  verdict   = "deny"
  reason    = "no drop"
}
rule "reads" {
  endpoint  = postgres.db
  condition = "sets.contains(['select', 'set'], sql.verbs)"
  verdict   = "allow"
}
rule "pg-default" {
  endpoint = postgres.db
  priority = -100
  verdict  = "deny"
  reason   = "everything else is off limits"
}
`);
  });
  afterAll(() => f?.stop());

  it('answers GSSENCRequest with N and carries on', async () => {
    const c = await RawClient.connect(f.port);
    c.send(GSSENC);
    await c.until(() => c.allBytes().length >= 1);
    expect(c.allBytes().toString('latin1')).toBe('N');
    c.reparseFrom(1);
    c.send(serialize.startup({ user: 'PH_scram', database: 'postgres' }));
    await c.until((ms) => ms.some((m) => m.name === 'readyForQuery'));
    expect(c.messages.map((m) => m.name)).toContain('backendKeyData');
    c.close();
  });

  it('refuses bytes smuggled behind an SSLRequest (they would count as encrypted)', async () => {
    const c = await RawClient.connect(f.port);
    c.send(serialize.requestSsl(), serialize.query('DROP TABLE accounts'));
    await c.until(() => c.closed);
    expect(c.messages.map((m) => [m.name, m.code])).toEqual([['error', '08P01']]);
    expect(f.count('accounts')).toBe(100);
  });

  it('negotiates protocol 3.2 and _pq_ options down to 3.0', async () => {
    const c = await RawClient.connect(f.port);
    c.send(startupWithVersion(2, { user: 'PH_scram', database: 'postgres', '_pq_.compression': 'on' }));
    await c.until((ms) => ms.some((m) => m.name === 'readyForQuery'));
    const raw = c.allBytes();
    expect(String.fromCharCode(raw[0]!)).toBe('v');
    expect(raw.readInt32BE(5)).toBe(0); // newest minor version supported
    expect(raw.includes(Buffer.from('_pq_.compression\0'))).toBe(true);
    c.close();
  });

  it('refuses replication connections and a missing user', async () => {
    for (const params of [{ user: 'PH_scram', database: 'postgres', replication: 'database' }, { database: 'postgres' }]) {
      const c = await RawClient.connect(f.port);
      c.send(serialize.startup(params as Record<string, string>));
      await c.until(() => c.closed);
      expect(c.messages[0]).toMatchObject({ name: 'error' });
      c.close();
    }
  });

  it('refuses settings under which the gateway would read SQL differently from the server', async () => {
    // Agent asks for a client encoding where ASCII bytes can be part of a character.
    const sjis = await RawClient.connect(f.port);
    sjis.send(serialize.startup({ user: 'PH_scram', database: 'postgres', client_encoding: 'SJIS' }));
    await sjis.until(() => sjis.closed);
    expect(sjis.messages[0]).toMatchObject({ name: 'error', code: '0A000' });
    // The role's own default turns standard_conforming_strings off: refused at login.
    f.pg.sql('ALTER ROLE app_md5 SET standard_conforming_strings = off');
    try {
      const c = await RawClient.connect(f.port);
      c.send(serialize.startup({ user: 'PH_md5', database: 'postgres' }));
      await c.until(() => c.closed);
      expect(c.messages.find((m) => m.name === 'error')).toMatchObject({ code: '0A000' });
      expect(c.messages.some((m) => m.name === 'readyForQuery')).toBe(false);
    } finally {
      f.pg.sql('ALTER ROLE app_md5 RESET standard_conforming_strings');
    }
    // Changed during the session (SQL SET): the session ends before anything else is parsed.
    const live = await RawClient.connect(f.port, { user: 'PH_scram', database: 'postgres' });
    const since = live.messages.length;
    live.send(serialize.query("SET client_encoding = 'SJIS'"), serialize.query('SELECT 1'));
    await live.until(() => live.closed);
    const got = live.messages.slice(since);
    // The SET completes (the server already applied it); then the session ends: SELECT 1 is never parsed.
    expect(got.map((m) => m.name)).toEqual(['commandComplete', 'parameterStatus', 'readyForQuery', 'error']);
    expect(got[3]).toMatchObject({ code: '0A000' });
  });

  it('the session start evaluates no rule: a catch-all deny refuses statements, not the login', async () => {
    const from = f.h.audit.length;
    const c = await RawClient.connect(f.port, { user: 'PH_scram', database: 'template1' });
    const since = c.messages.length;
    c.send(serialize.query('SELECT current_database()'));
    const got = await c.readyCount(1, since);
    expect(got.find((m) => m.name === 'dataRow')?.fields).toEqual(['template1']);
    const since2 = c.messages.length;
    c.send(serialize.query('CREATE TABLE t (x int)'));
    const denied = await c.readyCount(1, since2);
    expect(denied[0]).toMatchObject({ name: 'error', code: '42501', message: 'everything else is off limits' });
    c.close();
    const [start, ...rest] = f.h.audit.slice(from);
    // The login is a record of its own: no rule, the resolved credential, the reason.
    expect(start).toMatchObject({ rule: '', outcome: 'allow', status: 'ok', credential: 'postgres_credential.scram' });
    expect(start!.reason).toMatch(/^session start on postgres\.db as postgres_credential\.scram/);
    expect(start!.facts).toMatchObject({ sql: { statement: '', database: 'template1', user: 'PH_scram' } });
    expect(rest.map((r) => [r.rule, r.outcome])).toEqual([
      ['reads', 'allow'],
      ['pg-default', 'deny'],
    ]);
    expect(f.h.actions.slice(-3).map((a) => a.phase)).toEqual(['session_start', undefined, undefined]);
    // Statements are pinned to the credential the session logged in with.
    expect(f.h.actions.slice(-2).map((a) => a.credential)).toEqual(['postgres_credential.scram', 'postgres_credential.scram']);
  });

  it('the session start fails when the credential cannot be resolved (ambiguous user): FATAL 42501, audited', async () => {
    const c = await RawClient.connect(f.port);
    c.send(serialize.startup({ user: 'nobody', database: 'postgres' }));
    await c.until(() => c.closed);
    expect(c.messages[0]).toMatchObject({ name: 'error', code: '42501' });
    expect(c.messages[0]!.message).toMatch(/several credentials can authenticate postgres\.db/);
    expect(f.h.audit[f.h.audit.length - 1]).toMatchObject({ rule: '', outcome: 'deny', failClosed: true, status: '42501' });
  });

  it('a credential with no secret in the vault refuses the login: FATAL 42501, audited, nothing sent upstream', async () => {
    const h = await makeHarness(oneCredentialPolicy({ host: `127.0.0.1:${f.pg.port}`, sslmode: 'disable', credential: 'unsealed', user: 'app_scram' }), {});
    const l = await startPostgresListener({ endpoint: 'postgres.db', listen: '127.0.0.1:0', enforcer: h.enforcer, policy: () => h.policy, profile: 'default' });
    try {
      const c = await RawClient.connect(l.address.port, { user: 'anything', database: 'postgres' });
      await c.until(() => c.closed);
      expect(c.messages.map((m) => [m.name, m.code, m.message])).toEqual([['error', '42501', 'credential postgres_credential.unsealed has no secret']]);
      expect(h.audit).toEqual([
        expect.objectContaining({ rule: '', outcome: 'deny', failClosed: true, credential: 'postgres_credential.unsealed', status: '42501' }),
      ]);
    } finally {
      await l.close();
      h.cleanup();
    }
  });

  it('statements of a logged-in session are decided without reading the vault again; a removed secret stops new logins only', async () => {
    const secrets: Record<string, Record<string, string>> = { 'postgres_credential.scram': { password: PASSWORDS.scram } };
    const h = await makeHarness(
      oneCredentialPolicy({
        host: `127.0.0.1:${f.pg.port}`,
        sslmode: 'disable',
        credential: 'scram',
        user: 'app_scram',
        rules: `rule "no-drop" {
  endpoint  = postgres.db
  condition = "'drop' in sql.verbs"
  verdict   = "deny"
}`,
      }),
      secrets,
    );
    const l = await startPostgresListener({ endpoint: 'postgres.db', listen: '127.0.0.1:0', enforcer: h.enforcer, policy: () => h.policy, profile: 'default' });
    try {
      const c = await RawClient.connect(l.address.port, { user: 'agent', database: 'postgres' });
      expect(h.actions[0]).toMatchObject({ phase: 'session_start' });
      expect(h.actions[0]!.upstreamAuthenticated).toBeUndefined();
      delete secrets['postgres_credential.scram']; // the operator removes the secret
      const since = c.messages.length;
      c.send(serialize.query('SELECT current_user'), serialize.query('DROP TABLE accounts'));
      const got = await c.readyCount(2, since);
      expect(got.find((m) => m.name === 'dataRow')?.fields).toEqual(['app_scram']);
      expect(got.find((m) => m.name === 'error')).toMatchObject({ code: '42501', message: 'denied by rule "no-drop"' });
      expect(h.actions.slice(1).map((a) => [a.upstreamAuthenticated, a.credential])).toEqual([
        [true, 'postgres_credential.scram'],
        [true, 'postgres_credential.scram'],
      ]);
      c.close();
      const again = await RawClient.connect(l.address.port, { user: 'agent', database: 'postgres' });
      await again.until(() => again.closed);
      expect(again.messages[0]).toMatchObject({ name: 'error', code: '42501', message: 'credential postgres_credential.scram has no secret' });
      expect(f.count('accounts')).toBe(100);
    } finally {
      await l.close();
      h.cleanup();
    }
  });

  it('a connection handed over by a transport finds its endpoint by the dialed address', async () => {
    let server: Server | undefined;
    try {
      server = createServer((socket) => {
        void handlePostgresConnection(socket, {
          enforcer: f.h.enforcer,
          policy: () => f.h.policy,
          cancels: f.cancels,
          peer: { id: 'wg:device-1', address: '10.55.0.9' },
          profile: 'default',
          dialedHost: '127.0.0.1',
          dialedIp: '127.0.0.1',
          dialedPort: f.pg.port,
        });
      });
      await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
      const port = (server.address() as { port: number }).port;
      const c = await RawClient.connect(port, { user: 'PH_md5', database: 'postgres' });
      const since = c.messages.length;
      c.send(serialize.query('SELECT current_user'));
      const got = await c.readyCount(1, since);
      expect(got.find((m) => m.name === 'dataRow')?.fields).toEqual(['app_md5']);
      expect(f.h.audit[f.h.audit.length - 1]).toMatchObject({ peer: 'wg:device-1', endpoint: 'postgres.db' });
      c.close();
      // An address no endpoint claims: told so, in the protocol.
      const other = createServer((socket) => {
        void handlePostgresConnection(socket, {
          enforcer: f.h.enforcer,
          policy: () => f.h.policy,
          peer: { id: 'wg:device-1' },
          profile: 'default',
          dialedHost: 'unknown.example',
          dialedPort: 5432,
        });
      });
      await new Promise<void>((r) => other.listen(0, '127.0.0.1', () => r()));
      const c2 = await RawClient.connect((other.address() as { port: number }).port, { user: 'x', database: 'y' });
      await c2.until(() => c2.closed);
      expect(c2.messages[0]).toMatchObject({ name: 'error', code: '28000' });
      expect(c2.messages[0]!.message).toMatch(/no postgres endpoint for unknown\.example/);
      // The refusal is the session start's audit record (the policy found no endpoint for the host).
      expect(f.h.audit[f.h.audit.length - 1]).toMatchObject({ endpoint: null, rule: '', status: '28000', host: 'unknown.example' });
      other.close();
    } finally {
      server?.close();
    }
  });
});

describe('createPostgresEngine', () => {
  let f: GatewayFixture;
  beforeAll(async () => {
    f = await startGatewayFixture('');
  });
  afterAll(() => f?.stop());

  it('serves endpoint listeners and handed-over sockets (with bytes the transport already read); close() ends them', async () => {
    const engine = createPostgresEngine({ enforcer: f.h.enforcer, policy: () => f.h.policy, cancels: f.cancels });
    const l = await engine.startEndpointListener({ endpointId: 'postgres.db', listen: '127.0.0.1:0', profile: 'default' });
    const viaListen = await RawClient.connect(l.address.port, { user: 'PH_scram', database: 'postgres' });
    expect(viaListen.messages.some((m) => m.name === 'readyForQuery')).toBe(true);

    // A transport that peeked at the first 3 bytes before handing the socket over.
    const server = createServer((socket) => {
      socket.once('data', (first: Buffer) => {
        socket.pause();
        void engine.handleConnection(socket, { peer: { id: 'wg:x' }, profile: 'default', endpointId: 'postgres.db', initial: first });
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const handed = await RawClient.connect((server.address() as { port: number }).port, { user: 'PH_plain', database: 'postgres' });
    const since = handed.messages.length;
    handed.send(serialize.query('SELECT current_user'));
    const got = await handed.readyCount(1, since);
    expect(got.find((m) => m.name === 'dataRow')?.fields).toEqual(['app_plain']);

    await engine.close();
    await viaListen.until(() => viaListen.closed);
    await handed.until(() => handed.closed);
    expect(viaListen.closed && handed.closed).toBe(true);
    server.close();
  });
});

describe('raw fixtures', () => {
  let f: GatewayFixture;
  beforeAll(async () => {
    f = await startGatewayFixture(`
rule "deny-delete" {
  endpoint  = postgres.db
  condition = "sql.verb == 'delete'"
  verdict   = "deny"
  reason    = "no delete"
}
`);
  });
  afterAll(() => f?.stop());

  it('replays startup + pipelined frames into the actions the live gateway decides', () => {
    const bytes = Buffer.concat([
      serialize.startup({ user: 'PH_scram', database: 'app' }),
      serialize.parse({ name: 's', text: 'SELECT 1' }),
      serialize.bind({ statement: 's' }),
      serialize.execute({}),
      serialize.sync(),
      serialize.bind({ statement: 's' }),
      serialize.execute({}),
      serialize.sync(),
      serialize.query('PREPARE d AS DELETE FROM t; EXECUTE d'),
    ]);
    const actions = parsePostgresRaw(bytes, { endpoint: f.h.policy.model.endpoints.get('postgres.db')!, host: '127.0.0.1', policy: f.h.policy });
    expect(actions.map((a) => [a.phase ?? 'statement', a.facts.sql!.verb, a.facts.sql!.statement])).toEqual([
      ['session_start', '', ''],
      ['statement', 'select', 'SELECT 1'], // the Parse (covers the first Execute)
      ['statement', 'select', 'SELECT 1'], // the Execute of a later batch
      ['statement', 'delete', 'PREPARE d AS DELETE FROM t; EXECUTE d'],
    ]);
    expect(actions[0]).toMatchObject({ user: 'PH_scram', database: 'app', placeholders: ['PH_scram'], endpoint: 'postgres.db' });
  });

  it('rejects malformed frames', () => {
    expect(() => parsePostgresRaw(Buffer.from([0x51, 0, 0, 0, 6, 0x41, 0x42]), { endpoint: null, host: 'h', policy: f.h.policy })).toThrow(/missing its NUL/);
  });

  it('goes through clawpatrol test fixtures (registerRawParser)', async () => {
    const fixture = {
      file: 'x.json',
      action: {
        host: '127.0.0.1',
        endpoint: 'postgres.db',
        raw: Buffer.concat([serialize.startup({ user: 'PH_scram', database: 'postgres' }), serialize.query('DELETE FROM accounts')]).toString('base64'),
      },
      match: { verdict: 'deny', rule: 'deny-delete' },
    } as unknown as Fixture;
    const prepared = await actionsFromFixture(fixture, f.h.policy);
    expect(prepared.ok).toBe(true);
    if (prepared.ok) expect(prepared.actions.map((a) => f.h.policy.decide(a).verdict)).toEqual(['allow', 'deny']);
  });
});
