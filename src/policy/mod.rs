//! RFC 9111 caching policy (work in progress).
