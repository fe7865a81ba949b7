/**
 * The HTTPS engine. See docs/https.md for what users see.
 */
export { createHttpEngine, type HttpEngine, type HttpEngineOptions } from './engine.js';
export type { TransportContext } from '../../gateway/contracts.js';
export type { ProxyListener, ProxyOptions } from './proxy.js';
export type { HttpPolicy, CertificateSource } from './types.js';
export type { WebSocketFrameHook, WsFrame, WsDirection } from './websocket.js';
export { registerHttpActionShaper, type ActionShaper } from './extensions.js';
export { Http1RequestParser, HttpParseError, type RequestHead, type HeaderField, type ParseEvent } from './h1-parser.js';
export { parseRawHttp } from './raw-fixture.js';
