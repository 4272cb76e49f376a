//! Endpoint addresses: turning what users and servers write into one canonical URL.
//!
//! Users write `127.0.0.1:7001`; servers hint the leader as `host:port`; tonic
//! wants `http://host:port`. Comparing canonical forms is what lets a leader
//! hint be recognised as an endpoint the client already knows.

use crate::error::ClientError;

/// Plain-text gRPC.
const PLAIN_SCHEME: &str = "http";
/// gRPC over TLS.
const TLS_SCHEME: &str = "https";

/// Returns the canonical `http://host:port` form of a plaintext endpoint.
///
/// Accepts `host:port` and `http://host:port[/]`. `https://` is refused: a
/// TLS endpoint needs a client built with TLS ([`normalize_endpoint_for`]).
pub fn normalize_endpoint(raw: &str) -> Result<String, ClientError> {
    normalize_endpoint_for(raw, false)
}

/// The canonical form of an endpoint for a client with or without TLS:
/// `https://host:port` or `http://host:port`. A bare `host:port` (what
/// users write and servers hint) takes the client's scheme; a scheme that
/// contradicts it is refused rather than failing later in a handshake.
pub fn normalize_endpoint_for(raw: &str, tls: bool) -> Result<String, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidEndpoint { endpoint: raw.to_owned(), reason: reason.to_owned() };
    let expected = if tls { TLS_SCHEME } else { PLAIN_SCHEME };
    let trimmed = raw.trim();
    let (scheme, rest) = match trimmed.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => (expected.to_owned(), trimmed),
    };
    if scheme == TLS_SCHEME && !tls {
        return Err(invalid("an https endpoint needs a client configured with TLS (certificates)"));
    }
    if scheme == PLAIN_SCHEME && tls {
        return Err(invalid("this client uses TLS: write host:port or https://host:port"));
    }
    if scheme != expected {
        return Err(invalid("scheme must be http or https"));
    }
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() {
        return Err(invalid("missing host:port"));
    }
    if authority.contains('/') {
        return Err(invalid("an endpoint has no path"));
    }
    let port = port_of(authority).ok_or_else(|| invalid("missing port"))?;
    if !matches!(port.parse::<u16>(), Ok(number) if number > 0) {
        return Err(invalid("port must be a number in 1..=65535"));
    }
    let host = &authority[..authority.len() - port.len() - 1];
    if host.is_empty() {
        return Err(invalid("missing host"));
    }
    Ok(format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

/// The port part of `host:port` or `[v6]:port`, if present.
fn port_of(authority: &str) -> Option<&str> {
    let (host, port) = authority.rsplit_once(':')?;
    // A bare IPv6 address has colons but no port: it must be bracketed.
    if host.contains(':') && !host.ends_with(']') {
        return None;
    }
    Some(port)
}

/// `host:port` without the scheme: how endpoints are shown to people.
pub fn display_endpoint(url: &str) -> &str {
    url.split_once("://").map_or(url, |(_, rest)| rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        match normalize_endpoint(raw) {
            Ok(url) => url,
            Err(err) => panic!("{raw:?} should be accepted: {err}"),
        }
    }

    #[test]
    fn adds_scheme_to_host_port() {
        assert_eq!(ok("127.0.0.1:7001"), "http://127.0.0.1:7001");
        assert_eq!(ok("  node-1.local:80 "), "http://node-1.local:80");
    }

    #[test]
    fn keeps_http_and_drops_trailing_slash() {
        assert_eq!(ok("http://127.0.0.1:7001/"), "http://127.0.0.1:7001");
        assert_eq!(ok("HTTP://Node1:7001"), "http://node1:7001");
    }

    #[test]
    fn same_endpoint_written_two_ways_is_equal() {
        assert_eq!(ok("127.0.0.1:7002"), ok("http://127.0.0.1:7002/"));
    }

    #[test]
    fn accepts_bracketed_ipv6() {
        assert_eq!(ok("[::1]:7001"), "http://[::1]:7001");
    }

    #[test]
    fn refuses_malformed_endpoints() {
        for raw in [
            "",
            "127.0.0.1",
            "127.0.0.1:",
            "127.0.0.1:99999",
            "127.0.0.1:0",
            ":7001",
            "::1",
            "http://",
            "http://a:1/path",
            "https://a:7001",
            "grpc://a:7001",
        ] {
            assert!(
                matches!(normalize_endpoint(raw), Err(ClientError::InvalidEndpoint { .. })),
                "{raw:?} should be refused"
            );
        }
    }

    #[test]
    fn tls_clients_use_https() {
        assert_eq!(normalize_endpoint_for("127.0.0.1:7001", true).ok().as_deref(), Some("https://127.0.0.1:7001"));
        assert_eq!(normalize_endpoint_for("HTTPS://n1:7001/", true).ok().as_deref(), Some("https://n1:7001"));
        assert!(normalize_endpoint_for("http://n1:7001", true).is_err());
    }

    #[test]
    fn display_strips_scheme() {
        assert_eq!(display_endpoint("http://127.0.0.1:7001"), "127.0.0.1:7001");
        assert_eq!(display_endpoint("127.0.0.1:7001"), "127.0.0.1:7001");
    }
}
