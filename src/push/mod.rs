//! Push rules and pushers (spec "Push Notifications"). A user's rules are ruma's server-default
//! ruleset until the user changes one; the ruleset is then kept as the user's `m.push_rules`
//! global account data (so `/sync` delivers every change, as the spec asks), and only this
//! service writes it. Pushers are stored; no push gateway is called yet.
use std::sync::Arc;

use dashmap::DashMap;
use ruma::push::{Action, NewPushRule, RuleKind, Ruleset};
use serde_json::{json, Value};

use crate::account_data::{AccountData, Scope};
use crate::error::{MatrixError, Result};
use crate::rooms::now_ms;
use crate::store::Store;

pub const PUSH_RULES: &str = "m.push_rules";
/// User-defined rules one user may have.
pub const MAX_USER_RULES: usize = 200;
/// Pushers one user may have.
pub const MAX_PUSHERS: i64 = 50;

pub struct PushRules {
    store: Store,
    account_data: Arc<AccountData>,
    /// One read-modify-write of a user's ruleset at a time.
    locks: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
}

impl PushRules {
    pub fn new(store: Store, account_data: Arc<AccountData>) -> Arc<Self> {
        Arc::new(Self { store, account_data, locks: DashMap::new() })
    }

    /// The user's ruleset: what they saved, else the server default.
    pub async fn ruleset(&self, user_id: &str) -> Result<Ruleset> {
        let uid = ruma::UserId::parse(user_id).map_err(|e| MatrixError::Internal(e.into()))?;
        if let Some(saved) = self.account_data.get(user_id, Scope::Global, PUSH_RULES).await? {
            if let Some(global) = saved.get("global") {
                if let Ok(mut rules) = serde_json::from_value::<Ruleset>(global.clone()) {
                    // Server-default rules added by newer versions reach existing users too.
                    rules.update_with_server_default(Ruleset::server_default(&uid));
                    return Ok(rules);
                }
            }
        }
        Ok(Ruleset::server_default(&uid))
    }

    /// The ruleset as JSON (`{override, content, room, sender, underride}`).
    /// Every kind is present, empty or not (ruma leaves empty kinds out).
    pub async fn ruleset_json(&self, user_id: &str) -> Result<Value> {
        let mut v = serde_json::to_value(self.ruleset(user_id).await?).map_err(|e| MatrixError::Internal(e.into()))?;
        if let Some(o) = v.as_object_mut() {
            for kind in ["override", "content", "room", "sender", "underride"] {
                o.entry(kind).or_insert_with(|| json!([]));
            }
        }
        Ok(v)
    }

    /// One rule as JSON, 404 `M_NOT_FOUND` if the user has no such rule.
    pub async fn rule_json(&self, user_id: &str, kind: &RuleKind, rule_id: &str) -> Result<Value> {
        let all = self.ruleset_json(user_id).await?;
        all.get(kind.as_str())
            .and_then(Value::as_array)
            .and_then(|rules| rules.iter().find(|r| r["rule_id"] == rule_id))
            .cloned()
            .ok_or_else(|| MatrixError::not_found("Push rule not found"))
    }

    async fn modify(&self, user_id: &str, f: impl FnOnce(&mut Ruleset) -> Result<()>) -> Result<()> {
        let lock = self.locks.entry(user_id.to_owned()).or_default().clone();
        let _guard = lock.lock().await;
        let mut rules = self.ruleset(user_id).await?;
        f(&mut rules)?;
        let user_rules = rules.iter().filter(|r| !r.rule_id().starts_with('.')).count();
        if user_rules > MAX_USER_RULES {
            return Err(MatrixError::TooLarge(format!("At most {MAX_USER_RULES} push rules per user")));
        }
        let global = serde_json::to_value(&rules).map_err(|e| MatrixError::Internal(e.into()))?;
        self.account_data.set(user_id, Scope::Global, PUSH_RULES, &json!({ "global": global })).await
    }

