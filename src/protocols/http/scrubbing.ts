/**
 * The scrubber for the vault's current values, shared by everything the
 * engine sends to the agent or writes down.
 */
import { scrubberFor, type Scrubber } from '../../vault/scrub.js';
import type { EngineCore } from './types.js';

const cache = new WeakMap<EngineCore, { values: readonly string[]; scrubber: Scrubber }>();

/** Rebuilt only when the vault hands out a new list of values (it caches the list). */
export function currentScrubber(core: EngineCore): Scrubber {
  const values = core.secrets.allValues();
  const hit = cache.get(core);
  if (hit && hit.values === values) return hit.scrubber;
  const scrubber = scrubberFor(values);
  cache.set(core, { values, scrubber });
  return scrubber;
}
