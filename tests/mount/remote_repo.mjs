// tests/mount/remote_repo.mjs - what the official @huggingface/hub client sees
// of a repo on the local Hub, for tests/mount/test_mount_push.sh.
//
//   node remote_repo.mjs files REPO [REV]     one line per file, sorted:
//                                             "PATH SIZE SHA256" (the bytes
//                                             downloaded with downloadFile)
//   node remote_repo.mjs commits REPO [REV]   number of commits (listCommits)
//   node remote_repo.mjs commit REPO PATH TEXT  commit one small file as
//                                             another client (uploadFiles)
//
// Environment: HUB_URL, HF_TOKEN, JS_DIR (tests/js, where npm installed the
// client).  Exits 1 with the reason on stderr.

import { createHash } from "node:crypto";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const env = process.env;
const hub = await import(
    pathToFileURL(join(env.JS_DIR, "node_modules/@huggingface/hub/dist/index.mjs")).href
);
const hubUrl = env.HUB_URL;
const accessToken = env.HF_TOKEN;
const [cmd, name, a, b] = process.argv.slice(2);
const repo = { type: "model", name };

// downloadFile logs with console.debug; keep stdout to our lines.
console.debug = () => {};

async function files(revision) {
    const out = [];
    for await (const e of hub.listFiles({ repo, recursive: true, revision, hubUrl, accessToken })) {
        if (e.type !== "file") continue;
        const blob = await hub.downloadFile({
            repo,
            path: e.path,
            revision,
            hubUrl,
            accessToken,
            xet: false,
        });
        const buf = Buffer.from(await blob.arrayBuffer());
        if (buf.length !== e.size) {
            throw new Error(`${e.path}: listed ${e.size} bytes, downloaded ${buf.length}`);
        }
        out.push(`${e.path} ${e.size} ${createHash("sha256").update(buf).digest("hex")}`);
    }
    out.sort();
    for (const l of out) console.log(l);
}

async function commits(revision) {
    let n = 0;
    for await (const c of hub.listCommits({ repo, revision, hubUrl, accessToken })) {
        if (c.oid) n++;
    }
    console.log(n);
}

async function commitOne(path, text) {
    const out = await hub.uploadFiles({
        repo,
        files: [{ path, content: new Blob([text]) }],
        commitTitle: "a commit by another client",
        hubUrl,
        accessToken,
        useXet: false,
    });
    console.log(out.commit.oid);
}

try {
    if (cmd === "files") await files(a);
    else if (cmd === "commits") await commits(a);
    else if (cmd === "commit") await commitOne(a, b);
    else throw new Error(`unknown command '${cmd}'`);
} catch (e) {
    console.error(`remote_repo.mjs ${cmd}: ${e?.message ?? e}`);
    process.exit(1);
}
