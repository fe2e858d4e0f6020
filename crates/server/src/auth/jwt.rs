//! JWT tokens, as etcd's `--auth-token jwt,pub-key=..,priv-key=..,sign-method=..,ttl=..`:
//! claims `username`, `revision` (the auth revision when issued) and `exp`.
//! They are stateless: any member holding the key verifies them, they end
//! at `exp`, and an auth change makes their revision old.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::AuthInfo;

/// No token we issue comes near this; longer input is not decoded.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// etcd's default JWT lifetime.
const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);

#[derive(Serialize, Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

pub struct JwtTokens {
    alg: Algorithm,
    /// None: verify-only (only a public key was given).
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    ttl: Duration,
}

impl JwtTokens {
    /// From the `key=value` options of `--auth-token jwt,...`.
    pub fn from_options(opts: &HashMap<String, String>) -> Result<JwtTokens, String> {
        let method = opts.get("sign-method").map(String::as_str).unwrap_or("");
        let alg: Algorithm = method.parse().map_err(|_| "auth: invalid auth signature method".to_string())?;
        let ttl = match opts.get("ttl") {
            Some(t) => retcd_api::duration::parse_go_duration(t)?,
            None => DEFAULT_TTL,
        };
        let read = |name: &str| -> Result<Option<Vec<u8>>, String> {
            match opts.get(name) {
                Some(path) => std::fs::read(path).map(Some).map_err(|e| format!("{name} {path}: {e}")),
                None => Ok(None),
            }
        };
        let (private, public) = (read("priv-key")?, read("pub-key")?);
        let bad = |e: jsonwebtoken::errors::Error| format!("auth: invalid key: {e}");
        let (encoding, decoding) = match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let secret = private.ok_or("auth: missing key data")?;
                (Some(EncodingKey::from_secret(&secret)), DecodingKey::from_secret(&secret))
            }
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => {
                let public = public.ok_or("auth: missing key data (retcd needs pub-key to verify)")?;
                let encoding = private.map(|p| EncodingKey::from_rsa_pem(&p)).transpose().map_err(bad)?;
                (encoding, DecodingKey::from_rsa_pem(&public).map_err(bad)?)
            }
            Algorithm::ES256 | Algorithm::ES384 => {
                let public = public.ok_or("auth: missing key data (retcd needs pub-key to verify)")?;
                let encoding = private.map(|p| EncodingKey::from_ec_pem(&p)).transpose().map_err(bad)?;
                (encoding, DecodingKey::from_ec_pem(&public).map_err(bad)?)
            }
            Algorithm::EdDSA => return Err("auth: invalid auth signature method".into()),
        };
        Ok(JwtTokens { alg, encoding, decoding, ttl })
    }

    /// A signed token for `user` at auth revision `revision`.
    pub fn assign(&self, user: &str, revision: u64) -> Result<String, String> {
        let key = self.encoding.as_ref().ok_or("auth: token signing attempted with verify-only key")?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let claims = Claims { username: user.to_string(), revision, exp: (now + self.ttl).as_secs() };
        jsonwebtoken::encode(&Header::new(self.alg), &claims, key).map_err(|e| e.to_string())
    }

    /// The credentials in a valid, unexpired token signed with our key.
    pub fn info(&self, token: &str) -> Option<AuthInfo> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let mut v = Validation::new(self.alg);
        v.leeway = 0;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v).ok()?;
        Some(AuthInfo { username: data.claims.username, revision: data.claims.revision })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_round_trip_and_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, b"secret").unwrap();
        let opts: HashMap<String, String> =
            [("sign-method".to_string(), "HS256".to_string()), ("priv-key".to_string(), key.display().to_string())]
                .into();
        let t = JwtTokens::from_options(&opts).unwrap();
        let token = t.assign("alice", 7).unwrap();
        assert_eq!(t.info(&token), Some(AuthInfo { username: "alice".into(), revision: 7 }));
        let mut forged = token.clone();
        forged.pop();
        assert_eq!(t.info(&forged), None);
        assert_eq!(t.info("a.b.c"), None);
        assert_eq!(t.info(&"x".repeat(MAX_TOKEN_LEN + 1)), None);
        let bad: HashMap<String, String> = [("sign-method".to_string(), "nope".to_string())].into();
        assert!(JwtTokens::from_options(&bad).is_err());
    }
}
