/**
 * Endpoint types that ride on HTTP but decide on other facts (Kubernetes:
 * `k8s.*` besides `http.*`; ClickHouse's HTTP interface: `sql.*`) register a
 * shaper here; the HTTPS engine and `raw` fixture replay both call it. Without
 * one, such an endpoint receives an `http` action and `decide` refuses it
 * (family mismatch, fail closed) — nothing passes uninspected.
 */
import type { Endpoint, EndpointType, Facts, Family, HttpFacts } from '../../policy/types.js';

export type ActionShaper = (http: HttpFacts, endpoint: Endpoint) => { family: Family; facts: Facts };

const shapers = new Map<EndpointType, ActionShaper>();

export function registerHttpActionShaper(type: EndpointType, shaper: ActionShaper): void {
  shapers.set(type, shaper);
}

export function shapeAction(endpoint: Endpoint | null, http: HttpFacts): { family: Family; facts: Facts } {
  const shaper = endpoint ? shapers.get(endpoint.type) : undefined;
  return shaper && endpoint ? shaper(http, endpoint) : { family: 'http', facts: { http } };
}
