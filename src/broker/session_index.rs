//! Finding a session by client id and by store row: tables of session ids (4 bytes a slot)
//! whose keys are read from the sessions themselves.
//!
//! Why: a `HashMap<Rc<str>, SessionId>` slot is 24 bytes and a `HashMap<StoredSessionId,
//! SessionId>` slot 16, for keys every session already holds (`client_id`, `stored.id`). At
//! 10,000 sessions restored at start the two maps took 690 KB; these tables take 160 KB.
//! std's `HashMap` cannot compare keys through another table, hashbrown's `HashTable` (the
//! same implementation underneath) can.
//!
//! Contract: every id in a table names a live session whose key is the one it was inserted
//! under; callers remove an entry (by session id) before the key changes or the session
//! leaves the table of sessions. Lookups are O(1); nothing here reads input.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use super::session::{Session, SessionId};
use crate::slab::Slab;
use crate::store::StoredSessionId;

/// Below this capacity a table is not shrunk (as `disconnect::shrink_map`).
const MIN_SHRINK_CAPACITY: usize = 64;

pub struct SessionIndex {
    by_client: HashTable<SessionId>,
    by_store: HashTable<SessionId>,
    hasher: RandomState,
}

fn client_key(sessions: &Slab<Session>, id: SessionId) -> Option<&str> {
    sessions.get(id.0).map(|s| &*s.client_id)
}

fn store_key(sessions: &Slab<Session>, id: SessionId) -> Option<StoredSessionId> {
    sessions.get(id.0).and_then(|s| s.stored.as_ref()).map(|s| s.id)
}

impl SessionIndex {
    /// Room for `clients` client ids reserved at once (as the map it replaces was).
    pub fn with_capacity(clients: usize) -> SessionIndex {
        SessionIndex {
            by_client: HashTable::with_capacity(clients),
            by_store: HashTable::new(),
            hasher: RandomState::new(),
        }
    }

    /// Sessions by client id.
    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    pub fn client(&self, sessions: &Slab<Session>, client_id: &str) -> Option<SessionId> {
        let hash = self.hasher.hash_one(client_id);
        let found = self.by_client.find(hash, |&id| client_key(sessions, id) == Some(client_id));
        found.copied()
    }

    /// Adds live session `id` under its client id (the caller checked it is not there).
    pub fn insert_client(&mut self, sessions: &Slab<Session>, id: SessionId) {
        let Some(key) = client_key(sessions, id) else { return };
        let hasher = &self.hasher;
        let hash = hasher.hash_one(key);
        self.by_client.insert_unique(hash, id, |&other| {
            hasher.hash_one(client_key(sessions, other).unwrap_or_default())
        });
    }

    /// Removes session `id`, held under `client_id`.
    pub fn remove_client(&mut self, sessions: &Slab<Session>, client_id: &str, id: SessionId) {
        let hash = self.hasher.hash_one(client_id);
        if let Ok(entry) = self.by_client.find_entry(hash, |&other| other == id) {
            entry.remove();
        }
        let hasher = &self.hasher;
        shrink(&mut self.by_client, |&other| {
            hasher.hash_one(client_key(sessions, other).unwrap_or_default())
        });
    }

    /// Every session id held by client id, in no order.
    pub fn clients(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.by_client.iter().copied()
    }

    pub fn stored(&self, sessions: &Slab<Session>, key: StoredSessionId) -> Option<SessionId> {
        let hash = self.hasher.hash_one(key);
        self.by_store.find(hash, |&id| store_key(sessions, id) == Some(key)).copied()
    }

    /// Adds session `id` under its store row (set in the session; the caller removed the
    /// entry of its previous row).
    pub fn insert_stored(&mut self, sessions: &Slab<Session>, id: SessionId) {
        let Some(key) = store_key(sessions, id) else { return };
        let hasher = &self.hasher;
        let hash = hasher.hash_one(key);
        self.by_store.insert_unique(hash, id, |&other| {
            hasher.hash_one(store_key(sessions, other).unwrap_or(StoredSessionId(0)))
        });
    }

