// matrix-js-sdk with its Rust crypto (matrix-sdk-crypto-wasm) against a running Seed:
// two users, an encrypted room, a message decrypted on the other side, cross-signing
// bootstrapped on both, and bob's device verified by alice through SAS (to-device messages),
// which signs bob's master key with alice's user-signing key.
//
// Usage: SEED_BASE_URL=http://127.0.0.1:8008 node e2ee.mjs
import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";
import { CryptoEvent, VerificationPhase, VerificationRequestEvent, VerifierEvent } from "matrix-js-sdk/lib/crypto-api/index.js";

const BASE = process.env.SEED_BASE_URL ?? "http://127.0.0.1:8008";
const PASSWORD = "interop-password";
const RUN = Math.random().toString(36).slice(2, 8);
const TIMEOUT_MS = Number(process.env.SEED_JS_TIMEOUT_MS ?? 120000);

logger.setLevel(process.env.SEED_JS_LOG ?? "error");
if (!process.env.SEED_JS_LOG) {
    // The Rust crypto's tracing and the SDK's room logs go to console.debug/info/warn.
    console.debug = console.info = console.warn = () => {};
    // MatrixRTC (calls) complains about rooms it was not told of; not ours to test.
    const error = console.error;
    console.error = (...args) => {
        if (!String(args[0]).startsWith("[MatrixRTCSessionManager]")) error(...args);
    };
}

const t0 = Date.now();
const step = (msg) => console.log(`[js-e2ee +${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
function fail(msg) {
    console.error(`[js-e2ee] FAIL: ${msg}`);
    process.exit(1);
}
setTimeout(() => fail(`timed out after ${TIMEOUT_MS} ms`), TIMEOUT_MS).unref();

async function api(method, path, body, token) {
    const res = await fetch(`${BASE}${path}`, {
        method,
        headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, json: await res.json() };
}

/** Register through the UIA dummy flow. */
async function register(name) {
    const username = `${name}-${RUN}`;
    const first = await api("POST", "/_matrix/client/v3/register", { username, password: PASSWORD });
    if (first.status !== 401) fail(`register ${username}: ${JSON.stringify(first.json)}`);
    const auth = { type: "m.login.dummy", session: first.json.session };
    const done = await api("POST", "/_matrix/client/v3/register", { username, password: PASSWORD, auth });
    if (done.status !== 200) fail(`register ${username}: ${JSON.stringify(done.json)}`);
    return { ...done.json, username };
}

async function startClient(account) {
    const client = sdk.createClient({
        baseUrl: BASE,
        userId: account.user_id,
        accessToken: account.access_token,
        deviceId: account.device_id,
    });
    await client.initRustCrypto({ useIndexedDB: false });
    const prepared = new Promise((resolve) => {
        client.on(sdk.ClientEvent.Sync, (state) => {
            if (state === "PREPARED") resolve();
        });
    });
    await client.startClient({ initialSyncLimit: 20 });
    await prepared;
    return client;
}

function waitFor(what, check, intervalMs = 100) {
    return new Promise((resolve) => {
        const tick = async () => {
            try {
                const v = await check();
                if (v) return resolve(v);
            } catch (e) {
                logger.debug(`${what}: ${e}`);
            }
            setTimeout(tick, intervalMs);
        };
        tick();
    }).then((v) => {
        step(`ok: ${what}`);
        return v;
    });
}

async function bootstrapCrossSigning(client, account) {
    await client.getCrypto().bootstrapCrossSigning({
        authUploadDeviceSigningKeys: async (makeRequest) => {
            await makeRequest({
                type: "m.login.password",
                identifier: { type: "m.id.user", user: account.username },
                password: PASSWORD,
            });
        },
    });
    await waitFor(`${account.username}: cross-signing ready`, () => client.getCrypto().isCrossSigningReady());
}

const aliceAcc = await register("alice");
const bobAcc = await register("bob");
step(`registered ${aliceAcc.user_id} (${aliceAcc.device_id}) and ${bobAcc.user_id} (${bobAcc.device_id})`);
const alice = await startClient(aliceAcc);
const bob = await startClient(bobAcc);
step("both clients synced with Rust crypto");

// --- an encrypted room and a message decrypted on the other side ---------------------------
const { room_id: roomId } = await alice.createRoom({
    invite: [bobAcc.user_id],
    initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
});
step(`alice created encrypted room ${roomId}`);
await waitFor("bob is invited", () => bob.getRoom(roomId)?.getMyMembership() === "invite");
await bob.joinRoom(roomId);
await waitFor("alice sees bob joined", () => alice.getRoom(roomId)?.getMember(bobAcc.user_id)?.membership === "join");

const secret = `secret message ${RUN}`;
const received = new Promise((resolve) => {
    bob.on(sdk.RoomEvent.Timeline, async (event) => {
        if (event.getRoomId() !== roomId || event.getSender() !== aliceAcc.user_id) return;
        await bob.decryptEventIfNeeded(event);
        if (event.isEncrypted() && event.getType() === "m.room.message") resolve(event);
    });
});
await alice.sendMessage(roomId, { msgtype: "m.text", body: secret });
step("alice sent an encrypted message");
const event = await received;
if (event.getWireType() !== "m.room.encrypted") fail(`the message was not encrypted on the wire: ${event.getWireType()}`);
if (event.getContent().body !== secret) fail(`bob decrypted ${JSON.stringify(event.getContent())}`);
step(`ok: bob decrypted "${event.getContent().body}"`);

// And back, to exercise bob's outbound session and alice's key claims.
const reply = `reply ${RUN}`;
const replied = new Promise((resolve) => {
    alice.on(sdk.RoomEvent.Timeline, async (ev) => {
        if (ev.getRoomId() !== roomId || ev.getSender() !== bobAcc.user_id) return;
        await alice.decryptEventIfNeeded(ev);
        if (ev.getType() === "m.room.message" && ev.getContent().body === reply) resolve(ev);
    });
});
await bob.sendMessage(roomId, { msgtype: "m.text", body: reply });
await replied;
step("ok: alice decrypted bob's reply");

// --- cross-signing on both, then SAS verification of bob's device by alice ------------------
await bootstrapCrossSigning(alice, aliceAcc);
await bootstrapCrossSigning(bob, bobAcc);
await waitFor("alice's device is signed by her self-signing key", async () =>
    (await alice.getCrypto().getDeviceVerificationStatus(aliceAcc.user_id, aliceAcc.device_id))?.crossSigningVerified,
);

await waitFor("alice sees bob's cross-signing identity", async () => {
    const keys = await alice.getCrypto().getUserDeviceInfo([bobAcc.user_id], true);
    return keys.get(bobAcc.user_id)?.has(bobAcc.device_id);
});

bob.on(CryptoEvent.VerificationRequestReceived, async (request) => {
    step("bob received a verification request");
    request.on(VerificationRequestEvent.Change, async () => {
        if (request.phase === VerificationPhase.Started && request.verifier && !request.verifier.__seedStarted) {
            request.verifier.__seedStarted = true;
            request.verifier.on(VerifierEvent.ShowSas, (sas) => sas.confirm());
            request.verifier.verify().catch((e) => fail(`bob's verifier: ${e}`));
        }
    });
    await request.accept();
});

