//! A round-robin TCP front on one port, standing in for "one hostname" over
//! several nodes: each connection goes to the next backend in turn, bytes
//! copied both ways untouched (no HTTP, no TLS, no client address passed on).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};

pub struct Front {
    pub addr: SocketAddr,
    /// Connections sent to each backend so far.
    landed: Arc<Vec<AtomicUsize>>,
    task: tokio::task::JoinHandle<()>,
}

/// A loopback port free when asked (for a server whose address must be known
/// before it starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl Front {
    /// Binds the front's port now, so that the backends can be told it.
    pub async fn bind() -> TcpListener {
        TcpListener::bind("127.0.0.1:0").await.expect("front binds")
    }

    /// Starts forwarding `listener`'s connections round-robin to `backends`.
    pub fn serve(listener: TcpListener, backends: Vec<SocketAddr>) -> Front {
        let addr = listener.local_addr().expect("front address");
        let landed: Arc<Vec<AtomicUsize>> =
            Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
        let counts = Arc::clone(&landed);
        let task = tokio::spawn(async move {
            let mut next = 0;
            while let Ok((mut client, _)) = listener.accept().await {
                let k = next % backends.len();
                next += 1;
                counts[k].fetch_add(1, Ordering::Relaxed);
                let to = backends[k];
                tokio::spawn(async move {
                    if let Ok(mut backend) = TcpStream::connect(to).await {
                        // As a real load balancer: no Nagle delay added.
                        let _ = client.set_nodelay(true);
                        let _ = backend.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
                    }
                });
            }
        });
        Front { addr, landed, task }
    }

    /// Connections sent to each backend so far, in the backends' order.
    pub fn landed(&self) -> Vec<usize> {
        self.landed
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}
