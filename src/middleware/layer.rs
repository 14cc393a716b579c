use super::{predicate::DefaultPredicate, service::EtagCache};
use crate::{provider::FnProvider, semantics::etag::EntityTag};
use tower_layer::Layer;

/// Applies [`EtagCache`] to a service: ETags, conditional requests and (with a caching
/// provider) stored responses.
///
/// ```
/// use axum::{routing::get, Router};
/// use tower_etag::{ConstLruProvider, EtagCacheLayer};
///
/// let app: Router = Router::new()
///     .route("/", get(|| async { "Hello" }))
///     .layer(EtagCacheLayer::with_default_predicate(ConstLruProvider::<1024>::init()));
/// # let _ = app;
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct EtagCacheLayer<P, Pred = DefaultPredicate> {
    provider: P,
    predicate: Pred,
}

impl<P> EtagCacheLayer<P> {
    /// A layer with [`DefaultPredicate`]: GET and HEAD requests, 2xx responses other than
    /// 204 and 206 whose `Content-Length` is not 0.
    pub fn with_default_predicate(provider: P) -> Self {
        Self::new(provider, DefaultPredicate::new())
    }
}

impl<F> EtagCacheLayer<FnProvider<F>> {
    /// A layer whose provider is a closure that tells the current entity tag of what a
    /// request selects (`None`: not known), with [`DefaultPredicate`]. Matching requests are
    /// answered `304` / `412` without the inner service; see [`FnProvider`].
    ///
    /// ```
    /// use tower_etag::{etag::EntityTag, EtagCacheLayer};
    ///
    /// let build = EntityTag::strong("build-2026-12-01").unwrap();
    /// let layer = EtagCacheLayer::from_fn(move |_: &http::request::Parts| Some(build.clone()));
    /// # let _ = layer;
    /// ```
    pub fn from_fn(current_tag: F) -> Self
    where
        F: Fn(&http::request::Parts) -> Option<EntityTag> + Clone,
    {
        Self::with_default_predicate(FnProvider::new(current_tag))
    }
}

impl<P, Pred> EtagCacheLayer<P, Pred> {
    /// A layer with `provider` and `predicate`.
    pub fn new(provider: P, predicate: Pred) -> Self {
        Self {
            provider,
            predicate,
        }
    }

    /// Replaces the predicate.
    pub fn predicate<NewPred>(self, predicate: NewPred) -> EtagCacheLayer<P, NewPred> {
        EtagCacheLayer {
            provider: self.provider,
            predicate,
        }
    }

    /// The provider (clones share the cache, so this reaches the layer's entries).
    pub fn provider(&self) -> &P {
        &self.provider
    }
}

impl<S, P: Clone, Pred: Clone> Layer<S> for EtagCacheLayer<P, Pred> {
    type Service = EtagCache<S, P, Pred>;

    fn layer(&self, inner: S) -> Self::Service {
        EtagCache::new(inner, self.provider.clone(), self.predicate.clone())
    }
}
