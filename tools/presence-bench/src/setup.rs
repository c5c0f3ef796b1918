//! Setup: accounts (register / login / cached tokens), room shapes, profile-room peeks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use futures::stream::{self, StreamExt, TryStreamExt};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::cli::{Args, Shape};
use crate::hs::{enc, Hs};

const CS: &str = "/_matrix/client/v3";

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Account {
    pub username: String,
    pub user_id: String,
    pub access_token: String,
    #[serde(default)]
    pub device_id: String,
}

/// Accounts-file layout: one entry per "<base_url>|<prefix>".
#[derive(Serialize, Deserialize, Default)]
struct AccountsFile {
    #[serde(default)]
    targets: BTreeMap<String, TargetCache>,
}

#[derive(Serialize, Deserialize, Default, Clone)]
struct TargetCache {
    #[serde(default)]
    accounts: BTreeMap<String, Account>,
    /// topology key -> room ids (in topology order)
    #[serde(default)]
    rooms: BTreeMap<String, Vec<String>>,
}

fn target_key(a: &Args) -> String {
    format!("{}|{}", a.base_url.trim_end_matches('/'), a.user_prefix)
}

fn load_file(p: &Path) -> AccountsFile {
    std::fs::read(p).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

fn save_file(p: &Path, f: &AccountsFile) -> anyhow::Result<()> {
    let tmp = p.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(f)?)?;
    std::fs::rename(&tmp, p).with_context(|| format!("writing {}", p.display()))?;
    Ok(())
}

fn parse_login(body: &Value, username: &str) -> anyhow::Result<Account> {
    let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(Account {
        username: username.to_string(),
        user_id: s("user_id").ok_or_else(|| anyhow!("no user_id in {body}"))?,
        access_token: s("access_token").ok_or_else(|| anyhow!("no access_token in {body}"))?,
        device_id: s("device_id").unwrap_or_default(),
    })
}

pub async fn login(hs: &Hs, username: &str, password: &str) -> anyhow::Result<Option<Account>> {
    let body = json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": username},
        "password": password,
        "initial_device_display_name": "presence-bench",
    });
    let r = hs.call_retry(Method::POST, &format!("{CS}/login"), None, Some(&body)).await.map_err(|e| anyhow!(e))?;
    if r.ok() {
        return Ok(Some(parse_login(&r.body, username)?));
    }
    if r.status == 403 || r.status == 404 {
        return Ok(None); // unknown user or wrong password
    }
    bail!("login {username}: {}", r.describe())
}

/// Register with the UIA dummy flow. Returns None if the name is taken.
pub async fn register(hs: &Hs, username: &str, password: &str) -> anyhow::Result<Option<Account>> {
    let path = format!("{CS}/register");
    let mut body = json!({
        "username": username,
        "password": password,
        "initial_device_display_name": "presence-bench",
        "inhibit_login": false,
    });
    let r = hs.call_retry(Method::POST, &path, None, Some(&body)).await.map_err(|e| anyhow!(e))?;
    if r.ok() {
        return Ok(Some(parse_login(&r.body, username)?));
    }
    if r.errcode() == "M_USER_IN_USE" {
        return Ok(None);
    }
    if r.status != 401 {
        bail!("register {username}: {}", r.describe());
    }
    let session = r.body.get("session").and_then(Value::as_str).unwrap_or("").to_string();
    let has_dummy = r
        .body
        .get("flows")
        .and_then(Value::as_array)
        .map(|fl| {
            fl.iter().any(|f| {
                f.get("stages").and_then(Value::as_array).is_some_and(|s| s.len() == 1 && s[0] == "m.login.dummy")
            })
        })
        .unwrap_or(false);
    if !has_dummy {
        bail!("register {username}: target offers no m.login.dummy-only flow: {}", r.describe());
    }
    body["auth"] = json!({"type": "m.login.dummy", "session": session});
    let r = hs.call_retry(Method::POST, &path, None, Some(&body)).await.map_err(|e| anyhow!(e))?;
    if r.ok() {
        return Ok(Some(parse_login(&r.body, username)?));
    }
    if r.errcode() == "M_USER_IN_USE" {
        return Ok(None);
    }
    bail!("register {username} (dummy auth): {}", r.describe())
}

