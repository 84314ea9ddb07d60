// Everything the page needs from npm, bundled at install time into one classic script
// (www/vendor/spbu-vendor.js): the station serves no CDN and its web server sends no MIME
// types, so ES modules are out. Signing is pure JavaScript because a tablet on the
// station's LAN opens the page over plain HTTP, where WebCrypto is not available.
import mqtt from "mqtt";
import uPlot from "uplot";  // the manager's charts: small, no dependencies
import * as ed from "@noble/ed25519";
import { sha256 } from "@noble/hashes/sha256";
import { sha512 } from "@noble/hashes/sha512";
import { pbkdf2Async } from "@noble/hashes/pbkdf2";

ed.etc.sha512Sync = (...m) => sha512(ed.etc.concatBytes(...m));

const enc = new TextEncoder();
const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const b64 = (bytes) => btoa(String.fromCharCode(...bytes));

// The manager's command key is derived from the dashboard password (see
// agent/manager_keys.py, which must stay in step): the station trusts its public key.
export const KDF_ITERATIONS = 100000;

export async function managerKey(station, username, password) {
  const salt = enc.encode(`spbu-manager:${station}:${username}`);
  const seed = await pbkdf2Async(sha256, enc.encode(password), salt, { c: KDF_ITERATIONS, dkLen: 32 });
  const publicKey = ed.getPublicKey(seed);
  return { seed, publicKey, keyId: hex(sha256(publicKey)).slice(0, 16) };
}

// The same envelope as agent/signing.py: the signature covers "spbu/<kind>\n" + body.
export function signEnvelope(kind, body, key) {
  const raw = enc.encode(JSON.stringify(body));
  const signed = ed.etc.concatBytes(enc.encode(`spbu/${kind}\n`), raw);
  const sig = ed.sign(signed, key.seed);
  return JSON.stringify({ kind, key_id: key.keyId, payload: b64(raw), sig: b64(sig) });
}

export function nonce() {
  return hex(crypto.getRandomValues(new Uint8Array(16)));
}

export { mqtt, uPlot };
