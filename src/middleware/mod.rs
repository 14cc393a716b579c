//! The tower plumbing: [`EtagCacheLayer`], the [`EtagCache`] service, its
//! [`ResponseFuture`], the [`ResponseBody`] it returns, and the predicates that decide when
//! the cache is involved. No RFC rule lives here: the rules are in
//! [`semantics`](crate::semantics) and [`policy`](crate::policy), the knowledge in the
//! [`provider`](crate::provider).

pub(crate) mod body;
pub(crate) mod future;
pub(crate) mod layer;
pub mod predicate;
pub(crate) mod service;
