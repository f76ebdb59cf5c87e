//! Callback URLs: http or https, and, unless the config allows it, only
//! hosts that resolve to public addresses, so that a subscription cannot
//! turn the gateway against its own network.

use std::error::Error as StdError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use futures_util::future::LocalBoxFuture;
use url::Url;

/// Why a callback URL is refused.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// It does not parse.
    #[error("`callback_url` is not a URL: {0}")]
    Invalid(String),
    /// Another scheme than http or https.
    #[error("`callback_url` must use http or https, not `{0}`")]
    Scheme(String),
    /// No host to deliver to.
    #[error("`callback_url` has no host")]
    NoHost,
    /// Credentials in the URL would be listed back by the API.
    #[error(
        "`callback_url` must not carry a user name or password; \
         use `secret` to let the endpoint verify the sender"
    )]
    Credentials,
    /// Longer than any endpoint would take.
    #[error("`callback_url` is {0} bytes long; at most 2048 are allowed")]
    TooLong(usize),
    /// The host does not resolve.
    #[error("`callback_url` host `{host}` cannot be resolved: {reason}")]
    Unresolvable {
        /// The host.
        host: String,
        /// The resolver's answer.
        reason: String,
    },
    /// The host is, or resolves to, an address the config does not allow.
    #[error(
        "`callback_url` host `{host}` is {address}, which is not a public address ({kind}); \
         the config must set `webhooks.allow_private_targets = true` to allow it"
    )]
    Private {
        /// The host.
        host: String,
        /// The address it resolved to.
        address: IpAddr,
        /// What kind of address it is.
        kind: &'static str,
    },
}

/// Longest accepted callback URL, in bytes.
const MAX_URL_BYTES: usize = 2048;

/// Why a stored callback URL may not be used under the current policy: a
/// host that is a non-public address literal while private targets are not
/// allowed. Names are checked at each connection instead.
pub fn refused_literal(url: &str, allow_private: bool) -> Option<String> {
    if allow_private {
        return None;
    }
    let parsed = Url::parse(url).ok()?;
    let ip: IpAddr = match parsed.host()? {
        url::Host::Ipv4(v4) => v4.into(),
        url::Host::Ipv6(v6) => v6.into(),
        url::Host::Domain(_) => return None,
    };
    let kind = non_public(ip)?;
    Some(format!(
        "the callback address {ip} is not a public address ({kind}) and \
         `webhooks.allow_private_targets` is off"
    ))
}