    /// Removes session `id`, held under store row `key`.
    pub fn remove_stored(&mut self, sessions: &Slab<Session>, key: StoredSessionId, id: SessionId) {
        let hash = self.hasher.hash_one(key);
        if let Ok(entry) = self.by_store.find_entry(hash, |&other| other == id) {
            entry.remove();
        }
        let hasher = &self.hasher;
        shrink(&mut self.by_store, |&other| {
            hasher.hash_one(store_key(sessions, other).unwrap_or(StoredSessionId(0)))
        });
    }
}

/// A table under a quarter full is shrunk to twice its length, as the maps were.
fn shrink(table: &mut HashTable<SessionId>, hasher: impl Fn(&SessionId) -> u64) {
    if table.capacity() > MIN_SHRINK_CAPACITY && table.len() < table.capacity() / 4 {
        table.shrink_to(table.len() * 2, hasher);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::session::{SessionExpiry, StoredQueue};
    use crate::codec::ProtocolVersion;

    fn add(sessions: &mut Slab<Session>, index: &mut SessionIndex, name: &str) -> SessionId {
        let session = Session::new(name.into(), ProtocolVersion::V311, SessionExpiry::Never);
        let id = SessionId(sessions.insert(session).expect("room"));
        index.insert_client(sessions, id);
        id
    }

    #[test]
    fn finds_sessions_by_client_id_and_store_row_through_growth_and_shrinking() {
        let mut sessions = Slab::new(1000);
        // No room reserved: inserts rehash, reading every key through the sessions.
        let mut index = SessionIndex::with_capacity(0);
        let ids: Vec<SessionId> =
            (0..500).map(|n| add(&mut sessions, &mut index, &format!("c-{n}"))).collect();
        for (n, &id) in ids.iter().enumerate() {
            let session = sessions.get_mut(id.0).expect("live");
            session.stored = Some(Box::new(StoredQueue::new(StoredSessionId(n as i64 + 7))));
            index.insert_stored(&sessions, id);
        }
        assert_eq!(index.len(), 500);
        assert_eq!(index.client(&sessions, "c-321"), Some(ids[321]));
        assert_eq!(index.client(&sessions, "c-500"), None);
        assert_eq!(index.stored(&sessions, StoredSessionId(7)), Some(ids[0]));
        assert_eq!(index.stored(&sessions, StoredSessionId(6)), None);
        // A session's row changes: found under the new one only.
        let session = sessions.get_mut(ids[3].0).expect("live");
        if let Some(stored) = session.stored.as_mut() {
            stored.id = StoredSessionId(9999);
        }
        index.remove_stored(&sessions, StoredSessionId(10), ids[3]);
        index.insert_stored(&sessions, ids[3]);
        assert_eq!(index.stored(&sessions, StoredSessionId(9999)), Some(ids[3]));
        assert_eq!(index.stored(&sessions, StoredSessionId(10)), None);
        // Sessions leave (removed from the sessions first, as `end_session` does); the
        // tables shrink and still find the rest.
        for (n, &id) in ids.iter().enumerate().skip(10) {
            let session = sessions.remove(id.0).expect("live");
            index.remove_client(&sessions, &session.client_id, id);
            index.remove_stored(&sessions, StoredSessionId(n as i64 + 7), id);
        }
        assert_eq!(index.len(), 10);
        assert!(index.by_client.capacity() < 100, "{}", index.by_client.capacity());
        assert!(index.by_store.capacity() < 100, "{}", index.by_store.capacity());
        assert_eq!(index.client(&sessions, "c-9"), Some(ids[9]));
        assert_eq!(index.client(&sessions, "c-10"), None);
        assert_eq!(index.stored(&sessions, StoredSessionId(9999)), Some(ids[3]));
        assert_eq!(index.stored(&sessions, StoredSessionId(8)), Some(ids[1]));
        let mut left: Vec<SessionId> = index.clients().collect();
        left.sort();
        assert_eq!(left, ids[..10].to_vec());
    }
}
