// Hydrogen assembled from hydrogen-view-sdk the way hydrogen-web's main.js does: a Platform,
// a navigation + URL router, the RootViewModel (login, session picker, session) and its RootView.
import { Platform, createNavigation, createRouter, RootViewModel, FeatureSet } from "hydrogen-view-sdk";

async function main() {
    const container = document.getElementById("app");
    const config = {
        defaultHomeServer: window.SEED_HOMESERVER,
        bugReportEndpointUrl: null,
        themeManifests: [],
        push: null,
    };
    const assetPaths = {
        downloadSandbox: "assets/download-sandbox.html",
        // Hydrogen needs its service worker (authenticated media, session auth data).
        serviceWorker: "sw.js",
        worker: "assets/main.js",
        olm: {
            wasm: "olm/olm.wasm",
            legacyBundle: "olm/olm_legacy.js",
            wasmBundle: "olm/olm.js",
        },
    };
    const platform = new Platform({ container, assetPaths, config, options: { development: true } });
    window.hydrogenPlatform = platform;
    await platform.init();
    const features = await FeatureSet.load(platform.settingsStorage);
    const navigation = createNavigation();
    platform.setNavigation(navigation);
    const urlRouter = createRouter({ navigation, history: platform.history });
    urlRouter.attach();
    const vm = new RootViewModel({ platform, urlRouter, navigation, features });
    window.hydrogenRoot = vm;
    await vm.load();
    platform.createAndMountRootView(vm);
    startPresencePanel(platform);
}

// Hydrogen has no presence UI. This panel shows the presence of the users named in the page's
// `?watch=@a:hs,@b:hs` query, read with the logged-in session's token from
// `GET /presence/{userId}/status` (Seed's effective presence, MSC3032), once a second.
function startPresencePanel(platform) {
    const watch = new URLSearchParams(location.search).get("watch");
    if (!watch) {
        return;
    }
    const panel = document.createElement("div");
    panel.id = "seed-presence";
    panel.style.cssText = "position:fixed;right:8px;top:64px;z-index:1000;pointer-events:none;background:#fff;" +
        "border:1px solid #888;border-radius:6px;padding:6px 10px;font:13px sans-serif;";
    document.body.appendChild(panel);
    const rows = new Map();
    for (const userId of watch.split(",")) {
        const row = document.createElement("div");
        row.className = "seed-presence-user";
        row.dataset.userId = userId;
        row.dataset.presence = "unknown";
        row.textContent = `${userId}: unknown`;
        panel.appendChild(row);
        rows.set(userId, row);
    }
    const poll = async () => {
        const sessions = await platform.sessionInfoStorage.getAll();
        const session = sessions[0];
        if (session) {
            for (const [userId, row] of rows) {
                try {
                    const url = `${session.homeserver}/_matrix/client/v3/presence/${encodeURIComponent(userId)}/status`;
                    const res = await fetch(url, { headers: { Authorization: `Bearer ${session.accessToken}` } });
                    const body = await res.json();
                    const presence = res.ok ? body.presence : `error ${body.errcode}`;
                    row.dataset.presence = presence;
                    row.textContent = `${userId}: ${presence}${body.status_msg ? ` (${body.status_msg})` : ""}`;
                } catch (e) {
                    row.dataset.presence = "unreachable";
                }
            }
        }
        setTimeout(poll, 1000);
    };
    poll();
}

main().catch((err) => {
    console.error(`hydrogen failed to start: ${err.message}\n${err.stack}`);
    document.body.setAttribute("data-start-error", err.message);
});