const request = await alice.getCrypto().requestDeviceVerification(bobAcc.user_id, bobAcc.device_id);
await waitFor("verification request ready", () => request.phase === VerificationPhase.Ready);
const verifier = await request.startVerification("m.sas.v1");
verifier.on(VerifierEvent.ShowSas, (sas) => {
    step(`alice sees SAS emoji ${sas.sas.emoji?.map((e) => e[0]).join("")}`);
    sas.confirm();
});
await verifier.verify();
await waitFor("verification done", () => request.phase === VerificationPhase.Done);

await waitFor("alice trusts bob's identity (cross-signing)", async () =>
    (await alice.getCrypto().getUserVerificationStatus(bobAcc.user_id)).isCrossSigningVerified(),
);
await waitFor("bob's device is cross-signing verified for alice", async () =>
    (await alice.getCrypto().getDeviceVerificationStatus(bobAcc.user_id, bobAcc.device_id))?.crossSigningVerified,
);
// The signature went through the server: alice's user-signing signature on bob's master key.
const q = await api("POST", "/_matrix/client/v3/keys/query", { device_keys: { [bobAcc.user_id]: [] } }, aliceAcc.access_token);
const masterSigs = q.json.master_keys?.[bobAcc.user_id]?.signatures?.[aliceAcc.user_id];
if (!masterSigs || Object.keys(masterSigs).length === 0) fail(`no signature of alice on bob's master key: ${JSON.stringify(q.json)}`);
step("ok: keys/query shows alice's signature on bob's master key");

alice.stopClient();
bob.stopClient();
step("PASS");
process.exit(0);
