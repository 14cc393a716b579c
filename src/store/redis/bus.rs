//! [`RedisBus`]: invalidations between the nodes of a fleet over Redis pub/sub.

use super::RedisStore;
use crate::store::InvalidationBus;
use crate::store::InvalidationSink;
use redis::{AsyncCommands as _, RedisResult};
use std::fmt;
use std::time::Duration;

/// Invalidations between the nodes of a fleet over Redis pub/sub ([`RedisStore::bus`]).
///
/// A message is `{node} {digest}` (or `{node} *` for everything): the node that published
/// it, which ignores its own, and the digest of the record, so no key travels. Publishing
/// is fire and forget (within the store's deadline, skipped while the store steps aside).
/// The subscription reconnects by itself, and after every (re)connection tells the sink
/// that messages may have been lost.
pub struct RedisBus {
    pub(super) store: RedisStore,
    pub(super) channel: String,
    pub(super) node: String,
}

impl fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBus")
            .field("channel", &self.channel)
            .field("node", &self.node)
            .finish()
    }
}

impl InvalidationBus for RedisBus {
    fn publish(&self, digest: Option<&str>) {
        if self.store.is_stepping_aside() {
            return;
        }
        let message = format!("{} {}", self.node, digest.unwrap_or("*"));
        let (store, channel) = (self.store.clone(), self.channel.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let Ok(mut conn) = store.conn() else {
                    return;
                };
                let publish = conn.publish::<_, _, ()>(channel, message);
                let _ = store.run(publish).await;
            });
        }
    }

    fn subscribe(&self, sink: std::sync::Weak<dyn InvalidationSink>) {
        let (client, channel, node) = (
            self.store.inner.client.clone(),
            self.channel.clone(),
            self.node.clone(),
        );
        let connect_timeout = Duration::from_secs(1);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no tokio runtime: the invalidation bus is not listened to");
            return;
        };
        rt.spawn(async move {
            let mut backoff = Duration::from_millis(100);
            while sink.strong_count() > 0 {
                let connected = tokio::time::timeout(connect_timeout, async {
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.subscribe(&channel).await?;
                    RedisResult::Ok(pubsub)
                })
                .await;
                if let Ok(Ok(mut pubsub)) = connected {
                    backoff = Duration::from_millis(100);
                    if !listen(&mut pubsub, &sink, &node).await {
                        return;
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
    }
}

/// Delivers messages to `sink` until the connection ends (`true`) or the sink is gone
/// (`false`).
pub(super) async fn listen(
    pubsub: &mut redis::aio::PubSub,
    sink: &std::sync::Weak<dyn InvalidationSink>,
    node: &str,
) -> bool {
    use futures_core::Stream;
    // Whatever was published while this node was not listening is unknown.
    match sink.upgrade() {
        Some(s) => s.invalidated(None),
        None => return false,
    }
    let mut messages = std::pin::pin!(pubsub.on_message());
    loop {
        let next = std::future::poll_fn(|cx| messages.as_mut().poll_next(cx));
        match tokio::time::timeout(Duration::from_secs(1), next).await {
            // Quiet: check that someone still listens.
            Err(_) if sink.strong_count() == 0 => return false,
            Err(_) => {}
            Ok(None) => return true,
            Ok(Some(message)) => {
                let payload: Vec<u8> = message.get_payload().unwrap_or_default();
                let text = String::from_utf8_lossy(&payload);
                let Some((from, what)) = text.split_once(' ') else {
                    continue;
                };
                if from == node {
                    continue;
                }
                let Some(s) = sink.upgrade() else {
                    return false;
                };
                s.invalidated((what != "*").then_some(what));
            }
        }
    }
}
