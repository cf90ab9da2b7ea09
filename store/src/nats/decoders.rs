//! The decoding side of NATS ingestion, independent of the client: each
//! subscription's inbox and dispatcher, and the lanes that decode in order
//! per subject.

use std::future::Future as _;
use std::hash::{BuildHasher as _, BuildHasherDefault, DefaultHasher};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_nats::Message;
use cc_common::nats::{Delivery, Inbox, InboxLimits, Status};
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;

use super::subscription::{RECEIVED_HEADER, Subscription, decode};
use crate::store::MetricStore;

/// A subscription's messages as they arrive: stamped with their arrival
/// time and counted. Ends when the subscription ends, or, once `stop` is
/// cancelled, as soon as no message is ready.
struct Arrivals<S> {
    inner: S,
    subscription: Arc<Subscription>,
    stop: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Dropped with the stream, which tells shutdown that reading ended.
    _alive: mpsc::Sender<()>,
}

impl<S> Stream for Arrivals<S>
where
    S: Stream<Item = Message> + Unpin,
{
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(mut message)) => {
                this.subscription.count_arrival();
                message
                    .headers
                    .get_or_insert_default()
                    .insert(RECEIVED_HEADER, cc_common::time::now_secs().to_string());
                Poll::Ready(Some(message))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.stop.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// A message waiting in a lane, with the subscription it came through.
type Job = (Arc<Subscription>, Delivery);

/// The lane of a message: one per (subscription, subject), so that the
/// messages of one subject are decoded in the order they arrived.
pub(crate) fn lane_of(subscription: usize, subject: &str, lanes: usize) -> usize {
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one((subscription, subject));
    let lanes = u64::try_from(lanes.max(1)).unwrap_or(1);
    usize::try_from(hash % lanes).unwrap_or(0)
}

/// The decoding side, independent of the client: each subscription's inbox
/// and dispatcher task, and `num-workers` lanes that decode on the blocking
/// pool, each one message after the other. Nothing is decoded before
/// [`Self::open`].
#[derive(Debug)]
pub struct Decoders {
    status: Arc<Status>,
    limits: InboxLimits,
    /// The lanes' inputs; emptied by [`Self::finish`] so the lanes end.
    lanes: Vec<mpsc::Sender<Job>>,
    /// Cancelled when decoding may begin.
    opened: CancellationToken,
    tracker: TaskTracker,
    /// Cancelled to stop reading the subscriptions.
    stop_reading: CancellationToken,
    alive_tx: Option<mpsc::Sender<()>>,
    alive_rx: mpsc::Receiver<()>,
    subscriptions: Vec<Arc<Subscription>>,
}

impl Decoders {
    /// Decoders for `store` in `workers` lanes, with inboxes of `limits`
    /// whose drops are counted in `status`.
    #[must_use]
    pub fn new(
        store: Arc<MetricStore>,
        status: Arc<Status>,
        limits: InboxLimits,
        workers: usize,
    ) -> Decoders {
        let (alive_tx, alive_rx) = mpsc::channel(1);
        let opened = CancellationToken::new();
        let tracker = TaskTracker::new();
        let lanes = (0..workers.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(LANE_BATCH);
                tracker.spawn(lane(rx, Arc::clone(&store), opened.clone()));
                tx
            })
            .collect();
        Decoders {
            status,
            limits,
            lanes,
            opened,
            tracker,
            stop_reading: CancellationToken::new(),
            alive_tx: Some(alive_tx),
            alive_rx,
            subscriptions: Vec::new(),
        }
    }

    /// Starts reading `messages` (a subscription) into a new inbox, and its
    /// dispatcher task, which hands each message to the lane of its subject
    /// together with `subscription` (and so its cluster tag).
    pub fn add<S>(&mut self, messages: S, subscription: Arc<Subscription>)
    where
        S: Stream<Item = Message> + Unpin + Send + 'static,
    {
        let Some(alive) = self.alive_tx.clone() else {
            return;
        };
        let arrivals = Arrivals {
            inner: messages,
            subscription: Arc::clone(&subscription),
            stop: Box::pin(self.stop_reading.clone().cancelled_owned()),
            _alive: alive,
        };
        let mut inbox = Inbox::drain(arrivals, self.limits, Arc::clone(&self.status));
        let index = self.subscriptions.len();
        self.subscriptions.push(Arc::clone(&subscription));
        let lanes = self.lanes.clone();
        self.tracker.spawn(async move {
            while let Some(delivery) = inbox.recv().await {
                let i = lane_of(index, &delivery.message.subject, lanes.len());
                let Some(lane) = lanes.get(i) else { return };
                if lane
                    .send((Arc::clone(&subscription), delivery))
                    .await
                    .is_err()
                {
                    // INVARIANT: lanes end only after every sender is gone.
                    tracing::error!(subject = %subscription.subject(), "NATS decoding stopped");
                    return;
                }
            }
        });
    }

    /// The subscriptions added.
    #[must_use]
    pub fn subscriptions(&self) -> &[Arc<Subscription>] {
        &self.subscriptions
    }

    /// Lets decoding begin. Idempotent.
    pub fn open(&self) {
        self.opened.cancel();
    }

    /// Waits up to `wait` for every subscription stream to end, then stops
    /// reading them (taking what is ready), and decodes everything queued.
    /// Returns whether the streams ended by themselves.
    pub async fn finish(&mut self, wait: Duration) -> bool {
        self.alive_tx = None;
        let ended = tokio::time::timeout(wait, self.alive_rx.recv())
            .await
            .is_ok();
        if !ended {
            self.stop_reading.cancel();
            let _ = self.alive_rx.recv().await;
        }
        self.lanes.clear();
        self.open();
        self.tracker.close();
        self.tracker.wait().await;
        ended
    }
}

/// Messages a lane takes (and decodes in one blocking call) at a time, and
/// how many wait in it.
const LANE_BATCH: usize = 64;

/// One lane: from [`Decoders::open`] on, decodes its messages in order,
/// each batch of waiting ones in one call on the blocking pool.
async fn lane(mut rx: mpsc::Receiver<Job>, store: Arc<MetricStore>, opened: CancellationToken) {
    opened.cancelled().await;
    let mut batch = Vec::with_capacity(LANE_BATCH);
    while rx.recv_many(&mut batch, LANE_BATCH).await > 0 {
        let store = Arc::clone(&store);
        let work = move || {
            for (subscription, delivery) in batch.drain(..) {
                decode(&store, &subscription, &delivery.message);
                // Frees the message's room in its inbox.
                drop(delivery);
            }
            batch
        };
        batch = match tokio::task::spawn_blocking(work).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(error = %e, "NATS decoding failed");
                Vec::with_capacity(LANE_BATCH)
            }
        };
    }
}
