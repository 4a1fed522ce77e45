//! A queue bounded in bytes: a full queue blocks the sender, nothing is ever dropped.
//!
//! Items travel with a semaphore permit for their size, which the consumer keeps until it has
//! finished with the item (for a node writer: until the batch holding it is committed), so the
//! budget counts everything between the producer and the database, not only what waits in the
//! channel. An item larger than the whole budget takes the whole budget (it still goes through,
//! alone). When either end goes away the semaphore is closed, so a blocked sender wakes up with
//! an error instead of waiting forever for a consumer that died.
//!
//! The sender works from async code ([`QueueSender::send`]) and from a plain thread
//! ([`QueueSender::blocking_send`], for the router thread; never call it on a runtime thread).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// The other end is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// An item and the budget it holds.
#[derive(Debug)]
pub struct Queued<T> {
    /// The item.
    pub item: T,
    /// Bytes it was accounted for.
    pub bytes: usize,
    _permit: OwnedSemaphorePermit,
}

/// The sending end.
#[derive(Debug)]
pub struct QueueSender<T> {
    tx: mpsc::UnboundedSender<Queued<T>>,
    budget: Arc<Semaphore>,
    capacity: usize,
}

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> Self {
        QueueSender {
            tx: self.tx.clone(),
            budget: self.budget.clone(),
            capacity: self.capacity,
        }
    }
}

/// The receiving end; closes the queue when dropped.
#[derive(Debug)]
pub struct QueueReceiver<T> {
    rx: mpsc::UnboundedReceiver<Queued<T>>,
    budget: Arc<Semaphore>,
    capacity: usize,
}

/// A queue holding at most `capacity` bytes (at least 1).
pub fn byte_queue<T>(capacity: usize) -> (QueueSender<T>, QueueReceiver<T>) {
    let capacity = capacity.clamp(1, u32::MAX as usize);
    let budget = Arc::new(Semaphore::new(capacity));
    let (tx, rx) = mpsc::unbounded_channel();
    (
        QueueSender {
            tx,
            budget: budget.clone(),
            capacity,
        },
        QueueReceiver {
            rx,
            budget,
            capacity,
        },
    )
}

impl<T> QueueSender<T> {
    fn cost(&self, bytes: usize) -> u32 {
        // bounded by capacity <= u32::MAX
        bytes.clamp(1, self.capacity) as u32
    }

    /// Sends, waiting while the queue is full.
    pub async fn send(&self, item: T, bytes: usize) -> Result<(), Closed> {
        let permit = self
            .budget
            .clone()
            .acquire_many_owned(self.cost(bytes))
            .await
            .map_err(|_| Closed)?;
        self.tx
            .send(Queued {
                item,
                bytes,
                _permit: permit,
            })
            .map_err(|_| Closed)
    }

    /// Sends from a thread that is not a runtime worker, blocking while the queue is full.
    pub fn blocking_send(
        &self,
        runtime: &tokio::runtime::Handle,
        item: T,
        bytes: usize,
    ) -> Result<(), Closed> {
        runtime.block_on(self.send(item, bytes))
    }

    /// Bytes queued or held by the consumer.
    pub fn used(&self) -> usize {
        self.capacity
            .saturating_sub(self.budget.available_permits())
    }
}

impl<T> QueueReceiver<T> {
    /// The next item; `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<Queued<T>> {
        self.rx.recv().await
    }

    /// The next item if one is waiting.
    pub fn try_recv(&mut self) -> Option<Queued<T>> {
        self.rx.try_recv().ok()
    }

    /// The next item, blocking the thread (not for runtime threads).
    pub fn blocking_recv(&mut self) -> Option<Queued<T>> {
        self.rx.blocking_recv()
    }

    /// The budget in bytes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl<T> Drop for QueueReceiver<T> {
    fn drop(&mut self) {
        self.budget.close();
        self.rx.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_full_queue_blocks_until_the_consumer_releases() {
        let (tx, mut rx) = byte_queue::<u32>(100);
        tx.send(1, 60).await.unwrap();
        tx.send(2, 40).await.unwrap();
        assert_eq!(tx.used(), 100);
        // a third item cannot go in while both are held
        let blocked = tokio::time::timeout(Duration::from_millis(50), tx.send(3, 1)).await;
        assert!(blocked.is_err());
        let first = rx.recv().await.unwrap();
        assert_eq!(first.item, 1);
        drop(first);
        tx.send(3, 50).await.unwrap();
        assert_eq!(rx.recv().await.unwrap().item, 2);
        assert_eq!(rx.recv().await.unwrap().item, 3);
    }

    #[tokio::test]
    async fn an_oversized_item_takes_the_whole_budget() {
        let (tx, mut rx) = byte_queue::<u32>(10);
        tx.send(1, 1000).await.unwrap();
        assert_eq!(tx.used(), 10);
        let item = rx.recv().await.unwrap();
        assert_eq!(item.bytes, 1000);
    }

    #[tokio::test]
    async fn a_dropped_receiver_wakes_a_blocked_sender() {
        let (tx, rx) = byte_queue::<u32>(10);
        tx.send(1, 10).await.unwrap();
        let waiter = tokio::spawn(async move { tx.send(2, 10).await });
        tokio::task::yield_now().await;
        drop(rx);
        assert_eq!(waiter.await.unwrap(), Err(Closed));
    }
}
