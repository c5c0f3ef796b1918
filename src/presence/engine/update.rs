//! One step of the engine: apply an input, re-run the merge, and announce what changed
//! (stream position, wake-ups, the profile-room outbox, observers), then schedule the
//! user's next self-change on the timer.
use super::*;

/// What a change touched, to be announced after the user's entry is unlocked.
struct Emitted {
    public: Option<PresenceSnapshot>,
    own_pos: Option<i64>,
    change: Option<crate::presence::observe::EffectiveChange>,
}

impl PresenceEngine {
    /// Apply `change` to the user's inputs, re-run the merge, and announce what changed.
    pub(super) async fn update(&self, user_id: &str, now: i64, change: impl FnOnce(&mut UserEntry)) {
        self.update_caused(user_id, now, None, change).await
    }

    /// [`Self::update`], with the cause named when it cannot be read off the inputs.
    pub(super) async fn update_caused(
        &self,
        user_id: &str,
        now: i64,
        cause: Option<crate::presence::observe::ChangeCause>,
        change: impl FnOnce(&mut UserEntry),
    ) {
        if self.mode == PresenceMode::Disabled {
            // Reports and statuses are accepted and ignored (Synapse `presence.enabled: false`).
            return;
        }
        let emitted = {
            let mut entry = self.users.entry(user_id.to_owned()).or_default();
            let before_inputs = (entry.manual, admin_view::device_list(&entry));
            let before_last_active = entry.devices.values().map(|d| d.state.last_active_ts).max();
            let before_msg = (entry.public_status_msg().map(str::to_owned), entry.status_msg.clone());
            change(&mut entry);
            let devices = entry.device_states();
            let view = effective(entry.manual, &devices, now, &self.rules);
            let public_changed = view.public.differs_for_others(&entry.published)
                || entry.public_status_msg().map(str::to_owned) != before_msg.0;
            let own_changed = view.own != entry.view.own || entry.status_msg != before_msg.1;
            if entry.devices.values().map(|d| d.state.last_active_ts).max() != before_last_active {
                self.dirty.lock().insert(user_id.to_owned());
            }
            if public_changed {
                entry.published = view.public.clone();
            }
            let change = (view.public.presence != entry.view.public.presence).then(|| {
                let cause = cause.unwrap_or_else(|| {
                    let devices_changed = admin_view::device_list(&entry) != before_inputs.1;
                    crate::presence::observe::ChangeCause::infer(before_inputs.0, entry.manual, devices_changed)
                });
                crate::presence::observe::EffectiveChange {
                    ts: now,
                    user_id: user_id.to_owned(),
                    old: entry.view.public.presence,
                    new: view.public.presence,
                    cause,
                    device_kinds: view.own.active_kinds.clone(),
                    hidden: view.public.hidden,
                }
            });
            entry.view = view;
            let mut emitted = Emitted { public: None, own_pos: None, change };
            Metrics::inc(&self.metrics.presence_inputs);
            if public_changed {
                Metrics::inc(&self.metrics.presence_public_changes);
            } else if own_changed {
                Metrics::inc(&self.metrics.presence_own_changes);
            }
            if public_changed || own_changed {
                let pos = self.stream.allocate();
                if public_changed {
                    let mut changes = self.changes.lock();
                    if entry.public_pos > 0 {
                        changes.remove(&entry.public_pos);
                    }
                    changes.insert(pos.pos, user_id.to_owned());
                    self.inboxes.begin(pos.pos, user_id, now);
                    entry.public_pos = pos.pos;
                    emitted.public = Some(PresenceSnapshot {
                        user_id: user_id.to_owned(),
                        presence: entry.view.public.clone(),
                        status_msg: entry.public_status_msg().map(str::to_owned),
                        pos: pos.pos,
                    });
                }
                entry.own_pos = pos.pos;
                emitted.own_pos = Some(pos.pos);
                pos.complete();
            }
            self.schedule(user_id, entry.manual, &entry.device_states(), now);
            emitted
        };
        if let Some(change) = &emitted.change {
            for o in self.observers.read().iter() {
                o.on_effective_change(change);
            }
        }
        if let Some(pos) = emitted.own_pos {
            self.notifier.wake_presence([user_id], pos);
        }
        if let Some(snapshot) = emitted.public {
            match self.access.viewers_of(user_id).await {
                Ok(viewers) => {
                    self.inboxes.deliver(snapshot.pos, viewers.ixs());
                    self.notifier.wake_presence_ixs(viewers.ixs(), snapshot.pos)
                }
                Err(e) => {
                    self.inboxes.abandon(snapshot.pos);
                    tracing::warn!(error = %e, "could not find who sees {user_id}")
                }
            }
            self.public_changes.push(&snapshot);
            if let Some(outbox) = self.federation_outbox.get() {
                outbox.changed(user_id);
            }
        }
    }

    fn schedule(&self, user_id: &str, manual: ManualStatus, devices: &[DeviceState], now: i64) {
        match next_change_at(manual, devices, now, &self.rules) {
            Some(at) => self.deadlines.schedule(user_id.to_owned(), at),
            None => {
                self.deadlines.cancel(&user_id.to_owned());
            }
        }
    }
}