    pub async fn insert(
        &self,
        user_id: &str,
        rule: NewPushRule,
        after: Option<&str>,
        before: Option<&str>,
    ) -> Result<()> {
        use ruma::push::InsertPushRuleError as E;
        self.modify(user_id, |rules| {
            rules.insert(rule, after, before).map_err(|e| match e {
                E::UnknownRuleId => MatrixError::not_found(e.to_string()),
                _ => MatrixError::invalid_param(e.to_string()),
            })
        })
        .await
    }

    pub async fn remove(&self, user_id: &str, kind: RuleKind, rule_id: &str) -> Result<()> {
        use ruma::push::RemovePushRuleError as E;
        self.modify(user_id, |rules| {
            rules.remove(kind, rule_id).map_err(|e| match e {
                E::ServerDefault => MatrixError::forbidden("Server-default rules cannot be deleted"),
                _ => MatrixError::not_found("Push rule not found"),
            })
        })
        .await
    }

    pub async fn set_enabled(&self, user_id: &str, kind: RuleKind, rule_id: &str, enabled: bool) -> Result<()> {
        self.modify(user_id, |rules| {
            rules.set_enabled(kind, rule_id, enabled).map_err(|_| MatrixError::not_found("Push rule not found"))
        })
        .await
    }

    pub async fn set_actions(&self, user_id: &str, kind: RuleKind, rule_id: &str, actions: Vec<Action>) -> Result<()> {
        self.modify(user_id, |rules| {
            rules.set_actions(kind, rule_id, actions).map_err(|_| MatrixError::not_found("Push rule not found"))
        })
        .await
    }

    /// Add, replace (`kind` set) or remove (`kind` null) a pusher, as `POST /pushers/set`.
    pub async fn set_pusher(&self, user_id: &str, pusher: &Value, append: bool) -> Result<()> {
        let field = |name: &str| -> Result<&str> {
            pusher
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| MatrixError::MissingParam(format!("Missing or invalid '{name}'")))
        };
        let (app_id, pushkey) = (field("app_id")?, field("pushkey")?);
        if app_id.len() > 64 || pushkey.len() > 512 {
            return Err(MatrixError::invalid_param("app_id is at most 64 bytes, pushkey at most 512"));
        }
        match pusher.get("kind") {
            Some(Value::Null) => return Ok(self.store.delete_pusher(user_id, app_id, pushkey).await?),
            Some(Value::String(k)) if k == "http" => {
                let url = pusher.pointer("/data/url").and_then(Value::as_str);
                if url.is_none_or(|u| !u.starts_with("http://") && !u.starts_with("https://")) {
                    return Err(MatrixError::invalid_param("http pushers need data.url (an http(s) URL)"));
                }
            }
            Some(Value::String(_)) => {}
            _ => return Err(MatrixError::MissingParam("Missing or invalid 'kind'".into())),
        }
        for name in ["app_display_name", "device_display_name", "lang"] {
            field(name)?;
        }
        if !pusher.get("data").is_some_and(Value::is_object) {
            return Err(MatrixError::MissingParam("Missing or invalid 'data'".into()));
        }
        if self.store.count_pushers(user_id).await? >= MAX_PUSHERS {
            return Err(MatrixError::TooLarge(format!("At most {MAX_PUSHERS} pushers per user")));
        }
        let mut stored = pusher.clone();
        if let Some(o) = stored.as_object_mut() {
            o.remove("append");
        }
        let json = serde_json::to_string(&stored).map_err(|e| MatrixError::Internal(e.into()))?;
        self.store.put_pusher(user_id, app_id, pushkey, &json, append, now_ms()).await?;
        Ok(())
    }

    pub async fn pushers(&self, user_id: &str) -> Result<Vec<Value>> {
        Ok(self.store.pushers(user_id).await?.iter().filter_map(|j| serde_json::from_str(j).ok()).collect())
    }
}
