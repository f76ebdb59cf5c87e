//! One webhook delivery: its signature and what the endpoint's answer
//! means for it.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The signature header's value for `body` sent at `timestamp` (Unix
/// seconds): `sha256=` and the hex HMAC-SHA256, keyed by the secret, of
/// the timestamp, a dot and the body. Signing the timestamp lets the
/// endpoint refuse replays of an old delivery.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What an attempt's outcome means for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The endpoint took it.
    Delivered,
    /// Try again, after the given delay when the endpoint asked for one.
    Retry {
        /// Why the attempt failed.
        reason: String,
        /// The endpoint's `Retry-After`, in seconds.
        after: Option<Duration>,
    },
    /// Do not try again: the endpoint refused the message itself.
    Refused {
        /// Why.
        reason: String,
    },
}

impl Verdict {
    /// Judges an HTTP answer: 2xx is delivered; 408, 429 and 5xx are
    /// retried; any other status, redirects included (they are not
    /// followed), is a refusal of the message.
    pub fn of_status(status: u16, retry_after: Option<&str>) -> Self {
        let reason = format!("the endpoint answered {status}");
        match status {
            200..=299 => Self::Delivered,
            100..=199 => Self::Retry {
                reason: format!("{reason}, an interim answer with no final one read"),
                after: None,
            },
            408 | 429 | 500..=599 => Self::Retry {
                reason,
                after: retry_after
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs),
            },
            300..=399 => Self::Refused {
                reason: format!("{reason}, a redirect, which is not followed"),
            },
            _ => Self::Refused { reason },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_covers_timestamp_and_body() {
        // Known HMAC-SHA256 of "1700000000.{}" under "topsecret", computed
        // with OpenSSL: printf '1700000000.{}' | openssl dgst -sha256 -hmac topsecret
        let signed = sign(b"topsecret", 1_700_000_000, b"{}");
        assert_eq!(signed, EXPECTED);
        assert_ne!(sign(b"topsecret", 1_700_000_001, b"{}"), signed);
        assert_ne!(sign(b"other", 1_700_000_000, b"{}"), signed);
    }

    const EXPECTED: &str =
        "sha256=9ec0a0b3a9ebf7b4b512e23475f03d264dd11ea5aec41b6acdd5fff59a6a947c";

    #[test]
    fn statuses_are_judged_as_documented() {
        assert_eq!(Verdict::of_status(204, None), Verdict::Delivered);
        for status in [100, 103, 408, 429, 500, 503] {
            assert!(matches!(
                Verdict::of_status(status, None),
                Verdict::Retry { .. }
            ));
        }
        for status in [301, 400, 401, 404, 410, 422] {
            assert!(matches!(
                Verdict::of_status(status, None),
                Verdict::Refused { .. }
            ));
        }
        let Verdict::Retry { after, .. } = Verdict::of_status(429, Some(" 7 ")) else {
            panic!("429 is retried");
        };
        assert_eq!(after, Some(Duration::from_secs(7)));
    }
}
