//! Passwords: bcrypt hashes made and checked on the blocking pool, so a
//! slow hash never stalls the async runtime. Plain passwords go no further
//! than this module: only hashes are proposed.

use retcd_api::errors::EtcdError;
use tonic::Status;

/// Longest password bcrypt looks at (it ignores the rest, and refuses
/// longer input in the crate we use): longer passwords are cut, as Go's
/// bcrypt 0.0-era versions that etcd 3.4 vendors do.
const BCRYPT_MAX_PASSWORD: usize = 72;

fn truncate(p: &str) -> &[u8] {
    let b = p.as_bytes();
    &b[..b.len().min(BCRYPT_MAX_PASSWORD)]
}

/// The bcrypt hash of `password` at `cost`.
pub async fn hash(password: String, cost: u32) -> Result<Vec<u8>, Status> {
    let hashed = tokio::task::spawn_blocking(move || bcrypt::hash(truncate(&password), cost))
        .await
        .map_err(|_| Status::from(EtcdError::Stopped))?;
    match hashed {
        Ok(h) => Ok(h.into_bytes()),
        Err(e) => {
            tracing::error!("failed to hash a password: {e}");
            Err(Status::internal("etcdserver: failed to hash the password"))
        }
    }
}

/// Whether `password` matches `hash` (bcrypt compares in constant time; a
/// malformed hash does not match).
pub async fn verify(password: String, hash: Vec<u8>) -> Result<bool, Status> {
    tokio::task::spawn_blocking(move || {
        std::str::from_utf8(&hash).ok().and_then(|h| bcrypt::verify(truncate(&password), h).ok()).unwrap_or(false)
    })
    .await
    .map_err(|_| Status::from(EtcdError::Stopped))
}

/// Costs what checking `password` against a real hash costs, so that an
/// unknown user cannot be told from a wrong password by the time taken.
pub async fn verify_nothing(password: String, cost: u32) {
    static DUMMY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(h) = DUMMY.get_or_init(|| bcrypt::hash("retcd-no-such-user", cost).ok()) {
            let _ = bcrypt::verify(truncate(&password), h);
        }
    })
    .await;
}
