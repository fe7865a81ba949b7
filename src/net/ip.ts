/**
 * IPv4/IPv6 address arithmetic for tunnel address and virtual-IP allocation:
 * CIDR parsing, the n-th host of a range, membership, canonical text. Pure
 * functions over BigInt so both families share one implementation.
 */
import { isIPv4, isIPv6 } from 'node:net';

export type IpFamily = 4 | 6;

export interface Cidr {
  family: IpFamily;
  /** Network address (host bits zero). */
  network: bigint;
  prefix: number;
  /** Text as given, normalised (`10.55.0.0/24`). */
  text: string;
}

const BITS: Record<IpFamily, number> = { 4: 32, 6: 128 };

export function ipFamily(ip: string): IpFamily | null {
  if (isIPv4(ip)) return 4;
  if (isIPv6(ip)) return 6;
  return null;
}

/**
 * `::ffff:1.2.3.4` → `1.2.3.4`; IPv6 in its shortest lower-case form. Node
 * reports v4 peers of dual-stack sockets in the mapped form; every table in
 * net/ is keyed by this canonical text.
 */
export function canonicalIp(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped?.[1]) return mapped[1];
  const family = ipFamily(ip);
  if (family === null) throw new Error(`not an IP address: "${ip}"`);
  return bigintToIp(ipToBigint(ip), family);
}

export function ipToBigint(ip: string): bigint {
  if (isIPv4(ip)) {
    return ip.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
  }
  if (!isIPv6(ip)) throw new Error(`not an IP address: "${ip}"`);
  let text = ip.toLowerCase();
  // A trailing dotted quad (`::ffff:1.2.3.4`) becomes two hextets.
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (quad?.[1]) {
    const v = ipToBigint(quad[1]);
    text = text.slice(0, -quad[1].length) + `${(v >> 16n).toString(16)}:${(v & 0xffffn).toString(16)}`;
  }
  const [head = '', tail] = text.split('::') as [string, string | undefined];
  const headParts = head ? head.split(':') : [];
  const tailParts = tail ? tail.split(':') : [];
  const missing = 8 - headParts.length - tailParts.length;
  const parts = tail === undefined ? headParts : [...headParts, ...Array<string>(missing).fill('0'), ...tailParts];
  return parts.reduce((acc, h) => (acc << 16n) | BigInt(parseInt(h, 16)), 0n);
}

export function bigintToIp(value: bigint, family: IpFamily): string {
  if (family === 4) {
    return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 0xffn)).join('.');
  }
  const hextets: number[] = [];
  for (let i = 7; i >= 0; i--) hextets.push(Number((value >> BigInt(i * 16)) & 0xffffn));
  // RFC 5952: compress the longest run (≥2) of zero hextets, the first on a tie.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (hextets[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && hextets[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = hextets.map((h) => h.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

export function parseCidr(text: string): Cidr {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(text.trim());
  if (!m?.[1] || !m[2]) throw new Error(`invalid CIDR "${text}" (want e.g. 10.55.0.0/24)`);
  const family = ipFamily(m[1]);
  if (family === null) throw new Error(`invalid CIDR "${text}": "${m[1]}" is not an IP address`);
  const prefix = Number(m[2]);
  const bits = BITS[family];
  if (prefix > bits) throw new Error(`invalid CIDR "${text}": prefix over /${bits}`);
  const hostBits = BigInt(bits - prefix);
  const network = (ipToBigint(m[1]) >> hostBits) << hostBits;
  return { family, network, prefix, text: `${bigintToIp(network, family)}/${prefix}` };
}

/** Number of addresses in the range. */
export function cidrSize(cidr: Cidr): bigint {
  return 1n << BigInt(BITS[cidr.family] - cidr.prefix);
}

/** The address at `offset` from the network address; throws outside the range. */
export function addressAt(cidr: Cidr, offset: bigint | number): string {
  const off = BigInt(offset);
  if (off < 0n || off >= cidrSize(cidr)) throw new Error(`offset ${off} outside ${cidr.text}`);
  return bigintToIp(cidr.network + off, cidr.family);
}

/** Offset of `ip` inside the range, or null when it is outside (or of the other family). */
export function offsetOf(cidr: Cidr, ip: string): bigint | null {
  let canonical: string;
  try {
    canonical = canonicalIp(ip);
  } catch {
    return null;
  }
  if (ipFamily(canonical) !== cidr.family) return null;
  const off = ipToBigint(canonical) - cidr.network;
  return off >= 0n && off < cidrSize(cidr) ? off : null;
}

export function cidrContains(cidr: Cidr, ip: string): boolean {
  return offsetOf(cidr, ip) !== null;
}
