//! Simple tokens, as etcd's: `"<16 random letters>.<raft index>"`, assigned
//! by every member when it applies the Authenticate entry (so any member
//! accepts them), kept in memory only, valid for the TTL after their last
//! use. Enabling or disabling auth, a password change or a user's deletion
//! drops them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::Rng as _;

const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const PREFIX_LEN: usize = 16;
/// The longest token worth looking up: anything longer was never issued.
const MAX_TOKEN_LEN: usize = PREFIX_LEN + 1 + 20;
/// Expired tokens are swept when an assignment finds at least this many
/// (and then at twice the number that survived, so sweeps stay rare).
const SWEEP_AT: usize = 1024;

pub struct SimpleTokens {
    ttl: Duration,
    tokens: Mutex<Tokens>,
}

#[derive(Default)]
struct Tokens {
    by_token: HashMap<String, Entry>,
    sweep_at: usize,
}

struct Entry {
    user: String,
    expires: Instant,
}

impl SimpleTokens {
    /// A zero TTL means etcd's default, 300 s.
    pub fn new(ttl: Duration) -> Self {
        let ttl = if ttl.is_zero() { Duration::from_secs(300) } else { ttl };
        SimpleTokens { ttl, tokens: Mutex::new(Tokens { by_token: HashMap::new(), sweep_at: SWEEP_AT }) }
    }

    /// The random part of a new token, chosen by the proposing member.
    pub fn gen_prefix() -> String {
        let mut rng = rand::rngs::OsRng;
        (0..PREFIX_LEN).map(|_| LETTERS[rng.gen_range(0..LETTERS.len())] as char).collect()
    }

    /// The raft index a well-formed token names, if it is well-formed.
    pub fn index_of(token: &str) -> Option<u64> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let (prefix, index) = token.split_once('.')?;
        if prefix.is_empty() || index.contains('.') {
            return None;
        }
        index.parse().ok()
    }

    pub fn assign(&self, user: &str, prefix: &str, index: u64) -> String {
        let token = format!("{prefix}.{index}");
        let now = Instant::now();
        let mut tokens = self.tokens.lock();
        if tokens.by_token.len() >= tokens.sweep_at {
            tokens.by_token.retain(|_, e| e.expires > now);
            tokens.sweep_at = (2 * tokens.by_token.len()).max(SWEEP_AT);
        }
        tokens.by_token.insert(token.clone(), Entry { user: user.to_string(), expires: now + self.ttl });
        token
    }

    /// The user of a live token; renews its TTL.
    pub fn user(&self, token: &str) -> Option<String> {
        let now = Instant::now();
        let mut tokens = self.tokens.lock();
        let entry = tokens.by_token.get_mut(token)?;
        if entry.expires <= now {
            tokens.by_token.remove(token);
            return None;
        }
        entry.expires = now + self.ttl;
        Some(entry.user.clone())
    }

    pub fn invalidate_user(&self, user: &str) {
        self.tokens.lock().by_token.retain(|_, e| e.user != user);
    }

    pub fn clear(&self) {
        self.tokens.lock().by_token.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_lookup() {
        let t = SimpleTokens::new(Duration::from_secs(60));
        let prefix = SimpleTokens::gen_prefix();
        assert_eq!(prefix.len(), PREFIX_LEN);
        let token = t.assign("alice", &prefix, 42);
        assert_eq!(SimpleTokens::index_of(&token), Some(42));
        assert_eq!(t.user(&token).as_deref(), Some("alice"));
        t.invalidate_user("alice");
        assert_eq!(t.user(&token), None);
        for bad in ["", ".", "abc", "a.b", "a.1.2", ".5", &"x".repeat(10_000)] {
            assert_eq!(SimpleTokens::index_of(bad), None, "{bad:.20}");
        }
    }

    #[test]
    fn sweeps_expired_tokens() {
        let t = SimpleTokens::new(Duration::from_nanos(1));
        for i in 0..(3 * SWEEP_AT as u64) {
            t.assign("u", "p", i);
        }
        assert!(t.tokens.lock().by_token.len() <= SWEEP_AT);
    }

    #[test]
    fn expiry() {
        let t = SimpleTokens::new(Duration::from_nanos(1));
        let token = t.assign("bob", "abc", 1);
        assert_eq!(t.user(&token), None);
    }
}
