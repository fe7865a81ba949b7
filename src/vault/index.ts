export { openVault, Vault, VaultError, VaultUsageError, type OpenVaultOptions, type SlotStatus, type CredentialModel } from './vault.js';
export { CREDENTIAL_SLOTS, slotSpec, invalidSlotValue, normaliseSecretInput, type SlotSpec } from './slots.js';
export { VAULT_KEY_ENV, VAULT_KEY_FILE, loadVaultKey, deriveSubkey } from './key.js';
export { SECRET_ENV_PREFIX, envNamesFor } from './env.js';
export { openGatewayCa, normaliseLeafHost, type GatewayCa, type GatewayCaOptions, type LeafCert } from './ca.js';
export { Scrubber, scrubberFor, secretForms, REDACTION_BYTE, MIN_SECRET_BYTES } from './scrub.js';
export {
  injectHttpCredential,
  postgresLogin,
  clickhouseLogin,
  mtlsOptions,
  presentedTokens,
  authHeaderNames,
  stripClickhouseUrlAuth,
  InjectionError,
  type HeaderMap,
} from './inject.js';
