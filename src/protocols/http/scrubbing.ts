/**
 * The scrubber for the vault's current values, shared by everything the
 * engine sends to the agent or writes down.
 */
import { scrubberFor, type Scrubber } from '../../vault/scrub.js';
import type { EngineCore } from './types.js';

type Cache = WeakMap<EngineCore, { values: readonly string[]; scrubber: Scrubber }>;
const cache: Cache = new WeakMap();
const nameCache: Cache = new WeakMap();

/** Rebuilt only when the vault hands out a new list of values (it caches the list). */
export function currentScrubber(core: EngineCore): Scrubber {
  return cached(core, cache, (values) => values);
}

/**
 * For lower-cased field names: names are case-insensitive and HTTP/2 sends
 * them in lower case, so an upstream that reflects a mixed-case secret as a
 * field name delivers it lower-cased — the exact-value scrubber would miss it.
 */
export function currentNameScrubber(core: EngineCore): Scrubber {
  return cached(core, nameCache, (values) => values.map((v) => v.toLowerCase()));
}

function cached(core: EngineCore, store: Cache, derive: (values: readonly string[]) => readonly string[]): Scrubber {
  const values = core.secrets.allValues();
  const hit = store.get(core);
  if (hit && hit.values === values) return hit.scrubber;
  const scrubber = scrubberFor(derive(values));
  store.set(core, { values, scrubber });
  return scrubber;
}
