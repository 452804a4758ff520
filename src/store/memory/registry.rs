//! Leases of the engines connected to one in-process backend, timed by tokio's clock.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl Registry for MemoryStore {
    async fn register(&self) -> StoreResult<Option<String>> {
        let mut state = self.backend.lock();
        let me = self.instance.incarnation.to_string();
        state.instances.insert(
            me.clone(),
            InstanceState {
                expires: Instant::now() + self.backend.lease,
                sessions: HashSet::new(),
            },
        );
        let previous = state.names.insert(self.instance.name.clone(), me.clone());
        *self
            .generation
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(state.generation);
        Ok(previous.filter(|p| *p != me && state.instances.contains_key(p)))
    }

    async fn renew_lease(&self) -> StoreResult<LeaseStatus> {
        let mut state = self.backend.lock();
        let mut known = self
            .generation
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let generation = state.generation;
        let me = self.instance.incarnation.to_string();
        let expires = Instant::now() + self.backend.lease;
        let status = if *known != Some(generation) {
            LeaseStatus::StoreReset
        } else if state.instances.contains_key(&me) {
            LeaseStatus::Held
        } else {
            LeaseStatus::WasLost
        };
        *known = Some(generation);
        state
            .instances
            .entry(me.clone())
            .or_insert_with(|| InstanceState {
                expires,
                sessions: HashSet::new(),
            })
            .expires = expires;
        state.names.insert(self.instance.name.clone(), me);
        Ok(status)
    }

    async fn deregister(&self) -> StoreResult<()> {
        let mut state = self.backend.lock();
        let me = &self.instance.incarnation.to_string();
        state.instances.remove(me);
        if state.names.get(&self.instance.name) == Some(me) {
            state.names.remove(&self.instance.name);
        }
        Ok(())
    }

    async fn expired_instances(&self) -> StoreResult<Vec<String>> {
        let now = Instant::now();
        Ok(self
            .backend
            .lock()
            .instances
            .iter()
            .filter(|(_, inst)| inst.expires < now)
            .map(|(id, _)| id.clone())
            .collect())
    }

    async fn claim_reap(&self, dead: &str) -> StoreResult<bool> {
        let mut state = self.backend.lock();
        let now = Instant::now();
        let me = self.instance.incarnation.to_string();
        match state.claims.get(dead) {
            Some((holder, until)) if *until > now && *holder != me => Ok(false),
            _ => {
                state
                    .claims
                    .insert(dead.to_owned(), (me, now + self.backend.lease));
                Ok(true)
            }
        }
    }

    async fn sessions_of(&self, dead: &str) -> StoreResult<Vec<String>> {
        let state = self.backend.lock();
        let mut sessions: Vec<String> = state
            .instances
            .get(dead)
            .map(|i| i.sessions.iter().cloned().collect())
            .unwrap_or_default();
        sessions.sort();
        Ok(sessions)
    }

    async fn forget_instance(&self, dead: &str) -> StoreResult<()> {
        let mut state = self.backend.lock();
        state.instances.remove(dead);
        state.claims.remove(dead);
        state.names.retain(|_, incarnation| incarnation != dead);
        Ok(())
    }

    async fn resume_secret(&self) -> StoreResult<Vec<u8>> {
        let mut state = self.backend.lock();
        Ok(state
            .resume_secret
            .get_or_insert_with(crate::resume::fresh_secret)
            .clone())
    }
}
