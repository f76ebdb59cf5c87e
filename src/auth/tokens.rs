//! JWT bearer tokens: HS256 with a configured secret, RS256 with a
//! configured public key, and any asymmetric algorithm with a key of a JWKS
//! file, chosen by the token's `kid`; `exp` and `nbf` checked, `aud` and
//! `iss` when the config names them.

use std::path::Path;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{JwkSet, KeyAlgorithm};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Header, Validation};
use serde_json::{Map, Value};

use super::{AuthError, AuthSetupError, Principal};
use crate::config::JwtConfig;

/// Verifies bearer tokens.
pub struct TokenVerifier {
    hs256: Option<DecodingKey>,
    rs256: Option<DecodingKey>,
    jwks: Vec<SetKey>,
    settings: JwtConfig,
}

/// One key of the JWKS file.
struct SetKey {
    kid: Option<String>,
    alg: Option<KeyAlgorithm>,
    key: DecodingKey,
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
            Some(path) => Some(rsa_key(path)?),
        };
        let jwks = match &settings.jwks_file {
            None => Vec::new(),
            Some(path) => key_set(path)?,
        };
        Ok(Self {
            hs256,
            rs256,
            jwks,
            settings: settings.clone(),
        })
    }

    /// The key that verifies a token with `header`: the key set's key of
    /// its `kid`, else the configured key of its algorithm, else the key
    /// set's only key.
    fn key(&self, header: &Header) -> Result<&DecodingKey, String> {
        let alg = header.alg;
        let matches = |key: &SetKey| {
            key.alg
                .is_none_or(|a| format!("{a:?}") == format!("{alg:?}"))
        };
        if let (Some(kid), false) = (&header.kid, self.jwks.is_empty()) {
            let key = self.jwks.iter().find(|k| k.kid.as_deref() == Some(kid));
            return match key {
                Some(key) if matches(key) => Ok(&key.key),
                Some(_) => Err(format!("key `{kid}` is not for {alg:?}")),
                None => Err(format!("no key `{kid}` in the key set")),
            };
        }
        let configured = match alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => self.rs256.as_ref(),
            _ => None,
        };
        let only = match self.jwks.as_slice() {
            [key] if matches(key) && alg != Algorithm::HS256 => Some(&key.key),
            _ => None,
        };
        configured
            .or(only)
            .ok_or_else(|| format!("{alg:?} tokens are not accepted"))
    }

    /// The principal a token names, once its signature and times hold.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let invalid =
            |reason: &str| AuthError::Unauthenticated(format!("invalid bearer token: {reason}"));
        let header = decode_header(token).map_err(|_| invalid("it is not a JWT"))?;
        let key = self.key(&header).map_err(|reason| invalid(&reason))?;
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

/// The RSA public key of a PEM file.
fn rsa_key(path: &Path) -> Result<DecodingKey, AuthSetupError> {
    let failed = |reason: String| AuthSetupError::Setting {
        setting: "auth.jwt.rs256_public_key_file".into(),
        reason,
    };
    let pem = std::fs::read(path)
        .map_err(|e| failed(format!("cannot read `{}`: {e}", path.display())))?;
    DecodingKey::from_rsa_pem(&pem).map_err(|e| {
        failed(format!(
            "`{}` is not an RSA public key: {e}",
            path.display()
        ))
    })
}

