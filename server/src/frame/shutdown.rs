//! Graceful shutdown: one trigger (SIGTERM/SIGINT), many sessions selecting on it, and a
//! count of live sessions the server waits on for at most `timeouts.shutdown_grace`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, watch};

/// Pulled once by the server when it stops.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// What sessions (and accept loops, the control socket...) select on. Cheap to clone.
///
/// ```text
/// tokio::select! {
///     _ = shutdown.triggered() => { conn.write_all(b"* BYE Server shutting down\r\n").await?; }
///     n = conn.read_idle(&mut buf) => { /* ... */ }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct ShutdownSignal(watch::Receiver<bool>);

/// A trigger and the signal it fires.
pub fn channel() -> (ShutdownTrigger, ShutdownSignal) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), ShutdownSignal(rx))
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal(self.0.subscribe())
    }
}

impl ShutdownSignal {
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once shutdown has begun (at once if it already has, or if the trigger is gone).
    pub async fn triggered(&mut self) {
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }
}

/// Counts live sessions.
#[derive(Debug, Default)]
pub struct Sessions {
    live: AtomicUsize,
    none_left: Notify,
}

/// One live session; dropping it (also on panic or cancellation) ends the count.
#[derive(Debug)]
pub struct SessionGuard(Arc<Sessions>);

impl Sessions {
    pub fn enter(self: &Arc<Self>) -> SessionGuard {
        self.live.fetch_add(1, Ordering::SeqCst);
        SessionGuard(self.clone())
    }

    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Completes when no session is live.
    pub async fn none_left(&self) {
        loop {
            let notified = self.none_left.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.live() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.none_left.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn signal_and_session_count() {
        let (trigger, mut signal) = channel();
        assert!(!signal.is_triggered());
        let sessions = Arc::new(Sessions::default());
        let a = sessions.enter();
        let b = sessions.enter();
        let waiter = {
            let sessions = sessions.clone();
            tokio::spawn(async move { sessions.none_left().await })
        };
        let mut late = trigger.signal();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            trigger.trigger();
        });
        signal.triggered().await;
        late.triggered().await;
        assert!(signal.is_triggered());
        drop(a);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one session is still live");
        drop(b);
        tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
        assert_eq!(sessions.live(), 0);
    }
}