async fn whoami_ok(hs: &Hs, acc: &Account) -> bool {
    match hs.call(Method::GET, &format!("{CS}/account/whoami"), Some(&acc.access_token), &[], None, None).await {
        Ok(r) => r.ok() && r.body.get("user_id").and_then(Value::as_str) == Some(acc.user_id.as_str()),
        Err(_) => false,
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Source {
    Cache,
    Login,
    Register,
}

/// Which users share a topology "room": `rooms[r]` lists member indices, creator first.
pub struct Topology {
    pub key: String,
    pub rooms: Vec<Vec<usize>>,
}

impl Topology {
    pub fn build(a: &Args) -> Topology {
        let n = a.users;
        let rooms: Vec<Vec<usize>> = match a.shape {
            Shape::OneRoom => vec![(0..n).collect()],
            Shape::SmallRooms => (0..n).collect::<Vec<_>>().chunks(a.room_size).map(<[usize]>::to_vec).collect(),
            Shape::Watchers => {
                let w = a.watchers.min(n - 1);
                (0..n).map(|i| (0..=w).map(|d| (i + d) % n).collect()).collect()
            }
        };
        let key = match a.shape {
            Shape::OneRoom => format!("one-room:n={n}"),
            Shape::SmallRooms => format!("small-rooms:n={n}:k={}", a.room_size),
            Shape::Watchers => format!("watchers:n={n}:w={}", a.watchers.min(n - 1)),
        };
        Topology { key, rooms }
    }

    /// For each user, the sorted set of other users sharing at least one room: the users
    /// expected to receive that user's presence changes.
    pub fn watchers_of(&self, n: usize) -> Vec<Vec<usize>> {
        let mut sets = vec![BTreeSet::new(); n];
        for room in &self.rooms {
            for &u in room {
                for &v in room {
                    if u != v {
                        sets[u].insert(v);
                    }
                }
            }
        }
        sets.into_iter().map(|s| s.into_iter().collect()).collect()
    }
}

pub struct Setup {
    pub accounts: Vec<Account>,
    pub rooms: Vec<String>,
    pub watchers_of: Vec<Vec<usize>>,
    pub topology_key: String,
    /// For --path peek: profile room id of each user.
    pub profile_rooms: Vec<String>,
}

pub async fn accounts(hs: &Hs, a: &Args) -> anyhow::Result<(Vec<Account>, bool)> {
    let file = load_file(&a.accounts_file);
    let cache = file.targets.get(&target_key(a)).cloned().unwrap_or_default();
    let names: Vec<String> = (0..a.users).map(|i| format!("{}{}", a.user_prefix, i)).collect();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let total = names.len();
    let results: Vec<(Account, Source)> = stream::iter(names.iter().cloned())
        .map(|name| {
            let cached = if a.reuse { cache.accounts.get(&name).cloned() } else { None };
            let done = &done;
            async move {
                let r = async {
                    if let Some(acc) = cached {
                        if whoami_ok(hs, &acc).await {
                            return Ok((acc, Source::Cache));
                        }
                    }
                    if a.reuse {
                        if let Some(acc) = login(hs, &name, &a.password).await? {
                            return Ok((acc, Source::Login));
                        }
                        if let Some(acc) = register(hs, &name, &a.password).await? {
                            return Ok((acc, Source::Register));
                        }
                    } else {
                        if let Some(acc) = register(hs, &name, &a.password).await? {
                            return Ok((acc, Source::Register));
                        }
                        if let Some(acc) = login(hs, &name, &a.password).await? {
                            return Ok((acc, Source::Login));
                        }
                    }
                    bail!("{name}: exists but login with --password failed")
                }
                .await;
                let k = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if k.is_multiple_of(25) {
                    eprintln!("  accounts: {k}/{total}");
                }
                r
            }
        })
        .buffered(a.register_concurrency)
        .try_collect()
        .await?;
    let registered = results.iter().filter(|(_, s)| *s == Source::Register).count();
    let logged_in = results.iter().filter(|(_, s)| *s == Source::Login).count();
    eprintln!(
        "accounts: {} cached, {logged_in} logged in, {registered} registered",
        results.len() - registered - logged_in
    );
    Ok((results.into_iter().map(|(acc, _)| acc).collect(), registered > 0))
}

pub async fn run(hs: &Hs, a: &Args) -> anyhow::Result<Setup> {
    let (accounts, any_registered) = accounts(hs, a).await?;
    let topo = Topology::build(a);
    let watchers_of = topo.watchers_of(a.users);

    // Persist tokens right away so an aborted run still saves the slow part.
    let mut file = load_file(&a.accounts_file);
    let entry = file.targets.entry(target_key(a)).or_default();
    for acc in &accounts {
        entry.accounts.insert(acc.username.clone(), acc.clone());
    }
    save_file(&a.accounts_file, &file)?;

    let rooms;
    let mut profile_rooms = Vec::new();
    // Peek path: fail fast (exit 2) before creating anything if the target has no profile rooms.
    if a.path == crate::cli::PathKind::Peek {
        profile_rooms = find_profile_rooms(hs, a, &accounts).await?;
    }
    // Shared rooms are needed on both paths: they are what entitles a watcher to see a user's
    // presence (on Seed, peeking a profile room is allowed to users sharing a room with its owner).
    let cached = file.targets.get(&target_key(a)).and_then(|t| t.rooms.get(&topo.key)).cloned();
    match cached {
        Some(r) if a.reuse && !any_registered && r.len() == topo.rooms.len() => {
            eprintln!("rooms: reusing {} cached rooms for {}", r.len(), topo.key);
            rooms = r;
        }
        _ => {
            rooms = create_rooms(hs, a, &accounts, &topo).await?;
            let mut file = load_file(&a.accounts_file);
            file.targets.entry(target_key(a)).or_default().rooms.insert(topo.key.clone(), rooms.clone());
            save_file(&a.accounts_file, &file)?;
        }
    }
    if a.path == crate::cli::PathKind::Peek {
        peek_all(hs, a, &accounts, &watchers_of, &profile_rooms).await?;
    }
    Ok(Setup { accounts, rooms, watchers_of, topology_key: topo.key, profile_rooms })
}

async fn create_rooms(hs: &Hs, a: &Args, accs: &[Account], topo: &Topology) -> anyhow::Result<Vec<String>> {
    eprintln!("rooms: creating {} rooms ({})", topo.rooms.len(), topo.key);
    let rooms: Vec<String> = stream::iter(topo.rooms.iter().enumerate())
        .map(|(i, members)| async move {
            let creator = &accs[members[0]];
            let body = json!({
                "preset": "public_chat",
                "visibility": "private",
                "name": format!("presence-bench {} #{i}", topo.key),
            });
            let r = hs
                .call_retry(Method::POST, &format!("{CS}/createRoom"), Some(&creator.access_token), Some(&body))
                .await
                .map_err(|e| anyhow!(e))?;
            if !r.ok() {
                bail!("createRoom by {}: {}", creator.user_id, r.describe());
            }
            r.body
                .get("room_id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| anyhow!("createRoom: no room_id in {}", r.body))
        })
        .buffered(a.register_concurrency)
        .try_collect()
        .await?;
    let joins: Vec<(usize, usize)> =
        topo.rooms.iter().enumerate().flat_map(|(ri, m)| m.iter().skip(1).map(move |&u| (ri, u))).collect();
    eprintln!("rooms: {} joins", joins.len());
    stream::iter(joins)
        .map(|(ri, u)| {
            let room = &rooms[ri];
            async move {
                let acc = &accs[u];
                let r = hs
                    .call_retry(
                        Method::POST,
                        &format!("{CS}/join/{}", enc(room)),
                        Some(&acc.access_token),
                        Some(&json!({})),
                    )
                    .await
                    .map_err(|e| anyhow!(e))?;
                if !r.ok() {
                    bail!("join {room} by {}: {}", acc.user_id, r.describe());
                }
                Ok(())
            }
        })
        .buffer_unordered(a.register_concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(rooms)
}

/// Error returned when the target does not support the peek path.
#[derive(Debug)]
pub struct Unsupported(pub String);
impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unsupported by target: {}", self.0)
    }
}
impl std::error::Error for Unsupported {}

pub const PROFILE_ROOM_FIELD: &str = "org.matrix.msc1769.profile_room_id";

async fn find_profile_rooms(hs: &Hs, a: &Args, accs: &[Account]) -> anyhow::Result<Vec<String>> {
    stream::iter(accs.iter())
        .map(|acc| async move {
            let r = hs
                .call_retry(Method::GET, &format!("{CS}/profile/{}", enc(&acc.user_id)), Some(&acc.access_token), None)
                .await
                .map_err(|e| anyhow!(e))?;
            if !r.ok() {
                return Err(anyhow!(Unsupported(format!("GET /profile/{}: {}", acc.user_id, r.describe()))));
            }
            match r.body.get(PROFILE_ROOM_FIELD).and_then(Value::as_str) {
                Some(id) => Ok(id.to_string()),
                None => Err(anyhow!(Unsupported(format!(
                    "GET /profile/{} has no `{PROFILE_ROOM_FIELD}` (got {})",
                    acc.user_id, r.body
                )))),
            }
        })
        .buffered(a.register_concurrency)
        .try_collect()
        .await
}

async fn peek_all(
    hs: &Hs,
    a: &Args,
    accs: &[Account],
    watchers_of: &[Vec<usize>],
    profile_rooms: &[String],
) -> anyhow::Result<()> {
    // watcher w peeks the profile room of every user u that w watches.
    let pairs: Vec<(usize, usize)> =
        watchers_of.iter().enumerate().flat_map(|(u, ws)| ws.iter().map(move |&w| (w, u))).collect();
    eprintln!("peek: {} peeks", pairs.len());
    let prefix = a.peek_prefix.trim_end_matches('/');
    stream::iter(pairs)
        .map(|(w, u)| async move {
            let room = &profile_rooms[u];
            let r = hs
                .call_retry(
                    Method::POST,
                    &format!("{prefix}/peek/{}", enc(room)),
                    Some(&accs[w].access_token),
                    Some(&json!({})),
                )
                .await
                .map_err(|e| anyhow!(e))?;
            if r.status == 404 && r.errcode() == "M_UNRECOGNIZED" {
                return Err(anyhow!(Unsupported(format!("POST {prefix}/peek: {}", r.describe()))));
            }
            if !r.ok() {
                bail!("peek {room} by {}: {}", accs[w].user_id, r.describe());
            }
            Ok(())
        })
        .buffer_unordered(a.register_concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Best-effort unpeek of everything peeked; returns the number of failures.
pub async fn unpeek_all(hs: &Hs, a: &Args, s: &Setup) -> usize {
    let prefix = a.peek_prefix.trim_end_matches('/');
    let pairs: Vec<(usize, usize)> =
        s.watchers_of.iter().enumerate().flat_map(|(u, ws)| ws.iter().map(move |&w| (w, u))).collect();
    stream::iter(pairs)
        .map(|(w, u)| async move {
            let path = format!("{prefix}/rooms/{}/unpeek", enc(&s.profile_rooms[u]));
            match hs.call(Method::POST, &path, Some(&s.accounts[w].access_token), &[], Some(&json!({})), None).await {
                Ok(r) if r.ok() => 0,
                _ => 1,
            }
        })
        .buffer_unordered(a.register_concurrency)
        .fold(0usize, |acc, x| async move { acc + x })
        .await
}
