// tests/js/conformance.mjs - `modelfs hub serve` against the official
// @huggingface/hub JavaScript client (docs/hub-api.md section 11).
//
// Run by tests/hubd/test_js_conformance.sh, which starts the server, imports
// the repos named below with `modelfs hub import` and passes everything in the
// environment.  Every byte downloaded is compared with its source file under
// $MFS_DATA/models (or with the buffer that was uploaded).  Prints one
// "ok - ..." / "not ok - ..." line per check; exits 1 if any check failed.
//
// Environment:
//   HUB_URL                 http://127.0.0.1:PORT of the server
//   HF_TOKEN, HUB_USER      a valid hf_ token and its user name (owner of the repos)
//   HF_TOKEN_OTHER          a valid token of another user
//   MFS_DATA                the repository's data/ folder
//   REPO_SINGLE, COMMIT_SINGLE     stories260K-hf imported (one model.safetensors)
//   REPO_SHARDED, COMMIT_SHARDED   stories260K-hf-sharded imported (4 shards + index)
//   REPO_PRIVATE, REPO_GATED       stories260K-hf imported with --private / --gated
//   REPO_MANY, MANY_DIR            a folder of more small files than one tree page
//   REPO_DATASET                   stories260K-hf imported as a dataset repo
//   MULTIPART_SIZE          bytes of the file uploaded to exercise multipart (0 = skip)

import {
    commit,
    createBranch,
    createRepo,
    deleteBranch,
    deleteRepo,
    downloadFile,
    fileDownloadInfo,
    fileExists,
    listCommits,
    listFiles,
    modelInfo,
    parseSafetensorsMetadata,
    pathsInfo,
    repoExists,
    snapshotDownload,
    uploadFiles,
    whoAmI,
} from "@huggingface/hub";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

import {
    assert,
    assertBytes,
    assertEq,
    assertJsonEq,
    check,
    expectHttpError,
    gitBlobSha1,
    lfsPointer,
    paramCounts,
    readTree,
    recordingFetch,
    safetensorsHeader,
    sha256hex,
    summary,
} from "./harness.mjs";

const env = process.env;
// downloadFileToCacheDir logs every download with console.debug; keep the protocol lines clean.
console.debug = () => {};
const hubUrl = env.HUB_URL;
const token = env.HF_TOKEN;
const otherToken = env.HF_TOKEN_OTHER;
const user = env.HUB_USER;
const models = join(env.MFS_DATA, "models");
const REPO_SINGLE = env.REPO_SINGLE;
const REPO_SHARDED = env.REPO_SHARDED;
const REPO_PRIVATE = env.REPO_PRIVATE;
const REPO_GATED = env.REPO_GATED;
const REPO_MANY = env.REPO_MANY;
const MULTIPART_SIZE = Number(env.MULTIPART_SIZE ?? 0);

const singleFiles = readTree(join(models, "stories260K-hf"));
const shardedFiles = readTree(join(models, "stories260K-hf-sharded"));
const manyFiles = readTree(env.MANY_DIR);

// A repo name nobody else uses, so reruns against one root never collide.
const runId = Date.now().toString(36);
const newRepo = `${user}/js-conform-${runId}`;

// Odd range slices [a, b) of a file of n bytes: the first byte, the 8-byte
// safetensors length prefix, a window straddling 64 KiB, the tail, the last byte.
function slicesOf(n) {
    const s = [
        [0, 1],
        [0, Math.min(8, n)],
        [1, Math.min(n, 12345)],
        [Math.max(0, n - 7), n],
        [n - 1, n],
    ];
    if (n > 70000) {
        s.push([65530, 65542], [Math.floor(n / 3), Math.floor(n / 3) + 4099]);
    }
    return s.filter(([a, b]) => a >= 0 && b > a && b <= n);
}

// Expect file bytes `want` at path in repo (revision rev): info, whole body and
// every slice (each slice is one Range GET by WebBlob).
async function expectDownload(repo, path, want, rev, tok = token) {
    const what = `${repo}@${rev ?? "main"}:${path}`;
    const info = await fileDownloadInfo({ repo, path, revision: rev, hubUrl, accessToken: tok });
    assert(info, `${what}: fileDownloadInfo returned null`);
    assertEq(info.size, want.length, `${what}: size`);
    const blob = await downloadFile({
        repo,
        path,
        revision: rev,
        hubUrl,
        accessToken: tok,
        xet: false,
    });
    assert(blob, `${what}: downloadFile returned null`);
    assertEq(blob.size, want.length, `${what}: blob.size`);
    assertBytes(await blob.arrayBuffer(), want, `${what}: whole file`);
    for (const [a, b] of slicesOf(want.length)) {
        assertBytes(
            await blob.slice(a, b).arrayBuffer(),
            want.subarray(a, b),
            `${what}: slice(${a},${b})`,
        );
    }
    return info;
}

function isLfsPath(path) {
    return /\.(safetensors|bin)$/.test(path);
}

// Tree entry e (listFiles / pathsInfo) describes local content buf (section 5.2, 8).
function expectEntry(e, path, buf) {
    assertEq(e.type, "file", `${path}: type`);
    assertEq(e.size, buf.length, `${path}: size`);
    if (isLfsPath(path)) {
        assert(e.lfs, `${path}: no lfs object on an LFS file`);
        assertEq(e.lfs.oid, sha256hex(buf), `${path}: lfs.oid`);
        assertEq(e.lfs.size, buf.length, `${path}: lfs.size`);
        const pointer = Buffer.from(lfsPointer(buf));
        assertEq(e.lfs.pointerSize, pointer.length, `${path}: lfs.pointerSize`);
        assertEq(e.oid, gitBlobSha1(pointer), `${path}: oid (git blob id of the pointer)`);
    } else {
        assert(!e.lfs, `${path}: regular file listed with lfs ${JSON.stringify(e.lfs)}`);
        assertEq(e.oid, gitBlobSha1(buf), `${path}: oid (git blob id)`);
    }
}

