/**
 * The WireGuard cross-platform userspace API (the text protocol wireguard-go
 * speaks on `/run/wireguard/<iface>.sock`): a pure encoder for `set`
 * requests built from typed values (no free text reaches the socket, so no
 * line injection), a pure parser for `get` replies, and one thin socket
 * adapter.
 */
import { connect } from 'node:net';
import { keyToHex, hexToKey } from './keys.js';
import { parseCidr } from './ip.js';

export interface UapiPeerSet {
  /** base64 public key. */
  publicKey: string;
  remove?: boolean;
  /** `host:port` / `[v6]:port`, numeric. */
  endpoint?: string;
  persistentKeepalive?: number;
  /** Replace the peer's allowed IPs with exactly `allowedIps`. */
  replaceAllowedIps?: boolean;
  allowedIps?: string[];
}

export interface UapiSet {
  privateKey?: string;
  listenPort?: number;
  replacePeers?: boolean;
  peers?: UapiPeerSet[];
}

export interface UapiPeerState {
  publicKey: string;
  endpoint: string | null;
  /** Milliseconds since the epoch, or null when there never was a handshake. */
  lastHandshakeMs: number | null;
  rxBytes: number;
  txBytes: number;
  allowedIps: string[];
}

export interface UapiState {
  publicKey: string | null;
  listenPort: number | null;
  peers: UapiPeerState[];
}

export class UapiError extends Error {
  override name = 'UapiError';
}

const ENDPOINT = /^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):\d{1,5}$/;

function checkPort(port: number, what: string): number {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UapiError(`invalid ${what} ${port}`);
  return port;
}

export function encodeSet(req: UapiSet): string {
  const lines = ['set=1'];
  if (req.privateKey !== undefined) lines.push(`private_key=${keyToHex(req.privateKey)}`);
  if (req.listenPort !== undefined) lines.push(`listen_port=${checkPort(req.listenPort, 'listen port')}`);
  if (req.replacePeers) lines.push('replace_peers=true');
  for (const p of req.peers ?? []) {
    lines.push(`public_key=${keyToHex(p.publicKey)}`);
    if (p.remove) {
      lines.push('remove=true');
      continue;
    }
    if (p.endpoint !== undefined) {
      if (!ENDPOINT.test(p.endpoint)) throw new UapiError(`invalid peer endpoint "${p.endpoint}" (want ip:port)`);
      lines.push(`endpoint=${p.endpoint}`);
    }
    if (p.persistentKeepalive !== undefined) {
      lines.push(`persistent_keepalive_interval=${checkPort(p.persistentKeepalive, 'keepalive')}`);
    }
    if (p.replaceAllowedIps) lines.push('replace_allowed_ips=true');
    for (const ip of p.allowedIps ?? []) lines.push(`allowed_ip=${parseCidr(ip).text}`);
  }
  return lines.join('\n') + '\n\n';
}

export const GET_REQUEST = 'get=1\n\n';

/** Parse the reply to `get=1`; throws UapiError on a non-zero errno. */
export function parseGet(text: string): UapiState {
  const state: UapiState = { publicKey: null, listenPort: null, peers: [] };
  let peer: UapiPeerState | null = null;
  let hsSec = 0;
  let hsNsec = 0;
  const closePeer = () => {
    if (peer) {
      peer.lastHandshakeMs = hsSec === 0 && hsNsec === 0 ? null : hsSec * 1000 + Math.floor(hsNsec / 1e6);
      state.peers.push(peer);
    }
    peer = null;
    hsSec = hsNsec = 0;
  };
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const eq = line.indexOf('=');
    if (eq < 0) throw new UapiError(`malformed UAPI line "${line}"`);
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    switch (key) {
      case 'errno':
        if (value !== '0') throw new UapiError(`wireguard-go returned errno=${value}`);
        break;
      case 'private_key':
        // Never keep the private key around; the public half is what callers need.
        break;
      case 'listen_port':
        state.listenPort = Number(value);
        break;
      case 'public_key':
        closePeer();
        peer = { publicKey: hexToKey(value), endpoint: null, lastHandshakeMs: null, rxBytes: 0, txBytes: 0, allowedIps: [] };
        break;
      default:
        if (!peer) break;
        if (key === 'endpoint') peer.endpoint = value;
        else if (key === 'last_handshake_time_sec') hsSec = Number(value);
        else if (key === 'last_handshake_time_nsec') hsNsec = Number(value);
        else if (key === 'rx_bytes') peer.rxBytes = Number(value);
        else if (key === 'tx_bytes') peer.txBytes = Number(value);
        else if (key === 'allowed_ip') peer.allowedIps.push(value);
    }
  }
  closePeer();
  return state;
}

/** Check a `set` reply. */
export function parseSetReply(text: string): void {
  const m = /^errno=(-?\d+)$/m.exec(text);
  if (!m) throw new UapiError(`unexpected UAPI reply "${text.trim()}"`);
  if (m[1] !== '0') throw new UapiError(`wireguard-go refused the configuration (errno=${m[1]})`);
}

/** One request/response exchange on the UAPI socket. */
export function uapiExchange(socketPath: string, request: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    let reply = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new UapiError(`no reply from wireguard-go on ${socketPath} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(request));
    sock.on('data', (chunk: string) => {
      reply += chunk;
      // Every reply ends with `errno=N` followed by an empty line.
      if (/(^|\n)errno=-?\d+\n\n$/.test(reply)) {
        clearTimeout(timer);
        sock.end();
        resolve(reply);
      }
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(new UapiError(`cannot talk to wireguard-go on ${socketPath}: ${err.message}`));
    });
    sock.on('close', () => {
      clearTimeout(timer);
      reject(new UapiError(`wireguard-go closed ${socketPath} before replying`));
    });
  });
}

export async function uapiSet(socketPath: string, req: UapiSet): Promise<void> {
  parseSetReply(await uapiExchange(socketPath, encodeSet(req)));
}

export async function uapiGet(socketPath: string): Promise<UapiState> {
  return parseGet(await uapiExchange(socketPath, GET_REQUEST));
}
