//! Where the server may send a tenant's generator requests. A `base_url` is chosen by a
//! tenant_admin, so without this the server would be a proxy into its own network: loopback
//! services, the cloud metadata endpoint, private ranges. Rules:
//!
//! - The admin may set any `base_url` (a local LLM on loopback is the common case); such a URL
//!   is *trusted* and reached as set.
//! - A tenant_admin may set a URL under one of the operator's `answer.allowed_base_urls`
//!   (trusted too), or any URL whose host is public: checked when it is set, and again on
//!   every request by a resolver that only returns public addresses (DNS rebinding).
//! - Redirects are never followed; a `base_url` has no user info, query or fragment.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;

use crate::error::UserError;

/// True for addresses any host on the internet could reach: not loopback, private, link-local
/// (cloud metadata lives there), shared (CGNAT), documentation, multicast or reserved.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (RFC 6598)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) reaches the embedded IPv4 address.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return is_public_v4(v4);
    }
    // 6to4 (2002::/16) reaches the IPv4 address in its second and third segments.
    if s[0] == 0x2002 {
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return is_public_v4(v4);
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated, still routed by some)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64 (64:ff9b:1::/48)
        || s[0..4] == [0, 0, 0, 0]) // ::/64: IPv4-compatible, mapped, SIIT and other v4 forms
}

/// Syntax every `base_url` must have, whoever sets it.
pub fn validate_syntax(base_url: &str) -> Result<Url, UserError> {
    let bad = |m: &str| UserError::Invalid(format!("openai.base_url {m}"));
    let url = Url::parse(base_url).map_err(|_| bad("must be an http:// or https:// URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(bad("must be an http:// or https:// URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry user info (send the key as api_key)"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or a fragment"));
    }
    // Encoded separators and dot segments: an upstream that decodes them would see another
    // path than the one the allow-list matched.
    let path = url.path().to_ascii_lowercase();
    if path.contains("%2f") || path.contains("%2e") || path.contains("%5c") || path.contains("/..")
    {
        return Err(bad(
            "must not have encoded separators or dot segments in its path",
        ));
    }
    if base_url.len() > 2048 {
        return Err(bad("is longer than 2048 characters"));
    }
    Ok(url)
}

/// Under one of the operator's allowed prefixes: same scheme, host and port, and the path
/// continues the prefix's path at a segment boundary.
pub fn allow_listed(url: &Url, allowed: &[String]) -> bool {
    allowed.iter().filter_map(|a| Url::parse(a).ok()).any(|a| {
        let prefix = a.path().trim_end_matches('/');
        a.scheme() == url.scheme()
            && a.host() == url.host()
            && a.port_or_known_default() == url.port_or_known_default()
            && (url.path() == prefix
                || url.path().starts_with(&format!("{prefix}/"))
                || prefix.is_empty())
    })
}

/// [`allow_listed`] for a stored URL.
pub fn allow_listed_str(base_url: &str, allowed: &[String]) -> bool {
    !allowed.is_empty() && Url::parse(base_url).is_ok_and(|u| allow_listed(&u, allowed))
}

/// A tenant_admin's `base_url`: allow-listed, or every address it resolves to now is public.
pub async fn check_tenant_url(base_url: &str, allowed: &[String]) -> Result<(), UserError> {
    let url = validate_syntax(base_url)?;
    if allow_listed(&url, allowed) {
        return Ok(());
    }
    let refuse = || {
        UserError::Forbidden(
            "openai.base_url must be a public address (loopback, private, link-local and \
             metadata addresses need the admin, or answer.allowed_base_urls)"
                .into(),
        )
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = match (literal_ip(&url), url.host()) {
        (Some(ip), _) => vec![SocketAddr::new(ip, port)],
        (None, Some(url::Host::Domain(d))) => tokio::net::lookup_host((d, port))
            .await
            .map_err(|_| UserError::Invalid(format!("openai.base_url: cannot resolve {d}")))?
            .collect(),
        _ => return Err(refuse()),
    };
    if addrs.is_empty() || !addrs.iter().all(|a| is_public(a.ip())) {
        return Err(refuse());
    }
    Ok(())
}

/// The request-time guard for untrusted URLs: a literal address must be public, and names go
/// through [`PublicOnly`].
pub fn literal_is_public(base_url: &str) -> bool {
    let Ok(url) = Url::parse(base_url) else {
        return false;
    };
    match literal_ip(&url) {
        Some(ip) => is_public(ip),
        None => url.host().is_some(),
    }
}

/// The URL's host when it is an address rather than a name.
fn literal_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(ip.into()),
        url::Host::Ipv6(ip) => Some(ip.into()),
        url::Host::Domain(_) => None,
    }
}

/// A resolver that only ever returns public addresses, so a name that resolved to a public
/// address when it was set cannot be pointed at loopback afterwards.
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let public: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if public.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
            "2002:7f00:1::",
            "fec0::1",
            "64:ff9b:1::a00:1",
            "::ffff:0:a00:1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn base_url_syntax_and_allow_list() {
        assert!(validate_syntax("http://h/v1#").is_err());
        assert!(validate_syntax("http://h/v1?x=1").is_err());
        assert!(validate_syntax("http://u:p@h/v1").is_err());
        assert!(validate_syntax("ftp://h/v1").is_err());
        assert!(validate_syntax("http://h/v1/..%2f..%2fadmin").is_err());
        // Encoded dot segments are resolved by the parser: what is matched is what is sent.
        let dotted = validate_syntax("http://10.0.0.5:8000/v1/%2E%2E/admin").unwrap();
        assert_eq!(dotted.path(), "/admin");
        assert!(!allow_listed(&dotted, &["http://10.0.0.5:8000/v1".into()]));
        let url = validate_syntax("http://10.0.0.5:8000/v1").unwrap();
        assert!(allow_listed(&url, &["http://10.0.0.5:8000/v1".into()]));
        assert!(allow_listed(&url, &["http://10.0.0.5:8000".into()]));
        assert!(!allow_listed(&url, &["http://10.0.0.5:8001/v1".into()]));
        assert!(!allow_listed(&url, &["http://10.0.0.5:8000/v1x".into()]));
        let evil = validate_syntax("http://10.0.0.5:8000/v1x").unwrap();
        assert!(!allow_listed(&evil, &["http://10.0.0.5:8000/v1".into()]));
    }

    #[tokio::test]
    async fn tenant_urls_must_be_public() {
        for url in [
            "http://127.0.0.1:8088/v1",
            "http://169.254.169.254/latest",
            "http://[::1]/v1",
            "http://localhost:8088/v1",
            "http://10.0.0.1/v1",
        ] {
            assert!(
                matches!(
                    check_tenant_url(url, &[]).await,
                    Err(UserError::Forbidden(_))
                ),
                "{url}"
            );
        }
        assert!(check_tenant_url("http://8.8.8.8/v1", &[]).await.is_ok());
        assert!(check_tenant_url(
            "http://127.0.0.1:8088/v1",
            &["http://127.0.0.1:8088/v1".into()]
        )
        .await
        .is_ok());
    }
}
