//! Group commit for the inbox. Each delivery must be durable before it is acknowledged, and a
//! commit costs one fsync: deliveries that arrive while a commit is under way wait for the next
//! one and share it, so under load one fsync acknowledges hundreds of deliveries, and alone a
//! delivery waits for no one.

use super::{Inserted, Store};
use crate::model::Event;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The most deliveries committed together; more wait for the next commit.
const MAX_BATCH: usize = 512;
/// Deliveries waiting for a commit before senders are held back (backpressure).
const QUEUE: usize = 8192;

type Reply = oneshot::Sender<Result<Inserted, String>>;

#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<(Event, Reply)>,
    /// Counts deliveries for the queue's pacing.
    load: Arc<crate::queue::IngestLoad>,
}

impl Batcher {
    /// Starts the one writer task; it ends when every `Batcher` clone is dropped.
    pub fn spawn(store: Arc<dyn Store>, load: Arc<crate::queue::IngestLoad>) -> Batcher {
        let (tx, mut rx) = mpsc::channel::<(Event, Reply)>(QUEUE);
        tokio::spawn(async move {
            let mut events = Vec::with_capacity(MAX_BATCH);
            let mut replies = Vec::with_capacity(MAX_BATCH);
            while let Some((event, reply)) = rx.recv().await {
                events.push(event);
                replies.push(reply);
                while events.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok((event, reply)) => {
                            events.push(event);
                            replies.push(reply);
                        }
                        Err(_) => break,
                    }
                }
                crate::metrics::METRICS.inc("rollgate_inbox_commits_total", &[]);
                match store.enqueue_batch(&events).await {
                    Ok(answers) => {
                        for (reply, answer) in replies.drain(..).zip(answers) {
                            let _ = reply.send(Ok(answer));
                        }
                    }
                    Err(e) => {
                        let message = format!("{e:#}");
                        for reply in replies.drain(..) {
                            let _ = reply.send(Err(message.clone()));
                        }
                    }
                }
                events.clear();
            }
        });
        Batcher { tx, load }
    }

    /// Stores one event durably (with whatever else is waiting) and says whether it was new.
    pub async fn enqueue(&self, event: Event) -> anyhow::Result<Inserted> {
        self.load.arrived();
        let (reply, answer) = oneshot::channel();
        self.tx.send((event, reply)).await.map_err(|_| anyhow::anyhow!("the inbox writer has stopped"))?;
        answer.await.map_err(|_| anyhow::anyhow!("the inbox writer has stopped"))?.map_err(anyhow::Error::msg)
    }
}