/// Checks a callback URL when a subscription is created: its scheme, its
/// host, and the addresses the host resolves to now.
pub async fn check_callback_url(raw: &str, allow_private: bool) -> Result<Url, CallbackError> {
    if raw.len() > MAX_URL_BYTES {
        return Err(CallbackError::TooLong(raw.len()));
    }
    let mut url = Url::parse(raw).map_err(|e| CallbackError::Invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(CallbackError::Scheme(url.scheme().to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(CallbackError::Credentials);
    }
    url.set_fragment(None);
    let host = url.host_str().ok_or(CallbackError::NoHost)?.to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let lookup_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((lookup_host.as_str(), port))
        .await
        .map_err(|e| CallbackError::Unresolvable {
            host: host.clone(),
            reason: e.to_string(),
        })?
        .collect();
    if !allow_private {
        if let Some((address, kind)) = addresses
            .iter()
            .find_map(|a| non_public(a.ip()).map(|kind| (a.ip(), kind)))
        {
            return Err(CallbackError::Private {
                host,
                address,
                kind,
            });
        }
    }
    Ok(url)
}

/// Resolves callback hosts at each connection and keeps only public
/// addresses, so a name that later resolves to a private address (DNS
/// rebinding) is not reached either.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicOnlyResolver;

impl actix_tls::connect::Resolve for PublicOnlyResolver {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, Result<Vec<SocketAddr>, Box<dyn StdError>>> {
        Box::pin(async move {
            // An IPv6 literal arrives in its brackets.
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = bare.parse::<IpAddr>() {
                if let Some(kind) = non_public(ip) {
                    return Err(format!("{ip} is not a public address ({kind})").into());
                }
                return Ok(vec![SocketAddr::new(ip, port)]);
            }
            let resolved = tokio::net::lookup_host((bare, port)).await?;
            let public: Vec<SocketAddr> =
                resolved.filter(|a| non_public(a.ip()).is_none()).collect();
            if public.is_empty() {
                let message = format!("`{host}` resolves to no public address");
                return Err(message.into());
            }
            Ok(public)
        })
    }
}

/// What kind of non-public address `ip` is, or `None` for a public one.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let kind = if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private"
    } else if ip.is_link_local() {
        "link-local"
    } else if a == 0 {
        "unspecified"
    } else if a == 100 && (64..128).contains(&b) {
        "shared (carrier-grade NAT)"
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        "multicast or reserved"
    } else if ip.is_documentation() || (a == 198 && (18..20).contains(&b)) {
        "documentation or benchmarking"
    } else if a == 192 && b == 0 && c == 0 {
        "IETF protocol assignment"
    } else {
        return None;
    };
    Some(kind)
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return non_public_v4(v4);
    }
    let segments = ip.segments();
    let embedded = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    let [s0, s1, s2, s3, s4, s5, s6, s7] = segments;
    // Forms that carry an IPv4 address, which decides: NAT64
    // (64:ff9b::/96), IPv4-translated (::ffff:0:0:0/96), IPv4-compatible
    // (::/96, beyond :: and ::1) and 6to4 (2002::/16).
    let carried = match (s0, s1, s2, s3, s4, s5) {
        (0x64, 0xff9b, 0, 0, 0, 0) | (0, 0, 0, 0, 0xffff, 0) => Some(embedded(s6, s7)),
        (0, 0, 0, 0, 0, 0) if !ip.is_loopback() && !ip.is_unspecified() => Some(embedded(s6, s7)),
        (0x2002, ..) => Some(embedded(s1, s2)),
        _ => None,
    };
    if let Some(v4) = carried {
        return non_public_v4(v4);
    }
    let kind = if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_unique_local() {
        "private (unique local)"
    } else if ip.is_unicast_link_local() {
        "link-local"
    } else if ip.is_multicast() {
        "multicast"
    } else if segments[0] == 0x2001 && segments[1] == 0x0db8 {
        "documentation"
    } else {
        return None;
    };
    Some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(ip: &str) -> Option<&'static str> {
        non_public(ip.parse().expect("test address"))
    }

    #[test]
    fn private_and_loopback_addresses_are_named() {
        assert_eq!(kind("127.0.0.1"), Some("loopback"));
        assert_eq!(kind("10.1.2.3"), Some("private"));
        assert_eq!(kind("172.16.0.1"), Some("private"));
        assert_eq!(kind("192.168.1.1"), Some("private"));
        assert_eq!(kind("169.254.169.254"), Some("link-local"));
        assert_eq!(kind("0.0.0.0"), Some("unspecified"));
        assert_eq!(kind("100.64.0.1"), Some("shared (carrier-grade NAT)"));
        assert_eq!(kind("::1"), Some("loopback"));
        assert_eq!(kind("fd00::1"), Some("private (unique local)"));
        assert_eq!(kind("fe80::1"), Some("link-local"));
        assert_eq!(kind("::ffff:127.0.0.1"), Some("loopback"));
        assert_eq!(kind("64:ff9b::a00:1"), Some("private"));
        assert_eq!(kind("::127.0.0.1"), Some("loopback"));
        assert_eq!(kind("::ffff:0:127.0.0.1"), Some("loopback"));
        assert_eq!(kind("2002:7f00:1::"), Some("loopback"));
        assert_eq!(kind("2002:5db8:d70e::1"), None);
    }

    #[test]
    fn public_addresses_pass() {
        assert_eq!(kind("93.184.215.14"), None);
        assert_eq!(kind("172.32.0.1"), None);
        assert_eq!(kind("2606:4700::1111"), None);
    }

    #[actix_web::rt::test]
    async fn urls_are_checked_before_any_delivery() {
        let refused = |raw: &'static str, allow| async move {
            check_callback_url(raw, allow)
                .await
                .expect_err(raw)
                .to_string()
        };
        assert!(refused("ftp://example.com/x", true)
            .await
            .contains("not `ftp`"));
        assert!(refused("not a url", true).await.contains("not a URL"));
        assert!(refused("http://u:p@localhost/", true)
            .await
            .contains("password"));
        let loopback = refused("http://127.0.0.1:9/hook", false).await;
        assert!(loopback.contains("loopback"), "{loopback}");
        assert!(loopback.contains("allow_private_targets"), "{loopback}");
        let named = refused("http://localhost:9/hook", false).await;
        assert!(named.contains("loopback"), "{named}");
        let long = format!("http://example.com/{}", "a".repeat(3000));
        assert!(check_callback_url(&long, true).await.is_err());
        assert!(refused_literal("http://127.0.0.1:9/", false).is_some());
        assert!(refused_literal("http://[::1]:9/", false).is_some());
        assert!(refused_literal("http://127.0.0.1:9/", true).is_none());
        assert!(refused_literal("http://localhost:9/", false).is_none());
        let allowed = check_callback_url("http://127.0.0.1:9/hook#x", true).await;
        assert_eq!(
            allowed.expect("allowed").as_str(),
            "http://127.0.0.1:9/hook"
        );
    }
}
