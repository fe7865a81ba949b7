/**
 * The vault: credential secrets sealed with AES-256-GCM in the state store,
 * with the environment as fallback. Implements the gateway's SecretResolver.
 *
 * `resolve()` is synchronous (the Enforcer calls it on the data path), so the
 * vault keeps the *sealed* rows in memory and opens a value only when it is
 * used; the snapshot is refreshed when the store's secrets version moves
 * (another process ran `clawpatrol secret set`, or another gateway did).
 */
import type { Credential, PolicyModel } from '../policy/types.js';
import type { CredentialMaterial, SecretResolver } from '../gateway/contracts.js';
import type { SecretRow, Store } from '../store/types.js';
import { createVaultKey, deriveSubkey, loadVaultKey, VaultError, VaultUsageError, VAULT_KEY_FILE, type VaultKey } from './key.js';
import { openValue, sealValue } from './seal.js';
import { slotSpec, invalidSlotValue } from './slots.js';
import { bindEnvNames, envPresence, readEnvSecret, slotKey, type EnvSlotBinding } from './env.js';
import { closest } from './suggest.js';
import { join } from 'node:path';

export { VaultError, VaultUsageError } from './key.js';

/** What the vault needs from the policy: its credentials (the getter follows hot reloads). */
export type CredentialModel = Pick<PolicyModel, 'credentials'>;

export interface OpenVaultOptions {
  store: Store;
  /** Holds the key file (`vault.key`). */
  stateDir: string;
  model: () => CredentialModel;
  env?: NodeJS.ProcessEnv;
  /**
   * `create` (gateway start, `secret set`): make a key when there is none and nothing is sealed yet.
   * `optional` (`secret list`, `secret rm`): work without a key; values cannot be opened.
   */
  key?: 'create' | 'optional';
  /** How often to look for changes made by other processes; 0 disables. Default 1000 ms. */
  refreshMs?: number;
}

export interface SlotStatus {
  credential: string;
  slot: string;
  required: boolean;
  set: boolean;
  source: 'vault' | 'env' | null;
  /** The variable that supplies it (source `env`). */
  envVar?: string;
  /** Variables ignored because another credential slot maps to them too. */
  ambiguousEnv?: string[];
  /** ISO-8601, vault entries only. */
  updatedAt?: string;
  /** True for a vault entry whose credential is no longer in the policy. */
  orphan?: boolean;
}

const META_NS = 'vault';
const META_KEY = 'key';
/** Owners that are not policy credentials (the gateway CA). A credential id always starts with its type. */
const INTERNAL_PREFIX = 'gateway.';
const ALL_VALUES_TTL_MS = 1000;

export async function openVault(opts: OpenVaultOptions): Promise<Vault> {
  const env = opts.env ?? process.env;
  const rows = await opts.store.secrets.list();
  const version = await opts.store.secrets.version();
  const meta = await opts.store.kv.get<{ keyId: string }>(META_NS, META_KEY);
  let key = loadVaultKey(opts.stateDir, env);
  const sealedWith = meta?.keyId ?? rows[0]?.keyId;
  if (!key && sealedWith !== undefined) {
    if (opts.key === 'optional') {
      // Listing and removing entries needs no key.
    } else {
      throw new VaultError(
        `the vault holds sealed secrets (key ${sealedWith}) but no vault key was found: neither CLAWPATROL_VAULT_KEY ` +
          `nor ${join(opts.stateDir, VAULT_KEY_FILE)} exists. Restore the key; a new key cannot open existing secrets`,
      );
    }
  }
  if (!key && sealedWith === undefined && (opts.key ?? 'create') === 'create') {
    key = createVaultKey(opts.stateDir);
  }
  if (key) {
    if (sealedWith !== undefined && sealedWith !== key.id) {
      throw new VaultError(
        `wrong vault key: this vault was sealed with key ${sealedWith}, but ${key.source} holds key ${key.id}. ` +
          `Restore the original key file or CLAWPATROL_VAULT_KEY`,
      );
    }
    if (!meta) {
      await opts.store.kv.putIfAbsent(META_NS, META_KEY, { keyId: key.id, createdAt: new Date().toISOString() });
      const winner = await opts.store.kv.get<{ keyId: string }>(META_NS, META_KEY);
      if (winner && winner.keyId !== key.id) {
        throw new VaultError(`wrong vault key: another gateway sealed this vault with key ${winner.keyId}; use its key`);
      }
    }
  }
  return new Vault(opts.store, opts.model, env, key, rows, version, opts.refreshMs ?? 1000);
}

export class Vault implements SecretResolver {
  private rows = new Map<string, SecretRow>();
  private timer: NodeJS.Timeout | null = null;
  private refreshing: Promise<void> | null = null;
  private envModel: CredentialModel | null = null;
  private envBindings = new Map<string, EnvSlotBinding>();
  private valuesCache: { at: number; rowsVersion: number; model: CredentialModel; values: string[] } | null = null;
  private rowsVersion = 0;

