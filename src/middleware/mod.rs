//! The tower plumbing: [`EtagCacheLayer`](crate::EtagCacheLayer), the [`EtagCache`](crate::EtagCache) service, its
//! [`ResponseFuture`](crate::ResponseFuture), the [`ResponseBody`](crate::ResponseBody) it returns, and the predicates that decide when
//! the cache is involved. No RFC rule lives here: the rules are in
//! [`semantics`](crate::semantics) and [`policy`](crate::policy), the knowledge in the
//! [`provider`](crate::provider).

pub mod bounds;
pub(crate) mod future;
pub(crate) mod layer;
pub mod observe;
pub mod predicate;
pub(crate) mod service;