function stripEtag(etag) {
    return etag.replace(/^W\//, "").replace(/^"|"$/g, "");
}

async function main() {
    // --- identity -----------------------------------------------------------
    await check("whoAmI returns the token's user", async () => {
        const me = await whoAmI({ hubUrl, accessToken: token });
        assertEq(me.name, user, "name");
        assertEq(me.type, "user", "type");
        assert(me.auth && typeof me.auth === "object", "no auth object");
    });
    await check("whoAmI with an unknown token is 401", async () => {
        await expectHttpError(
            whoAmI({ hubUrl, accessToken: "hf_notAValidTokenAtAll000" }),
            [401],
            "whoAmI",
        );
    });

    // --- repo metadata ---------------------------------------------------------
    await check("modelInfo of an imported repo (sha, siblings, safetensors)", async () => {
        const info = await modelInfo({
            name: REPO_SINGLE,
            hubUrl,
            accessToken: token,
            additionalFields: ["sha", "filePaths", "safetensors"],
        });
        assertEq(info.name, REPO_SINGLE, "name");
        assert(typeof info.id === "string" && info.id.length > 0, "no _id");
        assertEq(info.private, false, "private");
        assertEq(info.gated, false, "gated");
        assert(!isNaN(info.updatedAt.getTime()), "lastModified is not a date");
        assertEq(info.sha, env.COMMIT_SINGLE, "sha (the imported commit)");
        const want = [...singleFiles.keys()].sort();
        const got = info.filePaths.filter((p) => p !== ".gitattributes").sort();
        assertJsonEq(got, want, "siblings");
        const counts = paramCounts(safetensorsHeader(singleFiles.get("model.safetensors")));
        assert(info.safetensors, "no safetensors field");
        assertJsonEq(info.safetensors.parameters, counts, "safetensors.parameters");
        assertEq(
            info.safetensors.total,
            Object.values(counts).reduce((a, b) => a + b, 0),
            "safetensors.total",
        );
    });
    await check("modelInfo at a commit revision", async () => {
        const info = await modelInfo({
            name: REPO_SHARDED,
            revision: env.COMMIT_SHARDED,
            hubUrl,
            accessToken: token,
            additionalFields: ["sha"],
        });
        assertEq(info.sha, env.COMMIT_SHARDED, "sha");
    });
    await check("modelInfo of a missing repo is 404 (or 401)", async () => {
        await expectHttpError(
            modelInfo({ name: `${user}/no-such-repo-${runId}`, hubUrl, accessToken: token }),
            [401, 404],
            "modelInfo",
        );
    });

    // --- tree listing -----------------------------------------------------------
    await check("listFiles recursive: every file with size, oid, lfs", async () => {
        const entries = [];
        for await (const e of listFiles({
            repo: REPO_SHARDED,
            recursive: true,
            hubUrl,
            accessToken: token,
        })) {
            entries.push(e);
        }
        const byPath = new Map(entries.map((e) => [e.path, e]));
        assertEq(byPath.size, entries.length, "duplicate paths in listing");
        for (const [path, buf] of shardedFiles) {
            const e = byPath.get(path);
            assert(e, `${path} missing from listing`);
            expectEntry(e, path, buf);
        }
        const extra = entries.filter(
            (e) => !shardedFiles.has(e.path) && e.path !== ".gitattributes",
        );
        assertEq(extra.length, 0, `unexpected entries ${extra.map((e) => e.path).join(",")}`);
    });
    await check(
        "listFiles pagination follows Link rel=next",
        async () => {
            const f = recordingFetch();
            const seen = [];
            for await (const e of listFiles({
                repo: REPO_MANY,
                recursive: true,
                hubUrl,
                accessToken: token,
                fetch: f,
            })) {
                seen.push(e);
            }
            const files = seen.filter((e) => e.type === "file" && e.path !== ".gitattributes");
            const paths = new Set(files.map((e) => e.path));
            assertEq(paths.size, files.length, "a file listed twice across pages");
            assertEq(files.length, manyFiles.size, "file count");
            for (const e of files) {
                const buf = manyFiles.get(e.path);
                assert(buf, `unexpected file ${e.path}`);
                assertEq(e.oid, gitBlobSha1(buf), `${e.path}: oid`);
                assertEq(e.size, buf.length, `${e.path}: size`);
            }
            const dirs = new Set(seen.filter((e) => e.type === "directory").map((e) => e.path));
            const wantDirs = new Set([...manyFiles.keys()].map((p) => p.split("/")[0]));
            assertJsonEq([...dirs].sort(), [...wantDirs].sort(), "directories");
            assert(
                f.log.length >= 2,
                `one page of ${seen.length} entries: no Link rel="next" was sent`,
            );
            for (const r of f.log) {
                assertEq(r.status, 200, `page ${r.url}`);
            }
            return `# ${f.log.length} pages`;
        },
        120000,
    );
    await check("listFiles of a folder, non-recursive: direct children only", async () => {
        const dir = [...manyFiles.keys()][0].split("/")[0];
        const want = [...manyFiles.keys()]
            .filter((p) => p.startsWith(dir + "/") && !p.slice(dir.length + 1).includes("/"))
            .sort();
        const got = [];
        for await (const e of listFiles({
            repo: REPO_MANY,
            path: dir,
            hubUrl,
            accessToken: token,
        })) {
            got.push(e.path);
        }
        assertJsonEq(got.sort(), want, `children of ${dir}`);
    });

    // --- paths-info -------------------------------------------------------------
    await check("pathsInfo (JSON body): existing paths, missing ones omitted", async () => {
        const paths = ["config.json", "model.safetensors", "no/such/file.txt"];
        const res = await pathsInfo({ repo: REPO_SINGLE, paths, hubUrl, accessToken: token });
        assertEq(res.length, 2, "entries");
        for (const e of res) {
            expectEntry(e, e.path, singleFiles.get(e.path));
        }
    });
    await check("pathsInfo expand=true gives lastCommit", async () => {
        const res = await pathsInfo({
            repo: REPO_SINGLE,
            paths: ["config.json"],
            expand: true,
            hubUrl,
            accessToken: token,
        });
        assertEq(res.length, 1, "entries");
        assert(res[0].lastCommit, "no lastCommit");
        assertEq(res[0].lastCommit.id, env.COMMIT_SINGLE, "lastCommit.id");
        assert(!isNaN(res[0].lastCommit.date.getTime()), "lastCommit.date is not a date");
    });

    // --- downloads ----------------------------------------------------------------
    await check("fileDownloadInfo of a regular file: size, ETag = git blob id", async () => {
        const buf = singleFiles.get("config.json");
        const info = await fileDownloadInfo({
            repo: REPO_SINGLE,
            path: "config.json",
            hubUrl,
            accessToken: token,
        });
        assertEq(info.size, buf.length, "size");
        assertEq(stripEtag(info.etag), gitBlobSha1(buf), "etag");
    });
    await check("fileDownloadInfo of an LFS file: size, ETag = sha256", async () => {
        const buf = singleFiles.get("model.safetensors");
        const info = await fileDownloadInfo({
            repo: REPO_SINGLE,
            path: "model.safetensors",
            hubUrl,
            accessToken: token,
        });
        assertEq(info.size, buf.length, "size");
        assertEq(stripEtag(info.etag), sha256hex(buf), "etag");
        assert(info.url.startsWith(hubUrl + "/"), `download url ${info.url} not on the hub`);
    });
    await check("fileDownloadInfo of a missing file is null (404 EntryNotFound)", async () => {
        const info = await fileDownloadInfo({
            repo: REPO_SINGLE,
            path: "nope.bin",
            hubUrl,
            accessToken: token,
        });
        assertEq(info, null, "info");
    });
    await check(
        "downloadFile: every file of the single-file repo, whole and sliced",
        async () => {
            for (const [path, buf] of singleFiles) {
                await expectDownload(REPO_SINGLE, path, buf);
            }
        },
        120000,
    );
    await check(
        "downloadFile: every file of the sharded repo at its commit",
        async () => {
            for (const [path, buf] of shardedFiles) {
                await expectDownload(REPO_SHARDED, path, buf, env.COMMIT_SHARDED);
            }
        },
        120000,
    );
    await check("downloadFile raw: the LFS pointer of a safetensors file", async () => {
        const buf = shardedFiles.get("model-00002-of-00004.safetensors");
        const blob = await downloadFile({
            repo: REPO_SHARDED,
            path: "model-00002-of-00004.safetensors",
            raw: true,
            hubUrl,
            accessToken: token,
        });
        assert(blob, "null");
        assertEq(await blob.text(), lfsPointer(buf), "pointer text");
    });
    await check("downloadFile of a missing file is null", async () => {
        const blob = await downloadFile({
            repo: REPO_SINGLE,
            path: "missing.json",
            hubUrl,
            accessToken: token,
        });
        assertEq(blob, null, "blob");
    });
    await check("fileExists: present, LFS, absent", async () => {
        assertEq(
            await fileExists({
                repo: REPO_SINGLE,
                path: "config.json",
                hubUrl,
                accessToken: token,
            }),
            true,
            "config.json",
        );
        assertEq(
            await fileExists({
                repo: REPO_SINGLE,
                path: "model.safetensors",
                hubUrl,
                accessToken: token,
            }),
            true,
            "model.safetensors",
        );
        assertEq(
            await fileExists({ repo: REPO_SINGLE, path: "absent.txt", hubUrl, accessToken: token }),
            false,
            "absent.txt",
        );
    });

    await check("dataset repo: listFiles and downloadFile through datasets/ routes", async () => {
        const repo = "datasets/" + env.REPO_DATASET;
        const paths = [];
        for await (const e of listFiles({ repo, recursive: true, hubUrl, accessToken: token })) {
            if (singleFiles.has(e.path)) {
                expectEntry(e, e.path, singleFiles.get(e.path));
                paths.push(e.path);
            }
        }
        assertEq(paths.length, singleFiles.size, "files listed");
        await expectDownload(repo, "model.safetensors", singleFiles.get("model.safetensors"));
        await expectDownload(repo, "tokenizer.json", singleFiles.get("tokenizer.json"));
        assertEq(
            await fileExists({
                repo: env.REPO_DATASET,
                path: "config.json",
                hubUrl,
                accessToken: token,
            }),
            false,
            "a dataset's file seen through the model routes",
        );
    });

    // --- safetensors metadata through range reads ---------------------------------------
    await check("parseSafetensorsMetadata on a single-file model", async () => {
        const r = await parseSafetensorsMetadata({
            repo: REPO_SINGLE,
            hubUrl,
            accessToken: token,
            computeParametersCount: true,
        });
        assertEq(r.sharded, false, "sharded");
        const header = safetensorsHeader(singleFiles.get("model.safetensors"));
        assertJsonEq(r.header, header, "header");
        const counts = paramCounts(header);
        assertJsonEq(r.parameterCount, counts, "parameterCount");
    });
    await check("parseSafetensorsMetadata on a sharded model", async () => {
        const r = await parseSafetensorsMetadata({
            repo: REPO_SHARDED,
            hubUrl,
            accessToken: token,
            computeParametersCount: true,
        });
        assertEq(r.sharded, true, "sharded");
        const index = JSON.parse(shardedFiles.get("model.safetensors.index.json").toString("utf8"));
        assertJsonEq(r.index.weight_map, index.weight_map, "index.weight_map");
        assertJsonEq(r.index.metadata, index.metadata, "index.metadata");
        const shards = [...shardedFiles.keys()]
            .filter((p) => /^model-\d+-of-\d+\.safetensors$/.test(p))
            .sort();
        assertJsonEq(Object.keys(r.headers).sort(), shards, "shards");
        const counts = {};
        for (const s of shards) {
            const h = safetensorsHeader(shardedFiles.get(s));
            assertJsonEq(r.headers[s], h, `header of ${s}`);
            paramCounts(h, counts);
        }
        assertJsonEq(r.parameterCount, counts, "parameterCount");
    });

    // --- private and gated repos --------------------------------------------------------
    await check("private repo: modelInfo and download with the owner's token", async () => {
        const info = await modelInfo({ name: REPO_PRIVATE, hubUrl, accessToken: token });
        assertEq(info.private, true, "private");
        await expectDownload(
            REPO_PRIVATE,
            "model.safetensors",
            singleFiles.get("model.safetensors"),
        );
        await expectDownload(REPO_PRIVATE, "config.json", singleFiles.get("config.json"));
    });
    await check("private repo without a token: RepoNotFound everywhere", async () => {
        const f = recordingFetch();
        await expectHttpError(
            modelInfo({ name: REPO_PRIVATE, hubUrl, fetch: f }),
            [401, 404],
            "modelInfo",
        );
        // null would mean "file missing in an existing repo": the repo must stay hidden.
        await expectHttpError(
            fileDownloadInfo({ repo: REPO_PRIVATE, path: "config.json", hubUrl, fetch: f }),
            [401, 404],
            "fileDownloadInfo",
        );
        await expectHttpError(
            (async () => {
                for await (const e of listFiles({ repo: REPO_PRIVATE, hubUrl, fetch: f })) {
                    return e;
                }
            })(),
            [401, 404],
            "listFiles",
        );
        await expectHttpError(
            pathsInfo({ repo: REPO_PRIVATE, paths: ["config.json"], hubUrl, fetch: f }),
            [401, 404],
            "pathsInfo",
        );
        for (const r of f.log) {
            assertEq(
                r.resHeaders.get("x-error-code"),
                "RepoNotFound",
                `X-Error-Code of ${r.method} ${r.url}`,
            );
        }
    });
    await check("gated repo without a token: GatedRepo, with a token: bytes", async () => {
        const f = recordingFetch();
        await expectHttpError(
            fileDownloadInfo({ repo: REPO_GATED, path: "config.json", hubUrl, fetch: f }),
            [401, 403],
            "fileDownloadInfo",
        );
        assertEq(f.log[0].resHeaders.get("x-error-code"), "GatedRepo", "X-Error-Code");
        await expectDownload(
            REPO_GATED,
            "model.safetensors",
            singleFiles.get("model.safetensors"),
            undefined,
            otherToken,
        );
    });

    await check("private repo with another user's token: RepoNotFound", async () => {
        const f = recordingFetch();
        await expectHttpError(
            modelInfo({ name: REPO_PRIVATE, hubUrl, accessToken: otherToken, fetch: f }),
            [401, 404],
            "modelInfo",
        );
        await expectHttpError(
            fileDownloadInfo({
                repo: REPO_PRIVATE,
                path: "config.json",
                hubUrl,
                accessToken: otherToken,
                fetch: f,
            }),
            [401, 404],
            "fileDownloadInfo",
        );
        for (const r of f.log) {
            assertEq(
                r.resHeaders.get("x-error-code"),
                "RepoNotFound",
                `X-Error-Code of ${r.method} ${r.url}`,
            );
        }
    });
    await check(
        "repoExists: true, false for a missing repo, false for a private one anonymously",
        async () => {
            assertEq(
                await repoExists({ repo: REPO_SINGLE, hubUrl, accessToken: token }),
                true,
                "existing",
            );
            assertEq(
                await repoExists({ repo: `${user}/missing-${runId}`, hubUrl, accessToken: token }),
                false,
                "missing",
            );
            assertEq(await repoExists({ repo: REPO_PRIVATE, hubUrl }), false, "private, no token");
        },
    );
    await check(
        "snapshotDownload of the sharded repo: HF cache layout, every byte",
        async () => {
            const cacheDir = join(env.MFS_TMP, "js-cache");
            const snap = await snapshotDownload({
                repo: REPO_SHARDED,
                cacheDir,
                hubUrl,
                accessToken: token,
            });
            const folder = join(cacheDir, "models--" + REPO_SHARDED.replace("/", "--"));
            assertEq(snap, join(folder, "snapshots", env.COMMIT_SHARDED), "snapshot folder");
            const got = readTree(snap);
            assertJsonEq(
                [...got.keys()].filter((p) => p !== ".gitattributes").sort(),
                [...shardedFiles.keys()].sort(),
                "files",
            );
            for (const [path, buf] of shardedFiles) {
                assertBytes(got.get(path), buf, path);
                const etag = isLfsPath(path) ? sha256hex(buf) : gitBlobSha1(buf);
                assert(existsSync(join(folder, "blobs", etag)), `${path}: no blob named ${etag}`);
            }
        },
        120000,
    );

    // --- repo creation, uploads, commits ------------------------------------------------
    const srcDir = join(models, "tiny-random-llama");
    const upl = {
        "config.json": readFileSync(join(srcDir, "config.json")),
        "nested/dir/tokenizer.json": readFileSync(join(srcDir, "tokenizer.json")),
        "model.safetensors": readFileSync(join(srcDir, "model.safetensors")),
        "README.md": Buffer.from("---\nlicense: mit\n---\n# conformance upload\n"),
    };
    const created = await check("createRepo returns the repo URL on the hub", async () => {
        const r = await createRepo({ repo: newRepo, hubUrl, accessToken: token });
        assertEq(r.repoUrl, `${hubUrl}/${newRepo}`, "repoUrl");
    });
    await check("createRepo of an existing repo is 409", async () => {
        await expectHttpError(
            createRepo({ repo: newRepo, hubUrl, accessToken: token }),
            [409],
            "createRepo",
        );
    });
    let firstCommit;
    await check(
        "uploadFiles: regular + LFS (basic) files, then byte-identical downloads",
        async () => {
            assert(created, "repo was not created");
            const f = recordingFetch();
            const out = await uploadFiles({
                repo: newRepo,
                hubUrl,
                accessToken: token,
                useXet: false,
                fetch: f,
                files: Object.entries(upl).map(([path, buf]) => ({
                    path,
                    content: new Blob([buf]),
                })),
                commitTitle: "conformance: first upload",
            });
            assert(/^[0-9a-f]{40}$/.test(out.commit.oid), `commit oid ${out.commit.oid}`);
            assertEq(out.commit.url, `${hubUrl}/${newRepo}/commit/${out.commit.oid}`, "commit url");
            firstCommit = out.commit.oid;
            const pre = f.log.find((r) => r.url.includes("/preupload/"));
            assert(pre?.resJson?.files, "no preupload answer");
            for (const file of pre.resJson.files) {
                assertEq(
                    typeof file.shouldIgnore,
                    "boolean",
                    `preupload shouldIgnore of ${file.path}`,
                );
                assertEq(
                    file.uploadMode,
                    isLfsPath(file.path) ? "lfs" : "regular",
                    `uploadMode of ${file.path}`,
                );
            }
            const batch = f.log.find((r) => r.url.endsWith(".git/info/lfs/objects/batch"));
            assert(batch, "no LFS batch call");
            assertEq(JSON.parse(batch.reqBody).hash_algo, "sha_256", "JS hash_algo");
            assertEq(batch.status, 200, "batch status");
            const put = f.log.find((r) => r.method === "PUT");
            assert(put && put.status >= 200 && put.status < 300, `basic PUT status ${put?.status}`);
            assert(!put.reqHeaders.has("authorization"), "client sent a token on the PUT");
            for (const [path, buf] of Object.entries(upl)) {
                await expectDownload(newRepo, path, buf);
            }
            const entries = await pathsInfo({
                repo: newRepo,
                paths: Object.keys(upl),
                hubUrl,
                accessToken: token,
            });
            assertEq(entries.length, Object.keys(upl).length, "pathsInfo entries");
            for (const e of entries) {
                expectEntry(e, e.path, upl[e.path]);
            }
        },
        120000,
    );
    await check(
        "commit: delete a file, add one; history is kept",
        async () => {
            assert(firstCommit, "no first commit");
            const added = readFileSync(join(srcDir, "generation_config.json"));
            const out = await commit({
                repo: newRepo,
                hubUrl,
                accessToken: token,
                useXet: false,
                title: "conformance: edit",
                operations: [
                    { operation: "delete", path: "nested/dir/tokenizer.json" },
                    {
                        operation: "addOrUpdate",
                        path: "generation_config.json",
                        content: new Blob([added]),
                    },
                ],
            });
            assert(out.commit.oid !== firstCommit, "commit oid did not change");
            assertEq(
                await fileExists({
                    repo: newRepo,
                    path: "nested/dir/tokenizer.json",
                    hubUrl,
                    accessToken: token,
                }),
                false,
                "deleted file still exists",
            );
            await expectDownload(newRepo, "generation_config.json", added);
            // The old commit still has the deleted file.
            await expectDownload(
                newRepo,
                "nested/dir/tokenizer.json",
                upl["nested/dir/tokenizer.json"],
                firstCommit,
            );
        },
        120000,
    );
    await check("commit with a stale parentCommit is 412", async () => {
        assert(firstCommit, "no first commit");
        await expectHttpError(
            commit({
                repo: newRepo,
                hubUrl,
                accessToken: token,
                useXet: false,
                title: "stale",
                parentCommit: firstCommit,
                operations: [
                    { operation: "addOrUpdate", path: "stale.txt", content: new Blob(["stale\n"]) },
                ],
            }),
            [412],
            "commit",
        );
        assertEq(
            await fileExists({ repo: newRepo, path: "stale.txt", hubUrl, accessToken: token }),
            false,
            "the refused commit wrote stale.txt",
        );
    });
    await check("commit with the current parentCommit succeeds", async () => {
        const info = await modelInfo({
            name: newRepo,
            hubUrl,
            accessToken: token,
            additionalFields: ["sha"],
        });
        const out = await commit({
            repo: newRepo,
            hubUrl,
            accessToken: token,
            useXet: false,
            title: "fresh",
            parentCommit: info.sha,
            operations: [
                { operation: "addOrUpdate", path: "fresh.txt", content: new Blob(["fresh\n"]) },
            ],
        });
        assert(/^[0-9a-f]{40}$/.test(out.commit.oid), "commit oid");
        await expectDownload(newRepo, "fresh.txt", Buffer.from("fresh\n"));
    });
    await check(
        "8 racing commits naming the same parentCommit: exactly one lands, 7 get 412",
        async () => {
            const info = await modelInfo({
                name: newRepo,
                hubUrl,
                accessToken: token,
                additionalFields: ["sha"],
            });
            const results = await Promise.allSettled(
                [...Array(8).keys()].map((i) =>
                    commit({
                        repo: newRepo,
                        hubUrl,
                        accessToken: token,
                        useXet: false,
                        title: `race ${i}`,
                        parentCommit: info.sha,
                        operations: [
                            {
                                operation: "addOrUpdate",
                                path: `race/${i}.txt`,
                                content: new Blob([`${i}\n`]),
                            },
                        ],
                    }),
                ),
            );
            const won = results.filter((r) => r.status === "fulfilled");
            const lost = results.filter((r) => r.status === "rejected");
            assertEq(won.length, 1, "commits that landed");
            for (const r of lost) {
                assertEq(r.reason?.statusCode, 412, `loser: ${r.reason?.message}`);
            }
            const after = await modelInfo({
                name: newRepo,
                hubUrl,
                accessToken: token,
                additionalFields: ["sha"],
            });
            assertEq(after.sha, won[0].value.commit.oid, "head is the winner");
            const files = [];
            for await (const e of listFiles({
                repo: newRepo,
                path: "race",
                hubUrl,
                accessToken: token,
            })) {
                files.push(e.path);
            }
            assertEq(files.length, 1, `files in race/: ${files.join(",")}`);
        },
    );
    await check("8 concurrent commits without parentCommit: none is lost", async () => {
        const results = await Promise.allSettled(
            [...Array(8).keys()].map((i) =>
                commit({
                    repo: newRepo,
                    hubUrl,
                    accessToken: token,
                    useXet: false,
                    title: `concurrent ${i}`,
                    operations: [
                        {
                            operation: "addOrUpdate",
                            path: `conc/${i}.txt`,
                            content: new Blob([`${i}\n`]),
                        },
                    ],
                }),
            ),
        );
        const bad = results.filter((r) => r.status === "rejected");
        assertEq(bad.length, 0, `failed commits: ${bad.map((r) => r.reason?.message).join(" | ")}`);
        assertEq(new Set(results.map((r) => r.value.commit.oid)).size, 8, "distinct commit ids");
        for (let i = 0; i < 8; i++) {
            await expectDownload(newRepo, `conc/${i}.txt`, Buffer.from(`${i}\n`));
        }
    });
    await check(
        "upload an empty file and a path with spaces and UTF-8; list and download them",
        async () => {
            const odd = "dir with space/naïve ünïcode (1).txt";
            const body = Buffer.from("caf\u00e9 \u2603\n");
            await uploadFiles({
                repo: newRepo,
                hubUrl,
                accessToken: token,
                useXet: false,
                files: [
                    { path: "empty.txt", content: new Blob([]) },
                    { path: odd, content: new Blob([body]) },
                ],
            });
            await expectDownload(newRepo, odd, body);
            const entries = await pathsInfo({
                repo: newRepo,
                paths: [odd, "empty.txt"],
                hubUrl,
                accessToken: token,
            });
            assertEq(entries.length, 2, "pathsInfo entries");
            const empty = entries.find((e) => e.path === "empty.txt");
            assert(empty, "no entry for empty.txt");
            expectEntry(empty, "empty.txt", Buffer.alloc(0));
            expectEntry(
                entries.find((e) => e.path === odd),
                odd,
                body,
            );
            const listed = [];
            for await (const e of listFiles({
                repo: newRepo,
                path: "dir with space",
                hubUrl,
                accessToken: token,
            })) {
                listed.push(e.path);
            }
            assertJsonEq(listed, [odd], "listFiles of the folder");
        },
    );
    await check("downloadFile of an empty file (Range probe of 0 bytes, hub-api 4.5)", async () => {
        // hub-api 4.5: a Range probe of an empty file must still tell JS the size.
        const blob = await downloadFile({
            repo: newRepo,
            path: "empty.txt",
            hubUrl,
            accessToken: token,
        });
        assert(blob, "downloadFile returned null");
        assertEq(blob.size, 0, "blob.size");
        assertEq((await blob.arrayBuffer()).byteLength, 0, "bytes");
    });
    await check("listCommits: newest first, ids, titles, author", async () => {
        const info = await modelInfo({
            name: newRepo,
            hubUrl,
            accessToken: token,
            additionalFields: ["sha"],
        });
        const commits = [];
        for await (const c of listCommits({
            repo: newRepo,
            hubUrl,
            accessToken: token,
            batchSize: 2,
        })) {
            commits.push(c);
        }
        assert(commits.length >= 4, `${commits.length} commits`);
        assertEq(commits[0].oid, info.sha, "first listed commit is the head");
        const first = commits.find((c) => c.oid === firstCommit);
        assert(first, "the first upload's commit is not listed");
        assertEq(first.title, "conformance: first upload", "title");
        assertEq(first.authors[0]?.username, user, "author");
        assertEq(new Set(commits.map((c) => c.oid)).size, commits.length, "a commit listed twice");
        for (let i = 1; i < commits.length; i++) {
            assert(commits[i - 1].date >= commits[i].date, "commits not newest first");
        }
    });
    await check("writes need the namespace owner: other user 403, anonymous 401", async () => {
        const op = [{ operation: "addOrUpdate", path: "intruder.txt", content: new Blob(["x\n"]) }];
        await expectHttpError(
            commit({
                repo: newRepo,
                hubUrl,
                accessToken: otherToken,
                useXet: false,
                title: "intrusion",
                operations: op,
            }),
            [403, 404],
            "commit by another user",
        );
        await expectHttpError(
            commit({ repo: newRepo, hubUrl, useXet: false, title: "anon", operations: op }),
            [401],
            "anonymous commit",
        );
        await expectHttpError(
            createRepo({ repo: `${user}/by-bob-${runId}`, hubUrl, accessToken: otherToken }),
            [403],
            "createRepo in another user's namespace",
        );
        assertEq(
            await fileExists({ repo: newRepo, path: "intruder.txt", hubUrl, accessToken: token }),
            false,
            "intruder.txt was written",
        );
    });
    await check(
        "uploadFiles of 150 regular + 120 LFS files (several preupload and batch calls)",
        async () => {
            const files = new Map();
            for (let i = 0; i < 150; i++) {
                files.set(
                    `bulk/text/${String(i).padStart(3, "0")}.txt`,
                    Buffer.from(`small file ${i}\n`),
                );
            }
            const llama = upl["model.safetensors"];
            for (let i = 0; i < 120; i++) {
                // Distinct binary slices of a real checkpoint: each its own LFS object.
                files.set(
                    `bulk/bin/${String(i).padStart(3, "0")}.bin`,
                    llama.subarray(i * 1000, i * 1000 + 4096 + i),
                );
            }
            const f = recordingFetch();
            await uploadFiles({
                repo: newRepo,
                hubUrl,
                accessToken: token,
                useXet: false,
                fetch: f,
                files: [...files].map(([path, buf]) => ({ path, content: new Blob([buf]) })),
            });
            const pre = f.log.filter((r) => r.url.includes("/preupload/")).length;
            const batches = f.log.filter((r) => r.url.endsWith("/objects/batch")).length;
            assert(pre >= 3 && batches >= 2, `${pre} preupload and ${batches} batch calls`);
            const seen = new Map();
            for await (const e of listFiles({
                repo: newRepo,
                path: "bulk",
                recursive: true,
                hubUrl,
                accessToken: token,
            })) {
                if (e.type === "file") {
                    seen.set(e.path, e);
                }
            }
            assertEq(seen.size, files.size, "files listed under bulk/");
            for (const [path, buf] of files) {
                assert(seen.get(path), `${path} not listed`);
                expectEntry(seen.get(path), path, buf);
            }
            for (const path of ["bulk/text/149.txt", "bulk/bin/000.bin", "bulk/bin/119.bin"]) {
                await expectDownload(newRepo, path, files.get(path));
            }
        },
        120000,
    );
    await check("64 concurrent range reads across the shards are all exact", async () => {
        const shards = [...shardedFiles.keys()].filter((p) => p.endsWith(".safetensors"));
        const reads = [];
        for (let i = 0; i < 64; i++) {
            const path = shards[i % shards.length];
            const buf = shardedFiles.get(path);
            const a = (i * 7919) % (buf.length - 5000);
            const b = a + 1 + ((i * 104729) % 4999);
            reads.push(
                (async () => {
                    const blob = await downloadFile({
                        repo: REPO_SHARDED,
                        path,
                        hubUrl,
                        accessToken: token,
                    });
                    assertBytes(
                        await blob.slice(a, b).arrayBuffer(),
                        buf.subarray(a, b),
                        `${path} [${a},${b})`,
                    );
                })(),
            );
        }
        await Promise.all(reads);
    });
    await check("LFS upload of content already stored skips the PUT", async () => {
        const f = recordingFetch();
        await uploadFiles({
            repo: newRepo,
            hubUrl,
            accessToken: token,
            useXet: false,
            fetch: f,
            files: [
                { path: "copy/model.safetensors", content: new Blob([upl["model.safetensors"]]) },
            ],
        });
        const batch = f.log.find((r) => r.url.endsWith("/objects/batch"));
        assert(batch?.resJson?.objects, "no batch answer");
        assert(
            !batch.resJson.objects[0].actions?.upload,
            "batch asked to upload an object it already has",
        );
        assert(!f.log.some((r) => r.method === "PUT"), "the client PUT the object again");
        await expectDownload(newRepo, "copy/model.safetensors", upl["model.safetensors"]);
    });
    await check(
        "multipart LFS upload above the threshold",
        async () => {
            if (!MULTIPART_SIZE) {
                return "# SKIP MULTIPART_SIZE=0";
            }
            // Deterministic content from the test data, repeated up to the size.
            const parts = [
                readFileSync(join(models, "tiny-random-gpt2", "model.safetensors")),
                readFileSync(join(models, "tiny-random-llama", "tokenizer.json")),
            ];
            const big = Buffer.alloc(MULTIPART_SIZE);
            for (let off = 0, i = 0; off < big.length; i++) {
                off += parts[i % 2].copy(big, off);
            }
            const f = recordingFetch();
            await uploadFiles({
                repo: newRepo,
                hubUrl,
                accessToken: token,
                useXet: false,
                fetch: f,
                files: [{ path: "big/weights.safetensors", content: new Blob([big]) }],
            });
            const batch = f.log.find((r) => r.url.endsWith("/objects/batch"));
            const upload = batch?.resJson?.objects?.[0]?.actions?.upload;
            assert(upload, "batch answer has no upload action");
            await expectDownload(newRepo, "big/weights.safetensors", big);
            if (!upload.header?.chunk_size) {
                return `# SKIP server chose basic transfer for ${big.length} bytes (no chunk_size)`;
            }
            const chunk = Number(upload.header.chunk_size);
            const nparts = Object.keys(upload.header).filter((k) => /^[0-9]+$/.test(k)).length;
            assertEq(nparts, Math.ceil(big.length / chunk), "part URLs");
            const puts = f.log.filter((r) => r.method === "PUT");
            assertEq(puts.length, nparts, "part PUTs");
            for (const p of puts) {
                assert(p.resHeaders.get("etag"), `no ETag on part PUT ${p.url}`);
            }
            const done = f.log.find((r) => r.method === "POST" && r.url === upload.href);
            assert(done && done.status < 300, `completion POST status ${done?.status}`);
            return `# ${nparts} parts of ${chunk} bytes`;
        },
        180000,
    );

    // --- branches and pull requests ----------------------------------------------------
    const branch = "feature/js";
    await check("createBranch with a slash, commit to it, main unchanged", async () => {
        await createBranch({ repo: newRepo, branch, hubUrl, accessToken: token });
        const body = Buffer.from("only on the branch\n");
        await commit({
            repo: newRepo,
            branch,
            hubUrl,
            accessToken: token,
            useXet: false,
            title: "on branch",
            operations: [
                { operation: "addOrUpdate", path: "branch-only.txt", content: new Blob([body]) },
            ],
        });
        await expectDownload(newRepo, "branch-only.txt", body, branch);
        await expectDownload(newRepo, "config.json", upl["config.json"], branch);
        assertEq(
            await fileExists({
                repo: newRepo,
                path: "branch-only.txt",
                hubUrl,
                accessToken: token,
            }),
            false,
            "branch file visible on main",
        );
        // JS sends the tree revision raw: tree/feature/js (section 2, be lenient).
        const paths = [];
        for await (const e of listFiles({
            repo: newRepo,
            revision: branch,
            hubUrl,
            accessToken: token,
        })) {
            paths.push(e.path);
        }
        assert(paths.includes("branch-only.txt"), `listFiles on ${branch}: ${paths.join(",")}`);
    });
    await check("createBranch of an existing branch is 409", async () => {
        await expectHttpError(
            createBranch({ repo: newRepo, branch, hubUrl, accessToken: token }),
            [409],
            "createBranch",
        );
    });
    await check("commit as a pull request opens refs/pr/N", async () => {
        const body = Buffer.from("proposed change\n");
        const out = await commit({
            repo: newRepo,
            hubUrl,
            accessToken: token,
            useXet: false,
            title: "a PR",
            isPullRequest: true,
            operations: [{ operation: "addOrUpdate", path: "pr.txt", content: new Blob([body]) }],
        });
        const m = /^(.*)\/discussions\/(\d+)$/.exec(out.pullRequestUrl ?? "");
        assert(m, `pullRequestUrl ${out.pullRequestUrl}`);
        assertEq(m[1], `${hubUrl}/${newRepo}`, "pullRequestUrl base");
        await expectDownload(newRepo, "pr.txt", body, `refs/pr/${m[2]}`);
        assertEq(
            await fileExists({ repo: newRepo, path: "pr.txt", hubUrl, accessToken: token }),
            false,
            "PR file visible on main",
        );
    });

    await check("modelInfo and deleteBranch on feature/js", async () => {
        const info = await modelInfo({
            name: newRepo,
            revision: branch,
            hubUrl,
            accessToken: token,
            additionalFields: ["sha"],
        });
        // JS sends this revision raw too: commits/feature/js.
        for await (const c of listCommits({
            repo: newRepo,
            revision: branch,
            hubUrl,
            accessToken: token,
        })) {
            assertEq(c.oid, info.sha, "head of the branch");
            break;
        }
        await deleteBranch({ repo: newRepo, branch, hubUrl, accessToken: token });
        const g = recordingFetch();
        await expectHttpError(
            downloadFile({
                repo: newRepo,
                path: "config.json",
                revision: branch,
                hubUrl,
                accessToken: token,
                fetch: g,
            }),
            [404],
            "download from the deleted branch",
        );
        assertEq(g.log[0].resHeaders.get("x-error-code"), "RevisionNotFound", "X-Error-Code");
    });
    // --- deletion ------------------------------------------------------------------------------
    await check("deleteRepo, then the repo is gone", async () => {
        await deleteRepo({ repo: newRepo, hubUrl, accessToken: token });
        const f = recordingFetch();
        await expectHttpError(
            modelInfo({ name: newRepo, hubUrl, accessToken: token, fetch: f }),
            [404],
            "modelInfo after delete",
        );
        assertEq(f.log[0].resHeaders.get("x-error-code"), "RepoNotFound", "X-Error-Code");
        await expectHttpError(
            deleteRepo({ repo: newRepo, hubUrl, accessToken: token }),
            [404],
            "second delete",
        );
    });
    await check("deleteRepo of another user's repo is refused", async () => {
        await expectHttpError(
            deleteRepo({ repo: REPO_SINGLE, hubUrl, accessToken: otherToken }),
            [401, 403, 404],
            "deleteRepo",
        );
        const info = await modelInfo({ name: REPO_SINGLE, hubUrl, accessToken: token });
        assertEq(info.name, REPO_SINGLE, "repo still there");
    });

    const { ok, failed } = summary();
    console.log(`# js conformance: ${ok} ok, ${failed} failed`);
    process.exit(failed ? 1 : 0);
}

main().catch((e) => {
    console.log(`not ok - js suite crashed: ${e?.stack ?? e}`);
    process.exit(1);
});