  constructor(
    private readonly store: Store,
    private readonly model: () => CredentialModel,
    private readonly env: NodeJS.ProcessEnv,
    private readonly key: VaultKey | null,
    rows: SecretRow[],
    private storeVersion: number,
    refreshMs: number,
  ) {
    this.load(rows);
    if (refreshMs > 0) {
      this.timer = setInterval(() => void this.refresh().catch(() => undefined), refreshMs);
      this.timer.unref();
    }
  }

  /** Id of the key in use, or null without one. */
  get keyId(): string | null {
    return this.key?.id ?? null;
  }

  // ─────────────────────────── SecretResolver ───────────────────────────

  resolve(credentialId: string): CredentialMaterial | { missing: string } {
    const credential = this.model().credentials.get(credentialId);
    if (!credential) return { missing: `credential ${credentialId} is not defined in the policy` };
    const spec = slotSpec(credential.type);
    const slots: Record<string, string> = {};
    for (const slot of spec.slots) {
      const got = this.readSlot(credential, slot);
      if ('error' in got) return { missing: `credential ${credentialId}: ${got.error}` };
      if (got.value !== undefined) slots[slot] = got.value;
    }
    const absent = spec.required.filter((s) => !(s in slots));
    if (absent.length) {
      const none = spec.slots.every((s) => !(s in slots));
      return {
        missing: none
          ? `credential ${credentialId} has no secret`
          : `credential ${credentialId} has no secret for slot ${absent.join(', ')}`,
      };
    }
    return { credential, slots };
  }

  allValues(): string[] {
    const model = this.model();
    const now = Date.now();
    const c = this.valuesCache;
    if (c && c.model === model && c.rowsVersion === this.rowsVersion && now - c.at < ALL_VALUES_TTL_MS) return c.values;
    const values = new Set<string>();
    for (const cred of model.credentials.values()) {
      for (const slot of slotSpec(cred.type).slots) {
        const got = this.readSlot(cred, slot);
        if ('value' in got && got.value !== undefined) values.add(got.value);
      }
    }
    const list = [...values];
    this.valuesCache = { at: now, rowsVersion: this.rowsVersion, model, values: list };
    return list;
  }

  // ─────────────────────────── management (CLI) ───────────────────────────

  /** Find a credential by id (`bearer_token.github`) or unique name (`github`); errors carry a did-you-mean. */
  findCredential(ref: string): Credential {
    const creds = this.model().credentials;
    const exact = creds.get(ref);
    if (exact) return exact;
    const byName = [...creds.values()].filter((c) => c.name === ref);
    if (byName.length === 1) return byName[0]!;
    if (byName.length > 1) {
      throw new VaultUsageError(`"${ref}" is ambiguous: ${byName.map((c) => c.id).join(', ')}; name the credential by <type>.<name>`);
    }
    const candidates = new Map<string, string>();
    for (const c of creds.values()) {
      candidates.set(c.id, c.id);
      candidates.set(c.name, c.id);
    }
    const guess = closest(ref, candidates.keys());
    if (guess) throw new VaultUsageError(`unknown credential "${ref}"; did you mean "${candidates.get(guess)}"?`);
    const known = creds.size ? `known: ${[...creds.keys()].join(', ')}` : 'the policy defines no credentials';
    throw new VaultUsageError(`unknown credential "${ref}" (${known})`);
  }

  /** Check a slot name against the credential's type; `undefined` picks the only slot of single-slot types. */
  pickSlot(credential: Credential, slot: string | undefined): string {
    const spec = slotSpec(credential.type);
    if (spec.slots.length === 0) throw new VaultUsageError(`credential ${credential.id} (${credential.type}) holds no secret`);
    if (slot === undefined) {
      if (spec.slots.length === 1) return spec.slots[0]!;
      throw new VaultUsageError(`credential ${credential.id} has several slots; name one: ${spec.slots.join(', ')}`);
    }
    if (!spec.slots.includes(slot)) {
      throw new VaultUsageError(`credential ${credential.id} (${credential.type}) has no slot "${slot}"; its slots: ${spec.slots.join(', ')}`);
    }
    return slot;
  }

  async set(credentialRef: string, slot: string | undefined, value: string): Promise<{ credential: string; slot: string }> {
    const credential = this.findCredential(credentialRef);
    const chosen = this.pickSlot(credential, slot);
    const invalid = invalidSlotValue(chosen, value);
    if (invalid) throw new VaultUsageError(`cannot store the secret of ${credential.id} (slot ${chosen}): ${invalid}`);
    await this.seal(credential.id, chosen, value);
    return { credential: credential.id, slot: chosen };
  }

  /** Remove one slot or all slots of a credential (also one no longer in the policy, by exact id). */
  async remove(credentialRef: string, slot?: string): Promise<number> {
    let owner = credentialRef;
    if (!this.hasRowsFor(credentialRef)) {
      const credential = this.findCredential(credentialRef);
      owner = credential.id;
      if (slot !== undefined) this.pickSlot(credential, slot);
    }
    const n = await this.store.secrets.delete(owner, slot);
    await this.reload();
    return n;
  }

