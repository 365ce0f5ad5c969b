//! Where a request names its tenant.

use std::fmt;
use std::sync::Arc;

/// The parts of a request the built-in [`TenantSource`]s read. Implemented for
/// `http::request::Parts` with the `axum` feature; implement it for your framework's request
/// type to use [`TenantSource::header`], [`TenantSource::subdomain`] and
/// [`TenantSource::path_segment`] with it (or use [`TenantSource::from_fn`]).
pub trait RequestParts {
    /// The value of header `name` (case-insensitive), if present and valid UTF-8.
    fn header(&self, name: &str) -> Option<&str>;
    /// The host the request was sent to, possibly with a port (`acme.example.com:8080`).
    fn host(&self) -> Option<&str> {
        self.header("host")
    }
    /// The request path, without the query string (`/t/acme/projects`).
    fn path(&self) -> &str;
}

type Read<R> = dyn Fn(&R) -> Option<String> + Send + Sync;

/// Reads the (untrusted) tenant id from a request. The resolver validates what it returns.
pub struct TenantSource<R> {
    read: Arc<Read<R>>,
    describe: String,
}

impl<R> Clone for TenantSource<R> {
    fn clone(&self) -> Self {
        TenantSource {
            read: Arc::clone(&self.read),
            describe: self.describe.clone(),
        }
    }
}

impl<R> fmt::Debug for TenantSource<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe)
    }
}

impl<R> TenantSource<R> {
    /// Any closure over the request. `describe` says where it looks, for the
    /// [`Error::MissingTenantId`](crate::Error::MissingTenantId) message (e.g. "the `tenant`
    /// query parameter").
    pub fn from_fn<F>(describe: impl Into<String>, read: F) -> Self
    where
        F: Fn(&R) -> Option<String> + Send + Sync + 'static,
    {
        TenantSource {
            read: Arc::new(read),
            describe: describe.into(),
        }
    }

    /// Tries `self`, then `other` when `self` finds nothing.
    pub fn or(self, other: TenantSource<R>) -> Self
    where
        R: 'static,
    {
        let describe = format!("{} or {}", self.describe, other.describe);
        let (first, second) = (self.read, other.read);
        TenantSource {
            read: Arc::new(move |r| first(r).or_else(|| second(r))),
            describe,
        }
    }

    pub(crate) fn read(&self, request: &R) -> Option<String> {
        (self.read)(request)
    }

    pub(crate) fn describe(&self) -> &str {
        &self.describe
    }
}

impl<R: RequestParts> TenantSource<R> {
    /// The value of header `name` (e.g. `x-tenant`), trimmed; empty counts as missing.
    pub fn header(name: impl Into<String>) -> Self {
        let name = name.into();
        TenantSource {
            describe: format!("header `{name}`"),
            read: Arc::new(move |r: &R| non_empty(r.header(&name)?.trim())),
        }
    }

    /// The first label of the host when the host is exactly one label below `domain`:
    /// `acme.example.com` gives `acme` for the domain `example.com`. Any port is ignored;
    /// deeper (`a.b.example.com`) and other hosts give nothing.
    pub fn subdomain(domain: impl Into<String>) -> Self {
        let domain = domain.into().trim_start_matches('.').to_ascii_lowercase();
        TenantSource {
            describe: format!("a subdomain of `{domain}`"),
            read: Arc::new(move |r: &R| subdomain_of(r.host()?, &domain)),
        }
    }

    /// Segment `index` (0-based) of the request path: for `/t/acme/projects`, index 1 gives
    /// `acme`. Counted on the path as the resolver sees it (a nested router may have stripped
    /// a prefix).
    pub fn path_segment(index: usize) -> Self {
        TenantSource {
            describe: format!("path segment {index}"),
            read: Arc::new(move |r: &R| {
                non_empty(r.path().trim_start_matches('/').split('/').nth(index)?)
            }),
        }
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

fn subdomain_of(host: &str, domain: &str) -> Option<String> {
    // Host names are ASCII (IDNs arrive punycoded); anything else is not ours to slice.
    if !host.is_ascii() || !domain.is_ascii() {
        return None;
    }
    // Strip a port (hosts with ':' inside brackets are IPv6 literals: no subdomain).
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.len() <= domain.len() + 1 {
        return None;
    }
    let (label, rest) = host.split_at(host.len() - domain.len() - 1);
    if !rest[1..].eq_ignore_ascii_case(domain) || !rest.starts_with('.') || label.contains('.') {
        return None;
    }
    non_empty(&label.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Req {
        headers: Vec<(&'static str, &'static str)>,
        path: &'static str,
    }

    impl RequestParts for Req {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        }
        fn path(&self) -> &str {
            self.path
        }
    }

    fn req(headers: Vec<(&'static str, &'static str)>, path: &'static str) -> Req {
        Req { headers, path }
    }

    #[test]
    fn header_source_trims_and_treats_empty_as_missing() {
        let source = TenantSource::<Req>::header("x-tenant");
        assert_eq!(
            source.read(&req(vec![("X-Tenant", " acme ")], "/")),
            Some("acme".into())
        );
        assert_eq!(source.read(&req(vec![("x-tenant", "  ")], "/")), None);
        assert_eq!(source.read(&req(vec![], "/")), None);
    }

    #[test]
    fn subdomain_source_takes_exactly_one_label() {
        let source = TenantSource::<Req>::subdomain("example.com");
        let host = |h: &'static str| source.read(&req(vec![("host", h)], "/"));
        assert_eq!(host("acme.example.com"), Some("acme".into()));
        assert_eq!(host("ACME.Example.com:8080"), Some("acme".into()));
        assert_eq!(host("acme.example.com."), Some("acme".into()));
        assert_eq!(host("a.b.example.com"), None);
        assert_eq!(host("example.com"), None);
        assert_eq!(host(".example.com"), None);
        assert_eq!(host("acmeexample.com"), None);
        assert_eq!(host("acme.example.org"), None);
        assert_eq!(host("[::1]:80"), None);
        assert_eq!(host("abéexample.com"), None);
        assert_eq!(host("é.example.com"), None);
    }

    #[test]
    fn path_segment_source_counts_from_the_root() {
        let source = TenantSource::<Req>::path_segment(1);
        assert_eq!(
            source.read(&req(vec![], "/t/acme/projects")),
            Some("acme".into())
        );
        assert_eq!(source.read(&req(vec![], "/t/")), None);
        assert_eq!(source.read(&req(vec![], "/t")), None);
    }

    #[test]
    fn or_falls_back_and_describes_both() {
        let source =
            TenantSource::<Req>::header("x-tenant").or(TenantSource::<Req>::path_segment(1));
        assert_eq!(
            source.read(&req(vec![], "/t/globex")),
            Some("globex".into())
        );
        assert_eq!(
            source.read(&req(vec![("x-tenant", "acme")], "/t/globex")),
            Some("acme".into())
        );
        assert_eq!(source.describe(), "header `x-tenant` or path segment 1");
    }
}
