//! JWT bearer tokens: HS256 with a configured secret, RS256 with a
//! configured public key; `exp` and `nbf` checked, `aud` and `iss` when the
//! config names them.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::{AuthError, AuthSetupError, Principal};
use crate::config::JwtConfig;

/// Verifies bearer tokens.
pub struct TokenVerifier {
    hs256: Option<DecodingKey>,
    rs256: Option<DecodingKey>,
    settings: JwtConfig,
}

impl TokenVerifier {
    /// The verifier the settings describe; a key file that cannot be read
    /// or parsed is refused.
    pub fn new(settings: &JwtConfig) -> Result<Self, AuthSetupError> {
        let hs256 = settings
            .hs256_secret
            .as_deref()
            .map(|secret| DecodingKey::from_secret(secret.as_bytes()));
        let rs256 = match &settings.rs256_public_key_file {
            None => None,
            Some(path) => {
                let setting = "auth.jwt.rs256_public_key_file";
                let failed = |reason: String| AuthSetupError::Setting { setting, reason };
                let pem = std::fs::read(path)
                    .map_err(|e| failed(format!("cannot read `{}`: {e}", path.display())))?;
                let key = DecodingKey::from_rsa_pem(&pem).map_err(|e| {
                    failed(format!(
                        "`{}` is not an RSA public key: {e}",
                        path.display()
                    ))
                })?;
                Some(key)
            }
        };
        Ok(Self {
            hs256,
            rs256,
            settings: settings.clone(),
        })
    }

    /// The principal a token names, once its signature and times hold.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let invalid =
            |reason: &str| AuthError::Unauthenticated(format!("invalid bearer token: {reason}"));
        let header = decode_header(token).map_err(|_| invalid("it is not a JWT"))?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => self.rs256.as_ref(),
            _ => None,
        };
        let key =
            key.ok_or_else(|| invalid(&format!("{:?} tokens are not accepted", header.alg)))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.settings.leeway_secs;
        validation.validate_nbf = true;
        match &self.settings.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &self.settings.issuer {
            validation.set_issuer(&[issuer]);
        }
        let data = decode::<Map<String, Value>>(token, key, &validation).map_err(|e| {
            let reason = match e.kind() {
                ErrorKind::ExpiredSignature => "it has expired",
                ErrorKind::ImmatureSignature => "it is not valid yet (nbf)",
                ErrorKind::InvalidSignature => "its signature does not verify",
                ErrorKind::InvalidAudience => "its audience (aud) is not accepted",
                ErrorKind::InvalidIssuer => "its issuer (iss) is not accepted",
                ErrorKind::MissingRequiredClaim(_) => "it lacks a required claim (exp)",
                _ => "it cannot be decoded",
            };
            invalid(reason)
        })?;
        let claims = data.claims;
        let name = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("it has no `sub`"))?
            .to_owned();
        let roles = roles(claims.get(&self.settings.roles_claim));
        let expires_at = claims.get("exp").and_then(Value::as_i64);
        Ok(Principal {
            name,
            roles,
            claims,
            expires_at,
        })
    }
}

/// Roles from a claim: an array of strings, or one space-separated string.
fn roles(claim: Option<&Value>) -> Vec<String> {
    match claim {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(text)) => text.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn verifier() -> TokenVerifier {
        let settings = JwtConfig {
            hs256_secret: Some("secret".into()),
            audience: Some("gateway".into()),
            ..Default::default()
        };
        TokenVerifier::new(&settings).expect("settings")
    }

    fn token(claims: Value, secret: &str) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("token")
    }

    #[test]
    fn tokens_are_checked_for_signature_times_and_audience() {
        let now = chrono::Utc::now().timestamp();
        let good = json!({"sub": "d1", "aud": "gateway", "exp": now + 60, "roles": ["device"]});
        let principal = verifier()
            .verify(&token(good.clone(), "secret"))
            .expect("valid");
        assert_eq!(
            (principal.name.as_str(), principal.roles.clone()),
            ("d1", vec!["device".into()])
        );
        let refused = |claims: Value, secret: &str| match verifier().verify(&token(claims, secret))
        {
            Err(AuthError::Unauthenticated(reason)) => reason,
            other => panic!("refused expected, got {other:?}"),
        };
        assert!(refused(good.clone(), "other").contains("signature"));
        let expired = json!({"sub": "d1", "aud": "gateway", "exp": now - 120});
        assert!(refused(expired, "secret").contains("expired"));
        let early = json!({"sub": "d1", "aud": "gateway", "exp": now + 600, "nbf": now + 300});
        assert!(refused(early, "secret").contains("not valid yet"));
        let elsewhere = json!({"sub": "d1", "aud": "other", "exp": now + 60});
        assert!(refused(elsewhere, "secret").contains("audience"));
        assert!(matches!(
            verifier().verify("not-a-token"),
            Err(AuthError::Unauthenticated(_))
        ));
    }
}
