// tests/js/harness.mjs - the test protocol of tests/run.sh for node, plus the
// byte/hash helpers every conformance check needs.
//
// Each check prints one line, "ok - NAME" or "not ok - NAME: why" (the same
// protocol as tests/check.h and tests/lib.sh).  Checks run one after another
// so their requests never interleave in the server log; each has a time limit
// so a stalled server fails one check instead of the whole suite.

import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

const results = { ok: 0, failed: 0 };

// Run fn; a thrown error (or a timeout) is the failure reason.  A check that
// wants to report a skip returns a string starting with "# SKIP".
export async function check(name, fn, timeoutMs = 60000) {
    let timer;
    const limit = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
    });
    try {
        const note = await Promise.race([fn(), limit]);
        results.ok++;
        console.log(`ok - ${name}${typeof note === "string" && note ? " " + note : ""}`);
        return true;
    } catch (e) {
        results.failed++;
        const why = String(e?.message ?? e)
            .replace(/\s+/g, " ")
            .slice(0, 400);
        console.log(`not ok - ${name}: ${why}`);
        return false;
    } finally {
        clearTimeout(timer);
    }
}

export function summary() {
    return results;
}

export function assert(cond, msg) {
    if (!cond) {
        throw new Error(msg);
    }
}

export function assertEq(got, want, what) {
    if (got !== want) {
        throw new Error(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
    }
}

// Deep equality of JSON-like values; the message names the first differing key.
export function assertJsonEq(got, want, what) {
    const diff = jsonDiff(got, want, "");
    if (diff) {
        throw new Error(`${what}: differs at ${diff}`);
    }
}

function jsonDiff(a, b, at) {
    if (
        typeof a !== typeof b ||
        Array.isArray(a) !== Array.isArray(b) ||
        (a === null) !== (b === null)
    ) {
        const show = (v) => JSON.stringify(v)?.slice(0, 80);
        return `${at || "."} (${show(a)} vs ${show(b)})`;
    }
    if (a === null || typeof a !== "object") {
        return a === b ? null : `${at || "."} (${JSON.stringify(a)} vs ${JSON.stringify(b)})`;
    }
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys) {
        const d = jsonDiff(a[k], b[k], `${at}/${k}`);
        if (d) {
            return d;
        }
    }
    return null;
}

// Throws unless got (ArrayBuffer/Uint8Array) has exactly want's bytes.
export function assertBytes(got, want, what) {
    const g = got instanceof Uint8Array ? got : new Uint8Array(got);
    const w = want instanceof Uint8Array ? want : new Uint8Array(want);
    if (g.length !== w.length) {
        throw new Error(`${what}: got ${g.length} bytes, want ${w.length}`);
    }
    const cmp = Buffer.compare(
        Buffer.from(g.buffer, g.byteOffset, g.length),
        Buffer.from(w.buffer, w.byteOffset, w.length),
    );
    if (cmp !== 0) {
        let i = 0;
        while (g[i] === w[i]) {
            i++;
        }
        throw new Error(`${what}: first differing byte at offset ${i}`);
    }
}

// Await p and expect it to reject with a HubApiError of one of the statuses.
export async function expectHttpError(p, statuses, what) {
    let res;
    try {
        res = await p;
    } catch (e) {
        if (e?.statusCode === undefined) {
            throw new Error(
                `${what}: expected HTTP ${statuses.join("/")}, got ${e?.name}: ${e?.message}`,
            );
        }
        if (!statuses.includes(e.statusCode)) {
            throw new Error(
                `${what}: expected HTTP ${statuses.join("/")}, got ${e.statusCode}: ${e.message}`,
            );
        }
        return e;
    }
    throw new Error(
        `${what}: expected HTTP ${statuses.join("/")}, call succeeded: ` +
            JSON.stringify(res)?.slice(0, 120),
    );
}

export function sha256hex(buf) {
    return createHash("sha256").update(buf).digest("hex");
}

// Git blob id: sha1("blob <len>\0" + content) (hub-api.md section 8).
export function gitBlobSha1(buf) {
    return createHash("sha1").update(`blob ${buf.length}\0`).update(buf).digest("hex");
}

// The exact LFS pointer text for content buf (hub-api.md section 8).
export function lfsPointer(buf) {
    const oid = sha256hex(buf);
    return `version https://git-lfs.github.com/spec/v1\noid sha256:${oid}\nsize ${buf.length}\n`;
}

// Every regular file under dir, as a Map from repo path ("a/b.txt") to bytes.
export function readTree(dir, prefix = "", out = new Map()) {
    for (const name of readdirSync(dir).sort()) {
        const full = join(dir, name);
        const st = statSync(full);
        if (st.isDirectory()) {
            readTree(full, prefix + name + "/", out);
        } else if (st.isFile()) {
            out.set(prefix + name, readFileSync(full));
        }
    }
    return out;
}

// The JSON header of a safetensors file held in memory (format: hub-api.md 10.1).
export function safetensorsHeader(buf) {
    const n = Number(buf.readBigUInt64LE(0));
    return JSON.parse(buf.subarray(8, 8 + n).toString("utf8"));
}

// Parameter counts per dtype from a parsed header (elements, not bytes).
export function paramCounts(header, into = {}) {
    for (const [name, t] of Object.entries(header)) {
        if (name === "__metadata__") {
            continue;
        }
        const n = t.shape.reduce((a, b) => a * b, 1);
        into[t.dtype] = (into[t.dtype] ?? 0) + n;
    }
    return into;
}

// A fetch that records every exchange, so checks can look at what the client
// actually sent and what the server answered (statuses, headers, bodies).
export function recordingFetch() {
    const log = [];
    const f = async (input, init = {}) => {
        const url = typeof input === "string" ? input : (input.url ?? String(input));
        const entry = {
            method: (init.method ?? "GET").toUpperCase(),
            url,
            reqHeaders: new Headers(init.headers ?? {}),
            reqBody: typeof init.body === "string" ? init.body : undefined,
        };
        log.push(entry);
        const res = await fetch(input, init);
        entry.status = res.status;
        entry.finalUrl = res.url;
        entry.resHeaders = res.headers;
        const ct = res.headers.get("content-type") ?? "";
        if (ct.includes("json") && res.status !== 204) {
            // Keep a copy of JSON answers; the client reads the original.
            entry.resJson = await res
                .clone()
                .json()
                .catch(() => undefined);
        }
        return res;
    };
    f.log = log;
    f.reset = () => {
        log.length = 0;
    };
    return f;
}