  /** Every slot of every policy credential, plus vault entries the policy no longer names. Never values. */
  async status(): Promise<SlotStatus[]> {
    await this.refresh();
    const model = this.model();
    this.bindEnv(model);
    const out: SlotStatus[] = [];
    const seen = new Set<string>();
    for (const cred of model.credentials.values()) {
      const spec = slotSpec(cred.type);
      for (const slot of spec.slots) {
        const key = slotKey(cred.id, slot);
        seen.add(key);
        const row = this.rows.get(key);
        const binding = this.envBindings.get(key);
        const envVar = envPresence(binding, this.env);
        const s: SlotStatus = {
          credential: cred.id,
          slot,
          required: spec.required.includes(slot),
          set: Boolean(row || envVar),
          source: row ? 'vault' : envVar ? 'env' : null,
        };
        if (row) s.updatedAt = row.updatedAt;
        else if (envVar) s.envVar = envVar;
        if (binding?.ambiguous.length) s.ambiguousEnv = binding.ambiguous;
        out.push(s);
      }
    }
    for (const [key, row] of this.rows) {
      if (seen.has(key) || row.owner.startsWith(INTERNAL_PREFIX)) continue;
      out.push({ credential: row.owner, slot: row.slot, required: false, set: true, source: 'vault', updatedAt: row.updatedAt, orphan: true });
    }
    return out;
  }

  // ─────────────────────────── internal secrets (gateway CA) ───────────────────────────

  getInternal(owner: string, slot: string): string | undefined {
    this.assertInternal(owner);
    const row = this.rows.get(slotKey(owner, slot));
    if (!row) return undefined;
    return openValue(this.requireKey(), row);
  }

  async setInternal(owner: string, slot: string, value: string): Promise<void> {
    this.assertInternal(owner);
    await this.seal(owner, slot, value);
  }

  /** Seal a value only if none exists yet (first start of several gateways at once); true when this call stored it. */
  async setInternalIfAbsent(owner: string, slot: string, value: string): Promise<boolean> {
    this.assertInternal(owner);
    const key = this.requireKey();
    const { nonce, sealed } = sealValue(key, owner, slot, value);
    const inserted = await this.store.secrets.insert({ owner, slot, keyId: key.id, nonce, sealed, updatedAt: new Date().toISOString() });
    await this.reload();
    return inserted;
  }

  /** A key derived from the vault key for another purpose (audit head MAC), or null without a key. */
  subkey(purpose: string): Buffer | null {
    return this.key ? deriveSubkey(this.key, purpose) : null;
  }

  // ─────────────────────────── lifecycle ───────────────────────────

  /** Pick up changes other processes made; cheap when nothing changed. */
  async refresh(): Promise<void> {
    if (this.refreshing) return this.refreshing;
    this.refreshing = (async () => {
      const v = await this.store.secrets.version();
      if (v !== this.storeVersion) await this.reload();
    })().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  // ─────────────────────────── private ───────────────────────────

  private async reload(): Promise<void> {
    const v = await this.store.secrets.version();
    const rows = await this.store.secrets.list();
    this.storeVersion = v;
    this.load(rows);
  }

  private load(rows: SecretRow[]): void {
    const next = new Map<string, SecretRow>();
    for (const r of rows) next.set(slotKey(r.owner, r.slot), r);
    this.rows = next;
    this.rowsVersion++;
  }

  private async seal(owner: string, slot: string, value: string): Promise<void> {
    const key = this.requireKey();
    const { nonce, sealed } = sealValue(key, owner, slot, value);
    await this.store.secrets.put({ owner, slot, keyId: key.id, nonce, sealed, updatedAt: new Date().toISOString() });
    await this.reload();
  }

  private requireKey(): VaultKey {
    if (!this.key) throw new VaultError('no vault key is available (CLAWPATROL_VAULT_KEY or vault.key in the state dir)');
    return this.key;
  }

  private assertInternal(owner: string): void {
    if (!owner.startsWith(INTERNAL_PREFIX)) throw new VaultError(`internal vault owner must start with "${INTERNAL_PREFIX}"`);
  }

  private hasRowsFor(owner: string): boolean {
    for (const r of this.rows.values()) if (r.owner === owner) return true;
    return false;
  }

  private bindEnv(model: CredentialModel): void {
    if (this.envModel === model) return;
    this.envBindings = bindEnvNames(model.credentials.values());
    this.envModel = model;
  }

  /** A slot's value: the vault first, then the environment. */
  private readSlot(cred: Credential, slot: string): { value: string | undefined } | { error: string } {
    const row = this.rows.get(slotKey(cred.id, slot));
    if (row) {
      if (!this.key) return { error: 'the vault key is not available' };
      try {
        return { value: openValue(this.key, row) };
      } catch (err) {
        return { error: (err as Error).message };
      }
    }
    this.bindEnv(this.model());
    const got = readEnvSecret(this.envBindings.get(slotKey(cred.id, slot)), this.env);
    if (!got.found) return { value: undefined };
    if ('error' in got) return { error: got.error };
    const invalid = invalidSlotValue(slot, got.value);
    if (invalid) return { error: `${got.variable}: ${invalid}` };
    return { value: got.value };
  }
}
