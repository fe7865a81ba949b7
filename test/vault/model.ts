/** Policy models for vault tests: plain data in the shape the policy loader produces. */
import type { Credential, CredentialType } from '../../src/policy/types.js';
import { CREDENTIAL_SLOTS } from '../../src/vault/slots.js';

export function credential(type: CredentialType, name: string, extra: Partial<Credential> = {}): Credential {
  return {
    id: `${type}.${name}`,
    type,
    name,
    endpoints: [],
    slots: [...CREDENTIAL_SLOTS[type].slots],
    pos: { file: 'test.hcl', line: 1, col: 1 },
    ...extra,
  };
}

export function modelOf(...creds: Credential[]): { credentials: Map<string, Credential> } {
  return { credentials: new Map(creds.map((c) => [c.id, c])) };
}
