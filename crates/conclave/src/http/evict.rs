//! The meeting sockets of each signed-in account on this node, so that an
//! administrator disabling or deleting the account ends them at once, not
//! only its sessions: each socket leaves its meeting as if its person had
//! pressed Leave (the seat goes, with no resume), and closes. A socket of
//! the account on another node of a cluster is not reached from here; it
//! cannot come back once closed, since a new socket needs a session.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;

/// Sockets by account: each its own number and a token it watches.
#[derive(Default)]
pub struct AccountSockets {
    next: AtomicU64,
    by_account: Mutex<HashMap<i64, Vec<(u64, CancellationToken)>>>,
}

/// A socket's place in [`AccountSockets`], given up when dropped.
pub struct Registered<'a> {
    sockets: &'a AccountSockets,
    account: i64,
    id: u64,
    /// Cancelled when the account's sockets are to end.
    pub ended: CancellationToken,
}

impl AccountSockets {
    /// Registers a socket of `account` until the returned guard is dropped.
    pub fn register(&self, account: i64) -> Registered<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let ended = CancellationToken::new();
        self.by_account
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(account)
            .or_default()
            .push((id, ended.clone()));
        Registered {
            sockets: self,
            account,
            id,
            ended,
        }
    }

    /// Ends every socket of `account` on this node; how many there were.
    pub fn end(&self, account: i64) -> usize {
        let gone = self
            .by_account
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&account)
            .unwrap_or_default();
        for (_, token) in &gone {
            token.cancel();
        }
        gone.len()
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let mut map = self
            .sockets
            .by_account
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(list) = map.get_mut(&self.account) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                map.remove(&self.account);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ending_an_account_cancels_its_sockets_only() {
        let s = AccountSockets::default();
        let a1 = s.register(1);
        let a2 = s.register(1);
        let b = s.register(2);
        drop(a2);
        assert_eq!(s.end(1), 1);
        assert!(a1.ended.is_cancelled());
        assert!(!b.ended.is_cancelled());
        assert_eq!(s.end(1), 0);
        drop(b);
        assert!(s.by_account.lock().unwrap().is_empty());
    }
}