/// The public keys of a JWKS file; symmetric keys are refused, since a
/// key set is meant to be public.
fn key_set(path: &Path) -> Result<Vec<SetKey>, AuthSetupError> {
    let failed = |reason: String| AuthSetupError::Setting {
        setting: "auth.jwt.jwks_file".into(),
        reason,
    };
    let text = std::fs::read(path)
        .map_err(|e| failed(format!("cannot read `{}`: {e}", path.display())))?;
    let set: JwkSet = serde_json::from_slice(&text)
        .map_err(|e| failed(format!("`{}` is not a JWK set: {e}", path.display())))?;
    set.keys
        .iter()
        .enumerate()
        .map(|(index, jwk)| {
            let at = || format!("`{}` key {index}", path.display());
            if matches!(
                jwk.algorithm,
                jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)
            ) {
                return Err(failed(format!("{} is a symmetric key", at())));
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|e| failed(format!("{}: {e}", at())))?;
            Ok(SetKey {
                kid: jwk.common.key_id.clone(),
                alg: jwk.common.key_algorithm,
                key,
            })
        })
        .collect()
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

    /// An RSA key pair made by `openssl`: the private key in PEM, and the
    /// public key's file.
    fn rsa_pair(dir: &std::path::Path) -> (Vec<u8>, std::path::PathBuf) {
        let private = dir.join("private.pem");
        let public = dir.join("public.pem");
        let run = |args: &[&str]| {
            let status = std::process::Command::new("openssl")
                .args(args)
                .stderr(std::process::Stdio::null())
                .status()
                .expect("openssl runs");
            assert!(status.success(), "openssl {args:?}");
        };
        let private_path = private.to_str().expect("path");
        let public_path = public.to_str().expect("path");
        run(&["genrsa", "-out", private_path, "2048"]);
        run(&["rsa", "-in", private_path, "-pubout", "-out", public_path]);
        (std::fs::read(&private).expect("private key"), public)
    }

    #[test]
    fn rs256_tokens_verify_against_the_configured_public_key() {
        let dir = tempfile::tempdir().expect("folder");
        let (private, public) = rsa_pair(dir.path());
        let settings = JwtConfig {
            rs256_public_key_file: Some(public),
            issuer: Some("https://issuer.test".into()),
            ..Default::default()
        };
        let verifier = TokenVerifier::new(&settings).expect("settings");
        let key = EncodingKey::from_rsa_pem(&private).expect("private key");
        let exp = chrono::Utc::now().timestamp() + 60;
        let sign =
            |claims: Value| encode(&Header::new(Algorithm::RS256), &claims, &key).expect("token");
        let claims = json!({"sub": "svc", "iss": "https://issuer.test", "exp": exp, "roles": "reader writer"});
        let principal = verifier.verify(&sign(claims)).expect("valid");
        assert_eq!(principal.roles, ["reader", "writer"]);
        let foreign = sign(json!({"sub": "svc", "iss": "https://other.test", "exp": exp}));
        let refused = |token: &str| match verifier.verify(token) {
            Err(AuthError::Unauthenticated(reason)) => reason,
            other => panic!("refused expected, got {other:?}"),
        };
        assert!(refused(&foreign).contains("issuer"));
        // An HS256 token is refused when no HS256 secret is configured.
        let hs = token(json!({"sub": "svc", "exp": exp}), "secret");
        assert!(refused(&hs).contains("not accepted"));
        let missing = JwtConfig {
            rs256_public_key_file: Some(dir.path().join("missing.pem")),
            ..Default::default()
        };
        assert!(TokenVerifier::new(&missing).is_err());
    }

    /// A JWK set holding the RSA public key of `public` under `kid`.
    fn jwks_of(public: &std::path::Path, kid: &str) -> String {
        use base64::Engine as _;
        let output = std::process::Command::new("openssl")
            .args(["rsa", "-pubin", "-noout", "-modulus", "-in"])
            .arg(public)
            .output()
            .expect("openssl runs");
        let text = String::from_utf8(output.stdout).expect("text");
        let modulus = hex::decode(text.trim().trim_start_matches("Modulus=")).expect("hex");
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(modulus);
        json!({"keys": [{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": n, "e": "AQAB"}]})
            .to_string()
    }

    #[test]
    fn jwks_keys_are_chosen_by_kid() {
        let dir = tempfile::tempdir().expect("folder");
        let (private, public) = rsa_pair(dir.path());
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, jwks_of(&public, "k1")).expect("write");
        let settings = JwtConfig {
            jwks_file: Some(jwks.clone()),
            ..Default::default()
        };
        let verifier = TokenVerifier::new(&settings).expect("settings");
        let key = EncodingKey::from_rsa_pem(&private).expect("private key");
        let claims = json!({"sub": "svc", "exp": chrono::Utc::now().timestamp() + 60});
        let sign = |kid: Option<&str>| {
            let mut header = Header::new(Algorithm::RS256);
            header.kid = kid.map(str::to_owned);
            encode(&header, &claims, &key).expect("token")
        };
        assert_eq!(verifier.verify(&sign(Some("k1"))).expect("k1").name, "svc");
        // Without a kid, the set's only key is used.
        assert_eq!(verifier.verify(&sign(None)).expect("only key").name, "svc");
        match verifier.verify(&sign(Some("k2"))) {
            Err(AuthError::Unauthenticated(reason)) => assert!(reason.contains("no key `k2`")),
            other => panic!("refused expected, got {other:?}"),
        }
        let elsewhere = tempfile::tempdir().expect("folder");
        let (other_private, _) = rsa_pair(elsewhere.path());
        let forged = encode(
            &Header {
                kid: Some("k1".into()),
                ..Header::new(Algorithm::RS256)
            },
            &claims,
            &EncodingKey::from_rsa_pem(&other_private).expect("key"),
        )
        .expect("token");
        assert!(verifier.verify(&forged).is_err());
        std::fs::write(&jwks, r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).expect("write");
        let refused = TokenVerifier::new(&settings).err().expect("refused");
        assert!(refused.to_string().contains("jwks_file"));
    }
}
